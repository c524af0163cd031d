"""Base and balanced losses against independent formulas (tests/reference.py), values, gradients and metrics."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import adadpo
from adadpo import LOSSES, Balance, preference_loss
from conftest import PARAMS, pair_batches
from reference import NLL_WEIGHTS, pairwise_margin_form, rewards, total_loss

SMOOTHED = [name for name, fam in LOSSES.items() if "label_smoothing" in fam.params]


def _reference(loss, batch, a_w, a_l, c_w=1.0, c_l=1.0, eps=0.0, **extra):
    kw = batch.kwargs(loss, a_w, a_l)
    pair = pairwise_margin_form(
        loss, kw["chosen_logps"], kw["rejected_logps"], batch.T_w, batch.T_l,
        kw.get("ref_chosen_logps"), kw.get("ref_rejected_logps"),
        c_w=c_w, c_l=c_l, beta=batch.beta, length_alpha=PARAMS.get(loss, {}).get("length_alpha", 0.0), eps=eps, **extra,
    )
    return pair, total_loss(loss, pair, kw["chosen_logps"], batch.T_w)


@pytest.mark.parametrize("loss", list(LOSSES))
@given(batch=pair_batches(), eps=st.sampled_from([0.0, 0.1, 0.3]))
def test_plain_loss_matches_independent_formula(loss, batch, eps):
    eps = eps if loss in SMOOTHED else 0.0
    a_w, a_l = batch.leaves()
    out = preference_loss(loss, **batch.kwargs(loss, a_w, a_l), label_smoothing=eps)
    g = torch.autograd.grad(out.loss, (a_w, a_l))
    r_w, r_l = batch.leaves()
    pair, tot = _reference(loss, batch, r_w, r_l, eps=eps)
    g_ref = torch.autograd.grad(tot, (r_w, r_l))
    assert torch.allclose(out.losses, pair, rtol=1e-10, atol=1e-12)
    assert torch.allclose(out.loss, tot, rtol=1e-10, atol=1e-12)
    for x, y in zip(g, g_ref):
        assert torch.allclose(x, y, rtol=1e-8, atol=1e-14)
    assert torch.equal(out.coef_chosen, torch.ones_like(out.coef_chosen))


@pytest.mark.parametrize("loss", list(LOSSES))
@given(batch=pair_batches(), normalize=st.sampled_from(["sum", "geometric", "rejected", "chosen"]),
       level=st.sampled_from(["token", "sequence"]))
def test_balanced_margin_loss_is_the_formula_with_constant_coefficients(loss, batch, normalize, level):
    """The balanced loss equals the spec's form with c_w, c_l as constants: values and gradients
    (a coefficient that leaked gradient would change the latter)."""
    a_w, a_l = batch.leaves()
    out = preference_loss(loss, **batch.kwargs(loss, a_w, a_l), balance=Balance(level=level, normalize=normalize))
    g = torch.autograd.grad(out.loss, (a_w, a_l))
    r_w, r_l = batch.leaves()
    pair, tot = _reference(loss, batch, r_w, r_l, c_w=out.coef_chosen, c_l=out.coef_rejected)
    g_ref = torch.autograd.grad(tot, (r_w, r_l))
    assert torch.allclose(out.losses, pair, rtol=1e-10, atol=1e-12)
    for x, y in zip(g, g_ref):
        assert torch.allclose(x, y, rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("loss", list(LOSSES))
@given(batch=pair_batches(), balanced=st.booleans())
def test_metrics_follow_trl_definitions(loss, batch, balanced):
    a_w, a_l = batch.leaves()
    kw = batch.kwargs(loss, a_w, a_l)
    out = preference_loss(loss, **kw, balance=Balance() if balanced else None)
    rw = rewards(loss, batch.beta, kw["chosen_logps"].detach(), batch.T_w, kw.get("ref_chosen_logps"))
    rl = rewards(loss, batch.beta, kw["rejected_logps"].detach(), batch.T_l, kw.get("ref_rejected_logps"))
    m = {k: v.item() for k, v in out.metrics.items()}
    assert m["rewards/chosen"] == pytest.approx(rw.mean().item(), rel=1e-10, abs=1e-12)
    assert m["rewards/rejected"] == pytest.approx(rl.mean().item(), rel=1e-10, abs=1e-12)
    assert m["rewards/margins"] == pytest.approx((rw - rl).mean().item(), rel=1e-9, abs=1e-12)
    assert m["rewards/accuracies"] == pytest.approx((rw > rl).double().mean().item())
    assert m["logps/chosen"] == pytest.approx(kw["chosen_logps"].mean().item(), rel=1e-12)
    assert m["logps/rejected"] == pytest.approx(kw["rejected_logps"].mean().item(), rel=1e-12)
    assert ("nll_loss" in m) == (loss in NLL_WEIGHTS)
    assert ("balance/coef_chosen" in m) == balanced
    assert m["balance/log_rho"] == pytest.approx(out.log_rho.mean().item(), rel=1e-9, abs=1e-12)
    assert all(not v.requires_grad for v in out.metrics.values())


def _kw(loss, **over):
    base = dict(
        chosen_logps=torch.tensor([-4.0, -9.0, -2.5], dtype=torch.float64),
        rejected_logps=torch.tensor([-6.0, -5.0, -7.0], dtype=torch.float64),
        chosen_lengths=torch.tensor([4, 6, 2]),
        rejected_lengths=torch.tensor([3, 5, 8]),
    )
    if LOSSES[loss].needs_reference:
        base.update(ref_chosen_logps=torch.tensor([-5.0, -8.0, -3.0], dtype=torch.float64),
                    ref_rejected_logps=torch.tensor([-5.5, -6.0, -6.5], dtype=torch.float64))
    base.update(PARAMS.get(loss, {}))
    base.update(over)
    return base


def test_rdpo_length_term():
    plain = preference_loss("dpo", **_kw("dpo"))
    r0 = preference_loss("rdpo", **_kw("rdpo", length_alpha=0.0))
    assert torch.equal(plain.losses, r0.losses)
    r = preference_loss("rdpo", **_kw("rdpo", length_alpha=0.3))
    kw = _kw("dpo")
    h_w = kw["chosen_logps"] - kw["ref_chosen_logps"]
    h_l = kw["rejected_logps"] - kw["ref_rejected_logps"]
    z = 0.1 * (h_w - h_l) + 0.3 * (kw["chosen_lengths"] - kw["rejected_lengths"]).double()
    assert torch.allclose(r.losses, -torch.log(torch.sigmoid(z)), rtol=1e-12)


def test_simpo_gamma_and_cpo_alpha():
    a = preference_loss("simpo", **_kw("simpo"), beta=2.0, gamma=1.0)
    kw = _kw("simpo")
    z = 2.0 * (kw["chosen_logps"] / kw["chosen_lengths"] - kw["rejected_logps"] / kw["rejected_lengths"]) - 1.0
    assert torch.allclose(a.losses, -torch.log(torch.sigmoid(z)), rtol=1e-12)
    c0 = preference_loss("cpo", **_kw("cpo"), cpo_alpha=0.0)
    c2 = preference_loss("cpo", **_kw("cpo"), cpo_alpha=2.0)
    nll = -kw["chosen_logps"].sum() / kw["chosen_lengths"].sum()
    assert torch.allclose(c0.loss, c0.losses.mean(), rtol=1e-12)
    assert torch.allclose(c2.loss - c0.loss, 2.0 * nll, rtol=1e-12)
    assert torch.allclose(c2.nll, nll, rtol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 3.0])
def test_rpo_is_dpo_plus_the_weighted_chosen_nll(alpha):
    """RPO (Pang et al. 2024): ``-log sigma(beta (h_w - h_l)) + rpo_alpha NLL_w``, balanced on its DPO term."""
    kw = _kw("rpo")
    h_w = kw["chosen_logps"] - kw["ref_chosen_logps"]
    h_l = kw["rejected_logps"] - kw["ref_rejected_logps"]
    nll = -kw["chosen_logps"].sum() / kw["chosen_lengths"].sum()
    out = preference_loss("rpo", **kw, rpo_alpha=alpha)
    assert torch.allclose(out.losses, -torch.log(torch.sigmoid(0.1 * (h_w - h_l))), rtol=1e-12)
    assert torch.allclose(out.loss, out.losses.mean() + alpha * nll, rtol=1e-12)
    assert torch.allclose(out.nll, nll, rtol=1e-12) and out.metrics["nll_loss"] == out.nll
    with pytest.raises(ValueError, match=r"rpo_alpha=-0.5 must be >= 0 for loss 'rpo'"):
        preference_loss("rpo", **kw, rpo_alpha=-0.5)
    with pytest.raises(ValueError, match=r"rpo_alpha=1.0 does not apply to loss='dpo'"):
        preference_loss("dpo", **_kw("dpo"), rpo_alpha=1.0)


def test_coefficients_never_touch_the_nll():
    """For the losses with a chosen NLL term the NLL gradient on the chosen side is the same with and without
    balance."""
    for loss in NLL_WEIGHTS:
        grads = []
        for bal in (None, Balance(normalize="rejected")):
            A = _kw(loss)["chosen_logps"].clone().requires_grad_(True)
            out = preference_loss(loss, **_kw(loss, chosen_logps=A), balance=bal)
            (g_total,) = torch.autograd.grad(out.loss, A)
            A2 = _kw(loss)["chosen_logps"].clone().requires_grad_(True)
            out2 = preference_loss(loss, **_kw(loss, chosen_logps=A2), balance=bal)
            (g_pair,) = torch.autograd.grad(out2.losses.mean(), A2)
            grads.append(g_total - g_pair)
        assert torch.allclose(grads[0], grads[1], rtol=1e-12)
        want = -NLL_WEIGHTS[loss] / _kw(loss)["chosen_lengths"].sum().double().expand(3)
        assert torch.allclose(grads[0], want, rtol=1e-12)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_spec_form_module_form_and_keyword_form_agree(loss):
    named = [c for c in adadpo.PreferenceLoss.__subclasses__() if c.loss_name == loss]  # DPOLoss, ...; or none
    kw = _kw(loss)
    params = PARAMS.get(loss, {})
    pairs = adadpo.PairLogps(**{k: v for k, v in kw.items() if isinstance(v, torch.Tensor)})
    for bal in (None, Balance(level="sequence", clip=5.0)):
        want = preference_loss(loss, **kw, beta=0.3, balance=bal)
        module = named[0](beta=0.3, balance=bal, **params) if named else \
            adadpo.PreferenceLoss(loss, beta=0.3, balance=bal, **params)
        for got in (module(pairs), module(*pairs.tensors().values()),
                    preference_loss(adadpo.LossSpec(loss, beta=0.3, balance=bal, **params), pairs)):
            assert torch.equal(got.loss, want.loss) and torch.equal(got.losses, want.losses)
            assert got.metrics.keys() == want.metrics.keys()
        assert loss in repr(module)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_a_resolved_spec_reads_no_value_from_the_device(loss, monkeypatch):
    """``preference_loss(spec, pairs)`` without ``debug``: no ``bool``, ``float``, ``item``... of a tensor (no host
    sync), even for a bad batch, which shows as a non-finite loss; ``debug=True`` checks and names the field."""
    pairs = adadpo.PairLogps(**{k: v for k, v in _kw(loss, chosen_logps=torch.tensor([-4.0, math.nan, -2.5],
                                dtype=torch.float64)).items() if isinstance(v, torch.Tensor)})
    spec = adadpo.LossSpec(loss, balance=Balance(clip=math.inf), **PARAMS.get(loss, {}))

    def host_read(*args, **kwargs):
        raise AssertionError("the per-step path read a tensor value on the host")

    with monkeypatch.context() as m:
        for name in ("__bool__", "__float__", "__int__", "item", "tolist"):
            m.setattr(torch.Tensor, name, host_read)
        out = preference_loss(spec, pairs)
    assert not math.isfinite(out.loss.item())
    with pytest.raises(ValueError, match=r"chosen_logps must be finite; found nan at index 1"):
        preference_loss(dataclasses.replace(spec, debug=True), pairs)


def test_balanced_loss_differs_from_plain():
    """Sanity: the balanced loss is not the plain one when rho != 1 (guards against a no-op balance)."""
    out_plain = preference_loss("dpo", **_kw("dpo"))
    out_bal = preference_loss("dpo", **_kw("dpo"), balance=Balance())
    assert not torch.allclose(out_plain.losses, out_bal.losses)
    assert not torch.allclose(out_bal.coef_chosen, torch.ones(3, dtype=torch.float64))


def test_reference_logps_are_constants():
    kw = _kw("dpo")
    R = kw["ref_chosen_logps"].clone().requires_grad_(True)
    out = preference_loss("dpo", **{**kw, "ref_chosen_logps": R})
    assert not out.loss.requires_grad or R.grad is None
    A = kw["chosen_logps"].clone().requires_grad_(True)
    out = preference_loss("dpo", **{**kw, "chosen_logps": A, "ref_chosen_logps": R})
    out.loss.backward()
    assert R.grad is None and A.grad is not None


def test_float32_inputs_compute_in_float32_and_float64_in_float64():
    for dtype in (torch.bfloat16, torch.float16, torch.float32, torch.float64):
        kw = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in _kw("dpo").items() if isinstance(v, torch.Tensor)}
        out = preference_loss("dpo", **kw, balance=Balance())
        assert out.loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
        assert math.isfinite(out.loss.item())
