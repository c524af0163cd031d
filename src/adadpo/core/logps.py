"""Per-sequence summed log-probs of the response tokens, without a second ``[B, T, V]`` tensor.

``log p(y_t) = z_t[y_t] - logsumexp(z_t)``. The helpers gather the target logit and the log-normaliser
chunk by chunk over the *counted* tokens only (prompt and padding rows are never touched), in float32,
and recompute the chunk's softmax in backward from the saved ``[N]`` log-normalisers. The chunk loop
works in preallocated ``[n, V]`` float32 buffers (overwritten in place), so the extra memory is one or
two chunks of ``[n, V]`` floats, whatever ``B x T``: not a float32 copy of the logits, nor a log-softmax
output, nor their gradients.

- :func:`sequence_logps` starts from logits ``[B, T, V]`` (the model's output).
- :func:`linear_sequence_logps` starts from final hidden states ``[B, T, H]`` and the LM head
  weight ``[V, H]``: the full logits never exist, in forward or backward.
- :func:`token_logps` and :func:`linear_token_logps` are the same computations returning one entry per
  counted token (plus, on request, the entropy, mean logit and top-1 flag that TRL logs), for callers
  that reduce them their own way (the trainer).
- :func:`counted_tokens` finds the counted tokens of a batch (one device read, ``nonzero``); pass its result as
  ``index=`` to compute several models' log-probs on the same labels without finding them again.
- ``.pairs()`` on either result turns a batch laid out as TRL concatenates pairs (chosen rows, then
  rejected rows) into the :class:`~adadpo.core.pairs.PairLogps` that :func:`adadpo.preference_loss` takes.

Label conventions follow Hugging Face causal LMs: ``labels`` are aligned with ``input_ids`` and, with
``shift=True`` (default), position ``t`` of the logits predicts ``labels[:, t + 1]``. A token counts when
its label is not ``ignore_index`` and (if given) ``mask`` is nonzero at the label's position.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from adadpo.core.pairs import PairLogps
from adadpo.core.params import Param

#: Target size of one chunk of float32 logits (elements); ``2**23`` floats = 32 MiB.
_CHUNK_ELEMENTS = 2**23
#: Rows (counted tokens) per chunk of the log-prob helpers (``AdaDPOConfig.logps_chunk_size``); unset: automatic.
CHUNK_SIZE = Param("chunk_size", None, "Counted tokens per chunk of logits (unset: about 32 MiB of float32 logits).",
                   low=1, kind=int, example=4096)


class SequenceLogps(NamedTuple):
    """``logps``: ``[B]`` float32 sums of the counted tokens' log-probs; ``lengths``: ``[B]`` int64 counts."""

    logps: Tensor
    lengths: Tensor

    def pairs(self, ref_logps: Tensor | None = None) -> PairLogps:
        """The :class:`~adadpo.core.pairs.PairLogps` of a batch laid out as TRL concatenates pairs: the ``B``
        chosen sequences, then the ``B`` rejected ones. ``ref_logps``: the reference's ``[2B]`` sums, same layout."""
        n = self.logps.shape[0]
        if n % 2:
            raise ValueError(f"a batch of pairs has an even number of sequences (chosen rows, then rejected), got {n}")
        refs = ref_logps.chunk(2) if ref_logps is not None else (None, None)
        return PairLogps(*self.logps.chunk(2), *self.lengths.chunk(2), *refs)


class TokenLogps(NamedTuple):
    """One entry per counted token, ``N`` in all, in (sequence, position) order.

    ``logps`` ``[N]`` float32 ``log p(y_t)`` (differentiable); ``seq`` ``[N]`` int64, the batch row of each
    token; ``batch``: ``B``. With ``stats=True`` also, without gradient: ``entropy`` ``[N]`` float32
    ``-sum_v p_v log p_v``; ``mean_logits`` ``[N]`` float32 ``mean_v z_v``; ``is_top1`` ``[N]`` bool, whether
    the label is the first argmax of ``z`` (``None`` without ``stats``); ``lengths`` ``[B]`` int64 counted tokens
    per sequence (``None``: counted from ``seq``).
    """

    logps: Tensor
    seq: Tensor
    batch: int
    entropy: Tensor | None = None
    mean_logits: Tensor | None = None
    is_top1: Tensor | None = None
    lengths: Tensor | None = None

    def counts(self) -> Tensor:
        """``[B]`` int64 counted tokens per sequence, without a device read (no ``bincount``, which syncs on GPU)."""
        if self.lengths is not None:
            return self.lengths
        ones = torch.ones_like(self.seq)
        return torch.zeros(self.batch, dtype=torch.int64, device=self.seq.device).index_add_(0, self.seq, ones)

    def sums(self) -> tuple[Tensor, Tensor]:
        """``(logps, lengths)`` of :meth:`per_sequence` as a plain pair (what the trainer uses every step)."""
        logps = torch.zeros(self.batch, dtype=torch.float64, device=self.logps.device)
        return logps.index_add(0, self.seq, self.logps.double()).float(), self.counts()

    def per_sequence(self) -> SequenceLogps:
        """Sum per sequence: ``logps[b] = sum_{i: seq_i = b} logps_i``, ``lengths[b] = #{i: seq_i = b}``.

        Accumulated in float64 (then float32): ``index_add`` sums in order, and over thousands of tokens a
        float32 running sum loses ~10x more than ``Tensor.sum``'s pairwise reduction on the full-logits path.
        """
        return SequenceLogps(*self.sums())

    def pairs(self, ref_logps: Tensor | None = None) -> PairLogps:
        """Per-sequence sums as a :class:`~adadpo.core.pairs.PairLogps` (see :meth:`SequenceLogps.pairs`)."""
        return self.per_sequence().pairs(ref_logps)

    def desensitized(self, alpha: float) -> SequenceLogps:
        """:meth:`desensitized_sums` as a :class:`SequenceLogps`."""
        return SequenceLogps(*self.desensitized_sums(alpha))

    def desensitized_sums(self, alpha: float) -> tuple[Tensor, Tensor]:
        """LD-DPO's length-desensitised sums of a pair batch (rows ``< batch / 2`` chosen, then rejected):
        ``logps[b] = sum_{t <= S} log p(y_t) + alpha sum_{t > S} log p(y_t)``, ``S = min(T_w, T_l)`` the pair's
        shared length, ``t`` the token's 1-based position in its response; ``lengths`` unweighted counts. Float32
        sums (float64 for float64 log-probs), accumulated in float64."""
        counts = self.counts()
        start = torch.cumsum(counts, 0) - counts
        position = torch.arange(self.seq.numel(), device=self.seq.device) - start[self.seq]  # 0-based
        half = self.batch // 2
        shared = torch.minimum(counts[:half], counts[half:]).repeat(2)
        weight = torch.full_like(self.logps, float(alpha)).masked_fill(position < shared[self.seq], 1.0)
        logps = torch.zeros(self.batch, dtype=torch.float64, device=self.logps.device)
        logps = logps.index_add(0, self.seq, (self.logps * weight).double())
        return logps.to(torch.promote_types(self.logps.dtype, torch.float32)), counts.to(torch.int64)


#: What :func:`counted_tokens` returns: ``(rows, targets, seq, lengths)``.
CountedTokens = tuple[Tensor, Tensor, Tensor, Tensor]


def counted_tokens(labels: Tensor, *, mask: Tensor | None = None, ignore_index: int = -100, shift: bool = True,
                   vocab: int | None = None) -> CountedTokens:
    """The counted tokens of a ``[B, T]`` batch of labels, found with one device read (one ``nonzero``).

    Returns ``(rows, targets, seq, lengths)``: ``[N]`` flat row indices into the ``[B * T]`` positions of the
    model's output (position ``t`` predicts ``labels[:, t + 1]`` with ``shift``), ``[N]`` target ids, ``[N]`` batch
    row of each token, in (sequence, position) order, and ``[B]`` int64 counted tokens per sequence. With ``vocab``
    also checks every target id is in ``[0, vocab)`` (two more reads; data preparation's job in a trainer).
    """
    if labels.dim() != 2:
        raise ValueError(f"labels must have shape [B, T], got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor of token ids, got {labels.dtype}")
    if mask is not None and mask.shape != labels.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)} but labels has {tuple(labels.shape)}")
    T = labels.shape[1]
    keep = labels != ignore_index
    if mask is not None:
        keep = keep & (mask != 0)
    if shift:  # logits at t predict labels at t + 1
        keep, labels = keep[:, 1:], labels[:, 1:]
    width = labels.shape[1]
    flat = keep.reshape(-1).nonzero().squeeze(1)  # the one device read
    seq = torch.div(flat, width, rounding_mode="floor") if width else flat
    rows = seq * T + (flat - seq * width) if shift else flat
    targets = labels.reshape(-1).index_select(0, flat)
    if vocab is not None and targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= vocab):
        bad = targets[(targets < 0) | (targets >= vocab)][0].item()
        raise ValueError(
            f"labels contains token id {bad}, outside the vocabulary [0, {vocab}) (and not ignore_index={ignore_index})"
        )
    return rows, targets, seq, keep.sum(dim=1)


def _index(labels: Tensor, positions: int, vocab: int, mask: Tensor | None, ignore_index: int, shift: bool,
           index: CountedTokens | None) -> CountedTokens:
    """``index``, or the counted tokens of ``labels`` (checked against ``vocab``)."""
    if labels.dim() == 2 and labels.shape[1] != positions:
        raise ValueError(f"labels has {labels.shape[1]} positions but the model output has {positions}; they must "
                         "be aligned like input_ids")
    if index is not None:
        return index
    return counted_tokens(labels, mask=mask, ignore_index=ignore_index, shift=shift, vocab=vocab)


def _chunk_rows(vocab: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        return max(16, _CHUNK_ELEMENTS // max(vocab, 1))
    return CHUNK_SIZE.check(chunk_size)


def _fold_chunk(z: Tensor, targets: Tensor, scratch: Tensor | None) -> tuple:
    """Log-probs of ``targets`` under float32 logits ``z`` ``[n, V]``, which it overwrites.

    ``m = max_v z_v``, ``e_v = exp(z_v - m)``, ``s = sum_v e_v``: ``lse = m + log s``,
    ``log p(y) = z_y - lse``. With ``scratch`` (an ``[n, V]`` float32 buffer) also the entropy
    ``log s - sum_v e_v (z_v - m) / s``, the mean logit and the top-1 flag (``argmax_v z_v == y``, first
    maximum, as ``torch.argmax`` and TRL count it). Returns ``(logps, lse, entropy, mean_logits, is_top1)``.
    """
    target_z = z.gather(1, targets[:, None]).squeeze(1)
    entropy = mean_logits = is_top1 = None
    if scratch is None:
        m = z.amax(dim=1)
        s = z.sub_(m[:, None]).exp_().sum(dim=1)
    else:
        m, argmax = z.max(dim=1)
        is_top1 = argmax == targets
        mean_logits = z.sum(dim=1) / z.shape[1]
        y = z.sub_(m[:, None])
        e = torch.exp(y, out=scratch)
        s = e.sum(dim=1)
        entropy = torch.log(s) - e.mul_(y).sum(dim=1) / s
    lse = m + torch.log(s)
    return target_z - lse, lse, entropy, mean_logits, is_top1


def _logit_grad_(z: Tensor, lse: Tensor, targets: Tensor, grad: Tensor) -> Tensor:
    """Overwrite float32 logits ``z`` ``[n, V]`` with ``d(sum_i g_i log p_i(y_i)) / dz = g (onehot(y) - softmax(z))``."""
    z.sub_(lse[:, None]).exp_().mul_(-grad[:, None])
    z.scatter_add_(1, targets[:, None], grad[:, None])
    return z


def _stats_outputs(n: int, device: torch.device, stats: bool) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    if not stats:
        return None, None, None
    f32 = torch.empty(2, n, dtype=torch.float32, device=device)
    return f32[0], f32[1], torch.empty(n, dtype=torch.bool, device=device)


def _store(out: Tensor, lse: Tensor, extra: tuple, s: int, c: tuple) -> None:
    n = c[0].numel()
    out[s : s + n] = c[0]
    lse[s : s + n] = c[1]
    for dst, src in zip(extra, c[2:]):
        if dst is not None:
            dst[s : s + n] = src


class _LogitsTokenLogps(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, rows: Tensor, targets: Tensor, chunk: int, stats: bool):  # type: ignore[override]
        N, V = rows.numel(), logits.shape[1]
        out = torch.empty(N, dtype=torch.float32, device=logits.device)
        lse = torch.empty_like(out)
        extra = _stats_outputs(N, logits.device, stats)
        buf = torch.empty(min(chunk, N), V, dtype=torch.float32, device=logits.device)
        scratch = torch.empty_like(buf) if stats else None
        for s in range(0, N, chunk):
            r = rows[s : s + chunk]
            z = torch.index_select(logits, 0, r, out=buf[: r.numel()]) if logits.dtype == torch.float32 else (
                buf[: r.numel()].copy_(logits.index_select(0, r))
            )
            _store(out, lse, extra, s, _fold_chunk(z, targets[s : s + chunk], scratch[: r.numel()] if stats else None))
        ctx.save_for_backward(logits, rows, targets, lse)
        ctx.chunk = chunk
        ctx.mark_non_differentiable(*(x for x in extra if x is not None))
        return (out, *extra)

    @staticmethod
    def backward(ctx, grad: Tensor, *_):  # type: ignore[override]
        logits, rows, targets, lse = ctx.saved_tensors
        grad_logits = torch.zeros_like(logits)
        grad = grad.float()
        buf = torch.empty(min(ctx.chunk, rows.numel()), logits.shape[1], dtype=torch.float32, device=logits.device)
        for s in range(0, rows.numel(), ctx.chunk):
            r = rows[s : s + ctx.chunk]
            z = buf[: r.numel()].copy_(logits.index_select(0, r))
            d = _logit_grad_(z, lse[s : s + ctx.chunk], targets[s : s + ctx.chunk], grad[s : s + ctx.chunk])
            grad_logits.index_copy_(0, r, d.to(logits.dtype))
        return grad_logits, None, None, None, None


def _compute_dtype(hidden: Tensor, weight: Tensor) -> torch.dtype:
    """The dtype the model's own ``lm_head(hidden)`` would produce: autocast's, else the weight's."""
    if torch.is_autocast_enabled(hidden.device.type):
        return torch.get_autocast_dtype(hidden.device.type)
    return weight.dtype


def _project(h: Tensor, weight: Tensor, bias: Tensor | None, buf: Tensor) -> Tensor:
    """``buf[:n] = float32(h @ weight.T + bias)``, the product taken in ``weight``'s dtype (``[n, V]``)."""
    out = buf[: h.shape[0]]
    if weight.dtype == torch.float32:
        return torch.addmm(bias, h, weight.t(), out=out) if bias is not None else torch.mm(h, weight.t(), out=out)
    return out.copy_(torch.nn.functional.linear(h, weight, bias))


class _LinearTokenLogps(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, rows: Tensor, targets: Tensor, chunk: int,  # type: ignore[override]
                stats: bool):
        N, V, device = rows.numel(), weight.shape[0], hidden.device
        dtype = _compute_dtype(hidden, weight)
        w = weight.to(dtype)
        b = bias.to(dtype) if bias is not None else None
        out = torch.empty(N, dtype=torch.float32, device=device)
        lse = torch.empty_like(out)
        extra = _stats_outputs(N, device, stats)
        buf = torch.empty(min(chunk, N), V, dtype=torch.float32, device=device)
        scratch = torch.empty_like(buf) if stats else None
        with torch.autocast(device.type, enabled=False):
            for s in range(0, N, chunk):
                h = hidden.index_select(0, rows[s : s + chunk]).to(dtype)
                z = _project(h, w, b, buf)
                _store(out, lse, extra, s, _fold_chunk(z, targets[s : s + chunk], scratch[: h.shape[0]] if stats else None))
        ctx.save_for_backward(hidden, weight, bias, rows, targets, lse)
        ctx.chunk, ctx.dtype = chunk, dtype
        ctx.mark_non_differentiable(*(x for x in extra if x is not None))
        return (out, *extra)

    @staticmethod
    def backward(ctx, grad: Tensor, *_):  # type: ignore[override]
        hidden, weight, bias, rows, targets, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        dtype, chunk, device = ctx.dtype, ctx.chunk, hidden.device
        w = weight.to(dtype)
        b = bias.to(dtype) if bias is not None else None
        grad_h = torch.zeros_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=device) if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=device) if need_b else None
        grad = grad.float()
        buf = torch.empty(min(chunk, rows.numel()), weight.shape[0], dtype=torch.float32, device=device)
        with torch.autocast(device.type, enabled=False):
            for s in range(0, rows.numel(), chunk):
                r = rows[s : s + chunk]
                h = hidden.index_select(0, r).to(dtype)
                d = _logit_grad_(_project(h, w, b, buf), lse[s : s + chunk], targets[s : s + chunk], grad[s : s + chunk])
                if grad_h is not None:
                    grad_h.index_copy_(0, r, (d if dtype == torch.float32 else d.to(dtype)).mm(w).to(hidden.dtype))
                if grad_w is not None:
                    grad_w.addmm_(d.t(), h.float())
                if grad_b is not None:
                    grad_b += d.sum(0)
        return (
            grad_h,
            grad_w.to(weight.dtype) if grad_w is not None else None,
            grad_b.to(bias.dtype) if grad_b is not None else None,
            None,
            None,
            None,
            None,
        )


def _check_batch(labels: Tensor, batch: int, what: str) -> None:
    if labels.shape[:1] != (batch,):
        raise ValueError(f"labels has batch size {labels.shape[0] if labels.dim() else 'none'} but {what} has {batch}")


def token_logps(
    logits: Tensor,
    labels: Tensor,
    *,
    mask: Tensor | None = None,
    ignore_index: int = -100,
    shift: bool = True,
    chunk_size: int | None = None,
    stats: bool = False,
    index: CountedTokens | None = None,
) -> TokenLogps:
    """Per counted token ``log p(y_t)`` from logits ``[B, T, V]``; see :func:`sequence_logps` and :class:`TokenLogps`.
    ``index``: :func:`counted_tokens` of ``labels`` found already (then the labels are not checked again)."""
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape [B, T, V], got {tuple(logits.shape)}")
    B, T, V = logits.shape
    _check_batch(labels, B, "logits")
    rows, targets, seq, lengths = _index(labels, T, V, mask, ignore_index, shift, index)
    outs = _LogitsTokenLogps.apply(logits.reshape(B * T, V), rows, targets, _chunk_rows(V, chunk_size), stats)
    return TokenLogps(outs[0], seq, B, *outs[1:], lengths)


def sequence_logps(
    logits: Tensor,
    labels: Tensor,
    *,
    mask: Tensor | None = None,
    ignore_index: int = -100,
    shift: bool = True,
    chunk_size: int | None = None,
) -> SequenceLogps:
    """Summed log-probs and token counts per sequence from logits.

    Args:
        logits: ``[B, T, V]`` (any float dtype; accumulated in float32).
        labels: ``[B, T]`` token ids, ``ignore_index`` where nothing is predicted (prompt, padding).
        mask: optional ``[B, T]``; zero excludes a position as well (e.g. a completion mask).
        shift: ``True`` when ``labels`` are aligned with ``input_ids`` (HF causal LMs).
        chunk_size: rows (counted tokens) per chunk (default: about 32 MiB of float32 logits).

    Returns:
        :class:`SequenceLogps` ``(logps [B] float32, lengths [B] int64)``; a sequence with no counted
        token has ``logps = 0`` and ``lengths = 0``.
    """
    return token_logps(
        logits, labels, mask=mask, ignore_index=ignore_index, shift=shift, chunk_size=chunk_size
    ).per_sequence()


def linear_token_logps(
    hidden_states: Tensor,
    weight: Tensor,
    labels: Tensor,
    *,
    bias: Tensor | None = None,
    mask: Tensor | None = None,
    ignore_index: int = -100,
    shift: bool = True,
    chunk_size: int | None = None,
    stats: bool = False,
    index: CountedTokens | None = None,
) -> TokenLogps:
    """Per counted token ``log p(y_t)`` from hidden states and the LM head; see :func:`linear_sequence_logps`.
    ``index`` as in :func:`token_logps`.

    With ``stats=True`` it also returns, per counted token and at no extra projection, the entropy, the
    mean logit and the top-1 flag (TRL's ``entropy``, ``logits/*`` and ``mean_token_accuracy``).
    """
    if hidden_states.dim() != 3:
        raise ValueError(f"hidden_states must have shape [B, T, H], got {tuple(hidden_states.shape)}")
    if weight.dim() != 2 or weight.shape[1] != hidden_states.shape[-1]:
        raise ValueError(
            f"weight must have shape [V, H={hidden_states.shape[-1]}] (the LM head), got {tuple(weight.shape)}"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must have shape [V={weight.shape[0]}], got {tuple(bias.shape)}")
    B, T, H = hidden_states.shape
    V = weight.shape[0]
    _check_batch(labels, B, "hidden_states")
    rows, targets, seq, lengths = _index(labels, T, V, mask, ignore_index, shift, index)
    outs = _LinearTokenLogps.apply(
        hidden_states.reshape(B * T, H), weight, bias, rows, targets, _chunk_rows(V, chunk_size), stats
    )
    return TokenLogps(outs[0], seq, B, *outs[1:], lengths)


def linear_sequence_logps(
    hidden_states: Tensor,
    weight: Tensor,
    labels: Tensor,
    *,
    bias: Tensor | None = None,
    mask: Tensor | None = None,
    ignore_index: int = -100,
    shift: bool = True,
    chunk_size: int | None = None,
) -> SequenceLogps:
    """Summed log-probs and token counts per sequence from final hidden states and the LM head.

    Computes ``logits = hidden_states @ weight.T + bias`` a chunk of counted tokens at a time (in the
    weight's dtype, or autocast's, then float32, as ``transformers`` does) and recomputes each chunk in
    backward, so memory stays flat in ``T x V``: besides the ``[B, T, H]`` gradient of the hidden states and
    the float32 ``[V, H]`` gradient of the weight, one ``[n, V]`` float32 buffer, ``n = chunk_size``.
    Gradients flow to ``hidden_states``, ``weight`` and ``bias``; the weight's gradient is accumulated over
    chunks in float32.

    Args:
        hidden_states: ``[B, T, H]``.
        weight: ``[V, H]`` (e.g. ``model.lm_head.weight``); ``bias``: optional ``[V]``.
        labels, mask, ignore_index, shift, chunk_size: as in :func:`sequence_logps`.
    """
    return linear_token_logps(
        hidden_states, weight, labels, bias=bias, mask=mask, ignore_index=ignore_index, shift=shift,
        chunk_size=chunk_size,
    ).per_sequence()
