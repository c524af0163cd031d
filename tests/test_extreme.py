"""Property 6: extreme inputs give finite losses and gradients."""

from __future__ import annotations

import pytest
import torch

from adadpo import LOSSES, Balance, preference_loss, sequence_logps
from conftest import PARAMS

BALANCES = [
    None,
    Balance(),
    Balance(level="sequence"),
    Balance(level="sequence", normalize="rejected", clip=100.0),
    Balance(normalize="geometric", placement="gradient"),
    Balance(use_reference=True, level="sequence", normalize="chosen"),
]


def _extreme_tokens(B: int, T: int, dtype, seed: int = 0):
    """Per-token log-probs near -1e4 (some near 0), lengths from 1 to T (T = 4096)."""
    g = torch.Generator().manual_seed(seed)
    a = -1e4 + torch.rand(B, T, generator=g)
    a[0] = -1e-6  # a near-certain response: pbar -> 1, the hard case for ORPO's log-odds
    lengths = torch.tensor([T, 1, T // 2, 7][:B])
    mask = torch.arange(T)[None] < lengths[:, None]
    return a.to(dtype).requires_grad_(True), mask, lengths


def _name(b: Balance | None) -> str:
    return "plain" if b is None else f"{b.level}-{b.normalize}-{b.placement}-ref{int(b.use_reference)}"


@pytest.mark.parametrize(
    "loss,balance",
    [(loss, b) for loss in LOSSES for b in BALANCES if b is None or not b.use_reference or LOSSES[loss].needs_reference],
    ids=lambda x: x if isinstance(x, str) else _name(x),
)
def test_near_minus_1e4_per_token_4096_tokens(loss, balance):
    a_w, m_w, T_w = _extreme_tokens(4, 4096, torch.float32, 0)
    a_l, m_l, T_l = _extreme_tokens(4, 4096, torch.float32, 1)
    a_l.data[0] = -1e4  # chosen near-certain vs rejected hopeless: the most lopsided pair
    kw = dict(chosen_logps=(a_w * m_w).sum(1), rejected_logps=(a_l * m_l).sum(1),
              chosen_lengths=T_w, rejected_lengths=T_l, beta=0.1, **PARAMS.get(loss, {}))
    if LOSSES[loss].needs_reference:
        kw.update(ref_chosen_logps=torch.full((4,), -5e3), ref_rejected_logps=torch.full((4,), -2e7))
    out = preference_loss(loss, **kw, balance=balance)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(out.losses).all()
    assert torch.isfinite(a_w.grad).all() and torch.isfinite(a_l.grad).all()
    assert all(torch.isfinite(v) for v in out.metrics.values())
    assert (a_w.grad.abs().sum() + a_l.grad.abs().sum()) > 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("loss", list(LOSSES))
def test_half_precision_inputs(loss, dtype):
    # float16 tops out at 65504, so sums stay within its range; bfloat16 takes the full -4e7 sums.
    scale = 4e7 if dtype == torch.bfloat16 else 6e4
    A_w = torch.tensor([-0.5, -scale, -30.0, -1e-3], dtype=dtype, requires_grad=True)
    A_l = torch.tensor([-scale, -0.5, -31.0, -scale / 2], dtype=dtype, requires_grad=True)
    T = torch.tensor([4096, 4096, 3, 1])
    kw = dict(chosen_logps=A_w, rejected_logps=A_l, chosen_lengths=T, rejected_lengths=T.flip(0), **PARAMS.get(loss, {}))
    if LOSSES[loss].needs_reference:
        kw.update(ref_chosen_logps=A_w.detach().float() * 0.9, ref_rejected_logps=A_l.detach().float() * 1.1)
    for balance in (None, Balance(), Balance(level="sequence")):
        A_w.grad = A_l.grad = None
        out = preference_loss(loss, **kw, balance=balance)
        assert out.loss.dtype == torch.float32
        out.loss.backward()
        assert torch.isfinite(out.loss)
        assert A_w.grad.dtype == dtype
        assert torch.isfinite(A_w.grad.float()).all() and torch.isfinite(A_l.grad.float()).all()


def test_half_precision_logits_to_loss_over_4096_tokens():
    """fp16 logits whose per-token log-probs are near -1e4: the helper's float32 sums (-4e7, beyond fp16's
    range) feed the balanced loss; everything stays finite."""
    B, T, V = 4, 4097, 8
    logits = torch.zeros(B, T, V, dtype=torch.float16)
    labels = torch.full((B, T), 3)
    logits[..., 3] = -1e4  # the target token is ~e^-1e4 likely at every position
    logits[1, :, 3] = 0.0
    logits = logits.requires_grad_(True)
    s = sequence_logps(logits, labels)
    assert torch.isfinite(s.logps).all() and s.logps[0].item() < -4e7
    for loss in ("simpo", "orpo", "cpo"):
        logits.grad = None
        out = preference_loss(loss, chosen_logps=s.logps[:2], rejected_logps=s.logps[2:],
                              chosen_lengths=s.lengths[:2], rejected_lengths=s.lengths[2:], balance=Balance(level="sequence"))
        out.loss.backward(retain_graph=True)
        assert torch.isfinite(out.loss)
        assert torch.isfinite(logits.grad.float()).all()
