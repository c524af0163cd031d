"""The log-prob helpers: exactness against log_softmax + gather, padding, chunking, memory, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from adadpo import Balance, linear_sequence_logps, preference_loss, sequence_logps


def naive(logits: torch.Tensor, labels: torch.Tensor, mask=None, shift=True):
    """Independent: full log_softmax, shift, gather, mask."""
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
        mask = mask[:, 1:] if mask is not None else None
    keep = labels != -100
    if mask is not None:
        keep = keep & (mask != 0)
    lp = torch.log_softmax(logits.float(), -1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return (lp * keep).sum(-1), keep.sum(-1)


def make(seed: int, B: int, T: int, V: int, dtype=torch.float64, prompt_max: int = 3):
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(B, T, V, generator=g, dtype=torch.float64)).to(dtype)
    labels = torch.randint(0, V, (B, T), generator=g)
    prompt = torch.randint(0, prompt_max + 1, (B,), generator=g)
    length = torch.randint(0, T + 1, (B,), generator=g)
    pos = torch.arange(T)[None]
    labels = labels.masked_fill((pos < prompt[:, None]) | (pos >= length[:, None]), -100)
    return logits, labels


@given(seed=st.integers(0, 10**6), B=st.integers(1, 4), T=st.integers(1, 12), V=st.integers(2, 40),
       shift=st.booleans(), chunk=st.sampled_from([None, 1, 3, 7]))
def test_values_and_gradients_match_log_softmax(seed, B, T, V, shift, chunk):
    logits, labels = make(seed, B, T, V)
    x = logits.clone().requires_grad_(True)
    got = sequence_logps(x, labels, shift=shift, chunk_size=chunk)
    y = logits.clone().requires_grad_(True)
    want, n = naive(y, labels, shift=shift)
    assert got.logps.dtype == torch.float32 and got.lengths.dtype == torch.int64
    assert torch.equal(got.lengths, n)
    assert torch.allclose(got.logps.double(), want.double(), rtol=1e-5, atol=1e-4)
    w = torch.randn(B, dtype=torch.float64)
    (gx,) = torch.autograd.grad((got.logps.double() * w).sum(), x)
    (gy,) = torch.autograd.grad((want.double() * w).sum(), y)
    assert torch.allclose(gx, gy, rtol=1e-5, atol=1e-6)


@given(seed=st.integers(0, 10**6), B=st.integers(1, 3), T=st.integers(1, 10), V=st.integers(2, 30), H=st.integers(1, 8),
       bias=st.booleans(), chunk=st.sampled_from([None, 1, 4]))
def test_linear_path_matches_full_logits(seed, B, T, V, H, bias, chunk):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(V, H, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(V, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    _, labels = make(seed, B, T, V)
    got = linear_sequence_logps(hidden, weight, labels, bias=b, chunk_size=chunk)
    want, n = naive(F.linear(hidden, weight, b), labels)
    assert torch.equal(got.lengths, n)
    assert torch.allclose(got.logps.double(), want.double(), rtol=1e-5, atol=1e-4)
    params = [hidden, weight] + ([b] if bias else [])
    w = torch.randn(B, dtype=torch.float64, generator=g)
    g_got = torch.autograd.grad((got.logps.double() * w).sum(), params)
    g_want = torch.autograd.grad((want.double() * w).sum(), params)
    for a, c in zip(g_got, g_want):
        assert torch.allclose(a, c, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_low_precision_logits_accumulate_in_float32(dtype):
    logits, labels = make(0, 3, 64, 50, dtype=dtype)
    x = logits.clone().requires_grad_(True)
    got = sequence_logps(x, labels)
    want, _ = naive(logits.float(), labels)
    assert got.logps.dtype == torch.float32
    assert torch.allclose(got.logps, want, rtol=1e-6, atol=1e-4)
    got.logps.sum().backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_linear_low_precision_matches_model_style_full_path(dtype):
    """bf16 hidden + weight: same as computing logits in bf16 then upcasting (what HF models do)."""
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(2, 16, 8, generator=g).to(dtype).requires_grad_(True)
    weight = torch.randn(40, 8, generator=g).to(dtype).requires_grad_(True)
    _, labels = make(1, 2, 16, 40)
    got = linear_sequence_logps(hidden, weight, labels)
    want, _ = naive(F.linear(hidden, weight).float(), labels)
    assert torch.allclose(got.logps, want, rtol=1e-5, atol=1e-4)


@given(seed=st.integers(0, 10**6), pad=st.integers(1, 6), V=st.integers(2, 20))
def test_padding_never_counts(seed, pad, V):
    """Property 5: appending padding (ignored labels, or mask = 0 with real labels) changes nothing."""
    B, T = 3, 8
    logits, labels = make(seed, B, T, V)
    g = torch.Generator().manual_seed(seed + 1)
    extra_logits = 100 * torch.randn(B, pad, V, generator=g, dtype=torch.float64)
    x0 = logits.clone().requires_grad_(True)
    base = sequence_logps(x0, labels)
    (g0,) = torch.autograd.grad(base.logps.sum(), x0)

    # (a) padding with ignore_index labels
    x1 = torch.cat([logits, extra_logits], 1).requires_grad_(True)
    l1 = torch.cat([labels, torch.full((B, pad), -100)], 1)
    a = sequence_logps(x1, l1)
    (g1,) = torch.autograd.grad(a.logps.sum(), x1)
    # (b) padding with real-looking labels but mask = 0 (e.g. attention/completion mask)
    l2 = torch.cat([labels, torch.randint(0, V, (B, pad), generator=g)], 1)
    m2 = torch.cat([torch.ones(B, T), torch.zeros(B, pad)], 1)
    x2 = torch.cat([logits, extra_logits], 1).requires_grad_(True)
    b = sequence_logps(x2, l2, mask=m2)
    (g2,) = torch.autograd.grad(b.logps.sum(), x2)
    for out, grad in ((a, g1), (b, g2)):
        assert torch.equal(out.lengths, base.lengths)
        assert torch.equal(out.logps, base.logps)
        assert torch.equal(grad[:, :T], g0)
        assert torch.all(grad[:, T:] == 0)


def test_padding_never_counts_end_to_end():
    """Padded and unpadded batches give the same balanced loss and the same gradients."""
    V = 11
    logits, labels = make(3, 4, 9, V)
    labels[:, 5] = 1  # at least one counted token per row (position 5 predicted from 4)
    chosen_rows, rejected_rows = slice(0, 2), slice(2, 4)

    def run(lg, lb):
        x = lg.clone().requires_grad_(True)
        s = sequence_logps(x, lb)
        out = preference_loss("simpo", chosen_logps=s.logps[chosen_rows], rejected_logps=s.logps[rejected_rows],
                              chosen_lengths=s.lengths[chosen_rows], rejected_lengths=s.lengths[rejected_rows],
                              balance=Balance(level="sequence"))
        (gx,) = torch.autograd.grad(out.loss, x)
        return out.loss, gx

    loss0, g0 = run(logits, labels)
    loss1, g1 = run(torch.cat([logits, torch.randn(4, 5, V, dtype=torch.float64)], 1),
                    torch.cat([labels, torch.full((4, 5), -100)], 1))
    assert torch.equal(loss0, loss1)
    assert torch.equal(g1[:, :9], g0) and torch.all(g1[:, 9:] == 0)


def test_empty_sequence_has_zero_length_and_the_loss_rejects_it():
    logits, labels = make(0, 2, 5, 7)
    labels[0, 3] = 1
    labels[1] = -100
    out = sequence_logps(logits, labels)
    assert out.lengths[1] == 0 and out.logps[1] == 0
    with pytest.raises(ValueError, match="rejected_lengths must be >= 1"):
        preference_loss("simpo", chosen_logps=out.logps[:1], rejected_logps=out.logps[1:],
                        chosen_lengths=out.lengths[:1], rejected_lengths=out.lengths[1:])


def _saved_bytes(fn) -> list[int]:
    sizes: list[int] = []

    def pack(t):
        sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sizes


def test_no_second_vocab_sized_tensor_is_kept_for_backward():
    B, T, V = 2, 64, 1000
    logits = torch.randn(B, T, V, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, V, (B, T))
    full = B * T * V * 2  # the bf16 logits themselves
    ours = _saved_bytes(lambda: sequence_logps(logits, labels))
    assert max(ours) == full and sum(ours) - full < 100 * B * T  # logits + O(tokens), no [B, T, V] float copy
    naive_sizes = _saved_bytes(lambda: naive(logits, labels))
    assert sum(naive_sizes) >= full + B * (T - 1) * V * 4  # the naive path keeps a float32 log-softmax

    hidden = torch.randn(B, T, 16, requires_grad=True)
    weight = torch.randn(V, 16, requires_grad=True)
    lin = _saved_bytes(lambda: linear_sequence_logps(hidden, weight, labels))
    assert max(lin) < B * T * V * 4 / 4  # nothing logits-sized at all


def test_errors_name_the_argument():
    logits, labels = make(0, 2, 5, 7)
    with pytest.raises(ValueError, match=r"labels contains token id 7, outside the vocabulary \[0, 7\)"):
        sequence_logps(logits, labels.masked_fill(labels == -100, 0).index_fill(1, torch.tensor([2]), 7))
    with pytest.raises(ValueError, match="logits must have shape"):
        sequence_logps(logits[0], labels)
    with pytest.raises(ValueError, match="labels has 4 positions"):
        sequence_logps(logits, labels[:, :4])
    with pytest.raises(ValueError, match="mask has shape"):
        sequence_logps(logits, labels, mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        sequence_logps(logits, labels.float())
    with pytest.raises(ValueError, match="chunk_size=0"):
        sequence_logps(logits, labels, chunk_size=0)
    with pytest.raises(ValueError, match=r"weight must have shape \[V, H=3\]"):
        linear_sequence_logps(torch.randn(2, 5, 3), torch.randn(7, 4), labels)
    with pytest.raises(ValueError, match="bias must have shape"):
        linear_sequence_logps(torch.randn(2, 5, 3), torch.randn(7, 3), labels, bias=torch.randn(6))
