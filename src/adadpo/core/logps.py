"""Per-sequence summed log-probs of the response tokens, without a second ``[B, T, V]`` tensor.

``log p(y_t) = z_t[y_t] - logsumexp(z_t)``. Both helpers gather the target logit and the log-normaliser
chunk by chunk over the *counted* tokens only (prompt and padding rows are never touched), in float32,
and recompute the chunk's softmax in backward from the saved ``[N]`` log-normalisers. So the extra
memory is one chunk of ``[n, V]`` floats, not a float32 copy of the logits nor a log-softmax output.

- :func:`sequence_logps` starts from logits ``[B, T, V]`` (the model's output).
- :func:`linear_sequence_logps` starts from final hidden states ``[B, T, H]`` and the LM head
  weight ``[V, H]``: the full logits never exist, in forward or backward.

Label conventions follow Hugging Face causal LMs: ``labels`` are aligned with ``input_ids`` and, with
``shift=True`` (default), position ``t`` of the logits predicts ``labels[:, t + 1]``. A token counts when
its label is not ``ignore_index`` and (if given) ``mask`` is nonzero at the label's position.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

#: Target size of one chunk of float32 logits (elements); ``2**23`` floats = 32 MiB.
_CHUNK_ELEMENTS = 2**23


class SequenceLogps(NamedTuple):
    """``logps``: ``[B]`` float32 sums of the counted tokens' log-probs; ``lengths``: ``[B]`` int64 counts."""

    logps: Tensor
    lengths: Tensor


def _targets(
    labels: Tensor, positions: int, vocab: int, mask: Tensor | None, ignore_index: int, shift: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Flat row indices into ``[B * positions]``, their target ids, and their sequence ids."""
    if labels.dim() != 2:
        raise ValueError(f"labels must have shape [B, T], got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor of token ids, got {labels.dtype}")
    B, T = labels.shape
    if T != positions:
        raise ValueError(f"labels has {T} positions but the model output has {positions}; they must be aligned like input_ids")
    keep = labels != ignore_index
    if mask is not None:
        if mask.shape != labels.shape:
            raise ValueError(f"mask has shape {tuple(mask.shape)} but labels has {tuple(labels.shape)}")
        keep = keep & (mask != 0)
    if shift:  # logits at t predict labels at t + 1
        keep = keep[:, 1:]
        labels = labels[:, 1:]
        row_of = torch.arange(B, device=labels.device)[:, None] * T + torch.arange(T - 1, device=labels.device)
    else:
        row_of = torch.arange(B * T, device=labels.device).view(B, T)
    targets = labels[keep]
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= vocab):
        bad = targets[(targets < 0) | (targets >= vocab)][0].item()
        raise ValueError(
            f"labels contains token id {bad}, outside the vocabulary [0, {vocab}) (and not ignore_index={ignore_index})"
        )
    seq = torch.arange(B, device=labels.device)[:, None].expand_as(keep)[keep]
    return row_of[keep], targets, seq


def _chunk_rows(vocab: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        return max(16, _CHUNK_ELEMENTS // max(vocab, 1))
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    return chunk_size


def _softmax_grad(z: Tensor, lse: Tensor, targets: Tensor, grad: Tensor) -> Tensor:
    """``d(sum_i g_i log p_i(y_i)) / dz = g (onehot(y) - softmax(z))`` for float32 ``z`` ``[n, V]``."""
    d = torch.exp(z - lse[:, None]).mul_(-grad[:, None])
    d.scatter_add_(1, targets[:, None], grad[:, None])
    return d


class _LogitsTokenLogps(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, rows: Tensor, targets: Tensor, chunk: int) -> Tensor:  # type: ignore[override]
        out = torch.empty(rows.numel(), dtype=torch.float32, device=logits.device)
        lse = torch.empty_like(out)
        for s in range(0, rows.numel(), chunk):
            z = logits.index_select(0, rows[s : s + chunk]).float()
            lse[s : s + chunk] = torch.logsumexp(z, dim=-1)
            out[s : s + chunk] = z.gather(1, targets[s : s + chunk, None]).squeeze(1) - lse[s : s + chunk]
        ctx.save_for_backward(logits, rows, targets, lse)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        logits, rows, targets, lse = ctx.saved_tensors
        grad_logits = torch.zeros_like(logits)
        for s in range(0, rows.numel(), ctx.chunk):
            r = rows[s : s + ctx.chunk]
            z = logits.index_select(0, r).float()
            d = _softmax_grad(z, lse[s : s + ctx.chunk], targets[s : s + ctx.chunk], grad[s : s + ctx.chunk].float())
            grad_logits.index_copy_(0, r, d.to(logits.dtype))
        return grad_logits, None, None, None


class _LinearTokenLogps(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, rows: Tensor, targets: Tensor, chunk: int) -> Tensor:  # type: ignore[override]
        out = torch.empty(rows.numel(), dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(out)
        for s in range(0, rows.numel(), chunk):
            z = F.linear(hidden.index_select(0, rows[s : s + chunk]), weight, bias).float()
            lse[s : s + chunk] = torch.logsumexp(z, dim=-1)
            out[s : s + chunk] = z.gather(1, targets[s : s + chunk, None]).squeeze(1) - lse[s : s + chunk]
        ctx.save_for_backward(hidden, weight, bias, rows, targets, lse)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        hidden, weight, bias, rows, targets, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.zeros_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device) if need_b else None
        for s in range(0, rows.numel(), ctx.chunk):
            r = rows[s : s + ctx.chunk]
            h = hidden.index_select(0, r)
            z = F.linear(h, weight, bias).float()
            d = _softmax_grad(z, lse[s : s + ctx.chunk], targets[s : s + ctx.chunk], grad[s : s + ctx.chunk].float())
            if grad_h is not None:
                grad_h.index_copy_(0, r, (d.to(weight.dtype) @ weight).to(hidden.dtype))
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
        )


def _sum_per_sequence(token_logps: Tensor, seq: Tensor, batch: int) -> SequenceLogps:
    logps = torch.zeros(batch, dtype=torch.float32, device=token_logps.device).index_add(0, seq, token_logps)
    lengths = torch.bincount(seq, minlength=batch).to(torch.int64)
    return SequenceLogps(logps, lengths)


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
        chunk_size: rows per chunk (default: about 32 MiB of float32 logits).

    Returns:
        :class:`SequenceLogps` ``(logps [B] float32, lengths [B] int64)``; a sequence with no counted
        token has ``logps = 0`` and ``lengths = 0``.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape [B, T, V], got {tuple(logits.shape)}")
    B, T, V = logits.shape
    if labels.shape[:1] != (B,):
        raise ValueError(f"labels has batch size {labels.shape[0] if labels.dim() else 'none'} but logits has {B}")
    rows, targets, seq = _targets(labels, T, V, mask, ignore_index, shift)
    flat = logits.reshape(B * T, V)
    token_logps = _LogitsTokenLogps.apply(flat, rows, targets, _chunk_rows(V, chunk_size))
    return _sum_per_sequence(token_logps, seq, B)


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
    weight's dtype, then float32, as ``transformers`` does) and recomputes each chunk in backward, so
    memory stays flat in ``T x V``. Gradients flow to ``hidden_states``, ``weight`` and ``bias``.

    Args:
        hidden_states: ``[B, T, H]``.
        weight: ``[V, H]`` (e.g. ``model.lm_head.weight``); ``bias``: optional ``[V]``.
        labels, mask, ignore_index, shift, chunk_size: as in :func:`sequence_logps`.
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
    if labels.shape[:1] != (B,):
        raise ValueError(f"labels has batch size {labels.shape[0] if labels.dim() else 'none'} but hidden_states has {B}")
    rows, targets, seq = _targets(labels, T, V, mask, ignore_index, shift)
    flat = hidden_states.reshape(B * T, H)
    token_logps = _LinearTokenLogps.apply(flat, weight, bias, rows, targets, _chunk_rows(V, chunk_size))
    return _sum_per_sequence(token_logps, seq, B)
