"""The log-prob helpers: exactness against log_softmax + gather, padding, chunking, memory, errors."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from adadpo import Balance, linear_sequence_logps, preference_loss, sequence_logps
from adadpo.core.logps import linear_token_logps, token_logps


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


# ------------------------------------------------------------------- per-token outputs and the chunk loop


def naive_token_stats(logits: torch.Tensor, labels: torch.Tensor):
    """Independent: per counted token (row-major) log-prob, entropy, mean logit, argmax == label."""
    z, y = logits[:, :-1].double(), labels[:, 1:]
    keep = y != -100
    z, y = z[keep], y[keep]
    lp = torch.log_softmax(z, -1)
    return lp.gather(1, y[:, None]).squeeze(1), -(lp.exp() * lp).sum(-1), z.mean(-1), z.argmax(-1) == y


@given(seed=st.integers(0, 10**6), B=st.integers(1, 4), T=st.integers(2, 12), V=st.integers(2, 40),
       H=st.integers(1, 8), chunk=st.sampled_from([None, 1, 3, 7]))
def test_token_stats_match_an_independent_computation(seed, B, T, V, H, chunk):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=g)
    weight = 2 * torch.randn(V, H, generator=g)
    _, labels = make(seed, B, T, V)
    lp, ent, mean, top1 = naive_token_stats(F.linear(hidden, weight), labels)
    for out in (linear_token_logps(hidden, weight, labels, chunk_size=chunk, stats=True),
                token_logps(F.linear(hidden, weight), labels, chunk_size=chunk, stats=True)):
        assert out.batch == B and torch.equal(out.seq, torch.nonzero(labels[:, 1:] != -100)[:, 0])
        torch.testing.assert_close(out.logps.double(), lp, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.entropy.double(), ent, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.mean_logits.double(), mean, rtol=1e-5, atol=1e-5)
        assert torch.equal(out.is_top1, top1)
        assert not out.entropy.requires_grad and out.is_top1.dtype == torch.bool
    plain = linear_token_logps(hidden, weight, labels, chunk_size=chunk)
    assert plain.entropy is None and plain.mean_logits is None and plain.is_top1 is None
    torch.testing.assert_close(plain.logps.double(), lp, rtol=1e-5, atol=1e-5)


def test_top1_counts_the_first_maximum_like_argmax():
    """A tie between the label and an earlier token is not a top-1 hit (torch.argmax and TRL agree)."""
    logits = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]], [[2.0, 2.0, 0.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[-100, 1], [-100, 0]])
    out = token_logps(logits, labels, stats=True)
    assert out.is_top1.tolist() == [False, True]


def test_stats_gradient_and_values_do_not_change_the_logps():
    g = torch.Generator().manual_seed(4)
    hidden = torch.randn(2, 9, 5, generator=g, requires_grad=True)
    weight = torch.randn(30, 5, generator=g, requires_grad=True)
    _, labels = make(4, 2, 9, 30)
    a = linear_token_logps(hidden, weight, labels, stats=True, chunk_size=4)
    b = linear_token_logps(hidden, weight, labels, chunk_size=4)
    assert torch.equal(a.logps, b.logps)
    ga = torch.autograd.grad(a.per_sequence().logps.sum(), (hidden, weight))
    gb = torch.autograd.grad(b.per_sequence().logps.sum(), (hidden, weight))
    assert all(torch.equal(x, y) for x, y in zip(ga, gb))


def _bf16_reference(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, w: torch.Tensor):
    """Float64 values and gradients of ``sum_b w_b A_b`` at the logits a bf16 model computes (bf16 matmul)."""
    h64 = hidden.detach().double().requires_grad_(True)
    w64 = weight.detach().double().requires_grad_(True)
    rounding = (F.linear(hidden.detach(), weight.detach()).double() - F.linear(h64, w64)).detach()
    z, y = (F.linear(h64, w64) + rounding)[:, :-1], labels[:, 1:]
    lp = torch.log_softmax(z, -1).gather(-1, y.clamp(min=0)[..., None]).squeeze(-1)
    want = (lp * (y != -100)).sum(-1)
    grads = torch.autograd.grad((want * w).sum(), (h64, w64))
    return want.detach(), grads


def test_linear_bf16_gradients_are_as_accurate_as_bf16_allows():
    """bf16 inputs: values within 1e-5 relative of float64 on the same bf16 logits; each gradient within
    one bf16 rounding (2**-8 relative to its largest entry), no worse than autograd through full bf16 logits."""
    g = torch.Generator().manual_seed(2)
    hidden = torch.randn(3, 24, 16, generator=g).bfloat16().requires_grad_(True)
    weight = torch.randn(64, 16, generator=g).bfloat16().requires_grad_(True)
    _, labels = make(2, 3, 24, 64)
    w = torch.randn(3, generator=g, dtype=torch.float64)
    want, want_grads = _bf16_reference(hidden, weight, labels, w)
    got = linear_sequence_logps(hidden, weight, labels, chunk_size=5)
    torch.testing.assert_close(got.logps.double(), want, rtol=1e-5, atol=1e-5)
    got_grads = torch.autograd.grad((got.logps.double() * w).sum(), (hidden, weight))
    full, _ = naive(F.linear(hidden, weight), labels)
    full_grads = torch.autograd.grad((full.double() * w).sum(), (hidden, weight))
    for ours, autograd, exact in zip(got_grads, full_grads, want_grads):
        assert ours.dtype == torch.bfloat16
        scale = exact.abs().max()
        ours_err = (ours.double() - exact).abs().max() / scale
        assert ours_err <= 2**-8
        assert ours_err <= 1.5 * (autograd.double() - exact).abs().max() / scale + 1e-6


def test_autocast_computes_the_head_in_the_autocast_dtype():
    """Under CPU autocast (bf16) the chunked head gives what the autocast model's lm_head would, in float32."""
    g = torch.Generator().manual_seed(6)
    hidden = torch.randn(2, 12, 8, generator=g, requires_grad=True)
    weight = torch.randn(40, 8, generator=g, requires_grad=True)
    _, labels = make(6, 2, 12, 40)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = linear_sequence_logps(hidden, weight, labels, chunk_size=3)
        logits = F.linear(hidden, weight)
    assert logits.dtype == torch.bfloat16
    want, _ = naive(logits.float(), labels)
    torch.testing.assert_close(got.logps, want, rtol=1e-5, atol=1e-4)
    (gh, gw) = torch.autograd.grad(got.logps.sum(), (hidden, weight))
    assert gh.dtype == gw.dtype == torch.float32 and torch.isfinite(gh).all() and torch.isfinite(gw).all()


def _largest_allocation(fn) -> int:
    """Largest single CPU allocation (bytes) made while ``fn`` runs, from the torch profiler's memory events."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max(e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0)


def test_peak_allocation_does_not_grow_with_sequence_length():
    """Forward + backward allocate at most one [chunk, V] float32 buffer beyond [N, H]-sized tensors, however long
    the sequences; the full-logits path allocates [B, T, V]."""
    V, H, chunk = 2000, 8, 16
    sizes = {}
    for T in (64, 512):
        hidden = torch.randn(4, T, H, requires_grad=True)
        weight = torch.randn(V, H, requires_grad=True)
        labels = torch.randint(0, V, (4, T))
        chunked = functools.partial(_chunked_step, hidden, weight, labels, chunk)
        sizes[T] = _largest_allocation(chunked)
        assert sizes[T] <= max(chunk * V * 4, V * H * 4, 4 * T * H * 4) * 1.01
        full = _largest_allocation(functools.partial(_full_step, hidden, weight, labels))
        assert full >= 4 * (T - 1) * V * 4
    assert sizes[512] == sizes[64]


def _chunked_step(hidden, weight, labels, chunk):
    linear_sequence_logps(hidden, weight, labels, chunk_size=chunk).logps.sum().backward()


def _full_step(hidden, weight, labels):
    naive(F.linear(hidden, weight), labels)[0].sum().backward()


def test_long_sequence_sums_are_as_accurate_as_float32_allows():
    """16384 tokens: the per-sequence sum is accumulated in float64, so its relative error stays at float32 rounding
    of the result (a float32 running sum over the tokens drifts to ~5e-6 here)."""
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(2, 16385, 32, generator=g)
    labels = torch.randint(0, 32, (2, 16385), generator=g)
    exact = torch.log_softmax(logits.double(), -1)[:, :-1].gather(-1, labels[:, 1:, None]).squeeze(-1).sum(-1)
    got = sequence_logps(logits, labels).logps
    assert got.dtype == torch.float32
    assert ((got.double() - exact) / exact).abs().max().item() < 2e-7
