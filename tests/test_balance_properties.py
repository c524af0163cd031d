"""Spec section 5, properties 1-3 and 5, for every loss, level, reference option, normalization and placement."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adadpo import LOSSES, Balance, preference_loss
from conftest import COMBOS, pair_batches
from reference import coefficients_table, log_p_table, log_rho_table, side_x_table


def _grads(out, a_w, a_l, which: str = "losses"):
    target = out.losses.sum() if which == "losses" else out.loss
    g_w, g_l = torch.autograd.grad(target, (a_w, a_l))
    return g_w, g_l


def _log_p(batch, kw, level: str, use_ref: bool):
    d = {k: v.detach() for k, v in kw.items() if isinstance(v, torch.Tensor)}
    return (log_p_table(d["chosen_logps"], batch.T_w, d.get("ref_chosen_logps"), level=level, use_reference=use_ref),
            log_p_table(d["rejected_logps"], batch.T_l, d.get("ref_rejected_logps"), level=level, use_reference=use_ref))


def _check_exact_balance(loss, level, use_ref, normalize, placement, batch, *, require_all: bool) -> int:
    """Property 2: log|dL/da_w,t| - log P_w == log|dL/da_l,t| - log P_l for every counted token. Returns #pairs checked."""
    a_w, a_l = batch.leaves()
    kw = batch.kwargs(loss, a_w, a_l)
    bal = Balance(level=level, use_reference=use_ref, clip=math.inf, normalize=normalize, placement=placement)
    out = preference_loss(loss, **kw, balance=bal)
    g_w, g_l = _grads(out, a_w, a_l)
    logp_w, logp_l = _log_p(batch, kw, level, use_ref)
    checked = 0
    for b in range(a_w.shape[0]):
        tw, tl = g_w[b][batch.mask_w[b].bool()], g_l[b][batch.mask_l[b].bool()]
        # Every counted token of a side gets the same gradient (the loss depends on the sum) ...
        assert torch.allclose(tw, tw[0].expand_as(tw), rtol=1e-12, atol=0)
        assert torch.allclose(tl, tl[0].expand_as(tl), rtol=1e-12, atol=0)
        gw, gl = abs(tw[0].item()), abs(tl[0].item())
        if min(gw, gl) < sys.float_info.min or not math.isfinite(gw) or not math.isfinite(gl):
            assert not require_all, f"pair {b}: vanishing gradient ({gw}, {gl}) in a moderate case"
            continue  # sigma(-z) underflowed (to 0, or to a subnormal with few digits left): nothing to compare
        lhs = math.log(gw) - logp_w[b].item()
        rhs = math.log(gl) - logp_l[b].item()
        assert math.isclose(lhs, rhs, rel_tol=1e-9, abs_tol=1e-9), (b, lhs, rhs)
        checked += 1
    # ... and padding gets none.
    assert torch.all(g_w[~batch.mask_w.bool()] == 0) and torch.all(g_l[~batch.mask_l.bool()] == 0)
    return checked


@pytest.mark.parametrize("loss,level,use_ref,normalize,placement", COMBOS)
@given(batch=pair_batches())
def test_exact_balance_unclipped(loss, level, use_ref, normalize, placement, batch):
    _check_exact_balance(loss, level, use_ref, normalize, placement, batch, require_all=False)


@pytest.mark.parametrize("loss,level,use_ref,normalize,placement", COMBOS)
@settings(max_examples=5)
@given(batch=pair_batches(max_len=6, max_scale=0.5))
def test_exact_balance_every_pair_in_moderate_range(loss, level, use_ref, normalize, placement, batch):
    """Same property where no gradient can underflow: every pair must be checked."""
    n = _check_exact_balance(loss, level, use_ref, normalize, placement, batch, require_all=True)
    assert n == batch.a_w.shape[0]


@pytest.mark.parametrize("loss,level,use_ref,normalize,placement", COMBOS)
@settings(max_examples=8)
@given(batch=pair_batches(), clip=st.sampled_from([1.5, 10.0, math.inf]))
def test_zero_exponents_give_the_base_loss_exactly(loss, level, use_ref, normalize, placement, batch, clip):
    """Property 1: alpha_w = alpha_l = 0 (and clip = 1) reproduce the plain loss and gradients bit for bit."""
    results = []
    for bal in (
        None,
        Balance(level=level, use_reference=use_ref, alpha_chosen=0.0, alpha_rejected=0.0, clip=clip,
                normalize=normalize, placement=placement),
        Balance(level=level, use_reference=use_ref, clip=1.0, normalize=normalize, placement=placement),
    ):
        a_w, a_l = batch.leaves()
        out = preference_loss(loss, **batch.kwargs(loss, a_w, a_l), balance=bal)
        results.append((out.loss.detach(), out.losses.detach(), *_grads(out, a_w, a_l, "loss")))
    for other in results[1:]:
        for x, y in zip(results[0], other):
            assert torch.equal(x, y)


@pytest.mark.parametrize("loss,level,use_ref,normalize,placement", COMBOS)
@settings(max_examples=8)
@given(batch=pair_batches(), clip=st.sampled_from([1.0, 2.0, 10.0, math.inf]))
def test_coefficients_clip_and_normalization(loss, level, use_ref, normalize, placement, batch, clip):
    """Property 3: c_w / c_l = clamp(rho) with rho from the spec's table, each normalization's invariant,
    clipped fraction, and no gradient through the coefficients."""
    a_w, a_l = batch.leaves()
    kw = batch.kwargs(loss, a_w, a_l)
    out = preference_loss(loss, **kw, balance=Balance(level=level, use_reference=use_ref, clip=clip,
                                                       normalize=normalize, placement=placement))
    c_w, c_l = out.coef_chosen, out.coef_rejected
    assert not c_w.requires_grad and not c_l.requires_grad
    d = {k: v.detach() for k, v in kw.items() if isinstance(v, torch.Tensor)}
    raw = log_rho_table(loss, d["chosen_logps"], d["rejected_logps"], batch.T_w, batch.T_l,
                        d.get("ref_chosen_logps"), d.get("ref_rejected_logps"), level=level, use_reference=use_ref)
    assert torch.allclose(out.log_rho, raw, rtol=1e-9, atol=1e-9)
    bound = math.log(clip)
    used = raw.clamp(-bound, bound)
    assert torch.allclose(torch.log(c_w) - torch.log(c_l), used, rtol=1e-9, atol=1e-9)
    assert torch.all((torch.log(c_w / c_l)).abs() <= bound + 1e-9)
    exp_w, exp_l = coefficients_table(used, normalize)
    assert torch.allclose(c_w, exp_w, rtol=1e-9) and torch.allclose(c_l, exp_l, rtol=1e-9)
    invariant = {"sum": c_w + c_l - 2, "geometric": c_w * c_l - 1, "rejected": c_l - 1, "chosen": c_w - 1}[normalize]
    assert torch.allclose(invariant, torch.zeros_like(invariant), atol=1e-12)
    frac = (raw.abs() > bound).double().mean()
    assert out.metrics["balance/clipped_frac"].item() == pytest.approx(frac.item())
    after = (raw - used).mean()
    assert out.metrics["balance/log_rho_after"].item() == pytest.approx(after.item(), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("normalize", ["sum", "geometric", "rejected", "chosen"])
def test_rho_one_gives_unit_coefficients(normalize):
    """Identical sides (rho = 1) keep c = 1 under every normalization."""
    A = torch.tensor([-3.0, -10.0], dtype=torch.float64)
    T = torch.tensor([3.0, 5.0], dtype=torch.float64)
    out = preference_loss("simpo", chosen_logps=A, rejected_logps=A.clone(), chosen_lengths=T, rejected_lengths=T.clone(),
                          balance=Balance(normalize=normalize))
    assert torch.equal(out.coef_chosen, torch.ones(2, dtype=torch.float64))
    assert torch.equal(out.coef_rejected, torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("loss", list(LOSSES))
@given(batch=pair_batches(), alpha_w=st.floats(0, 2), alpha_l=st.floats(0, 2), level=st.sampled_from(["token", "sequence"]))
def test_exponents_enter_log_rho_linearly(loss, batch, alpha_w, alpha_l, level):
    a_w, a_l = batch.leaves()
    kw = batch.kwargs(loss, a_w, a_l)
    bal = Balance(level=level, alpha_chosen=alpha_w, alpha_rejected=alpha_l, clip=math.inf, normalize="geometric")
    out = preference_loss(loss, **kw, balance=bal)
    A_w, A_l = kw["chosen_logps"].detach(), kw["rejected_logps"].detach()
    x_w = side_x_table(loss, A_w, batch.T_w, level=level)
    x_l = side_x_table(loss, A_l, batch.T_l, level=level)
    used = torch.log(out.coef_chosen) - torch.log(out.coef_rejected)
    assert torch.allclose(used, alpha_w * x_w - alpha_l * x_l, rtol=1e-9, atol=1e-9)
    # The logged imbalance is the alpha-free one, and it agrees with the spec's table.
    assert torch.allclose(out.log_rho, x_w - x_l, rtol=1e-9, atol=1e-9)
    assert torch.allclose(out.log_rho, log_rho_table(loss, A_w, A_l, batch.T_w, batch.T_l, level=level), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("loss", list(LOSSES))
@given(batch=pair_batches())
def test_gradient_placement_keeps_values_and_scales_gradients(loss, batch):
    """placement='gradient': loss value and rewards equal the base loss's; side gradients are c times the base ones."""
    a_w0, a_l0 = batch.leaves()
    base = preference_loss(loss, **batch.kwargs(loss, a_w0, a_l0))
    gb_w, gb_l = _grads(base, a_w0, a_l0)
    a_w, a_l = batch.leaves()
    out = preference_loss(loss, **batch.kwargs(loss, a_w, a_l), balance=Balance(placement="gradient", clip=math.inf))
    g_w, g_l = _grads(out, a_w, a_l)
    assert torch.allclose(out.losses, base.losses, rtol=1e-12, atol=0)
    for k in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert torch.equal(out.metrics[k], base.metrics[k])
    assert torch.allclose(g_w, out.coef_chosen[:, None] * gb_w, rtol=1e-10, atol=1e-300)
    assert torch.allclose(g_l, out.coef_rejected[:, None] * gb_l, rtol=1e-10, atol=1e-300)
