"""Log-prob backends: one forward of a causal LM over a TRL preference batch, to a :class:`adadpo.PairLogps`.

A TRL preference batch holds ``2B`` rows, the ``B`` chosen sequences then the ``B`` rejected ones, with a
``completion_mask`` marking the response tokens. :func:`model_inputs` turns it into the model's keywords and
``labels`` (the input ids, ``-100`` outside the responses): the one masking convention used from here on.
Every backend takes those (and optionally the batch's :func:`~adadpo.core.logps.counted_tokens`, found once for
the policy and the reference, and a :data:`Reference` giving the reference sums) and returns
``(pairs, metric_sums)``: the :class:`adadpo.PairLogps` of the batch, built once, with the reference sums and the
per-pair extras as fields (WPO's ``pair_weights``, LD-DPO's ``raw_chosen_logps``, the MoE ``aux_loss``), and TRL's
token metrics as ``(numerator, count)`` sums (empty without ``metrics``). No backend
reads a value back from the device.

- ``chunked`` (:class:`ChunkedBackend`): backbone + :func:`adadpo.core.logps.linear_token_logps` through the
  chunked head (:mod:`adadpo.trl.chunked_head`); the ``[2B, T, V]`` logits never exist.
- ``trl_fused`` (:class:`TrlFusedBackend`): TRL 1.16's fused LM head (``fused_lm_head=True``), what stock
  ``DPOTrainer`` uses.
- ``full`` (:class:`FullBackend`): the model's own forward with full logits, then
  :func:`adadpo.core.logps.token_logps`.

:func:`choose_backend` picks one for a model (``chunked`` falls back to ``trl_fused`` where it cannot serve);
:func:`batch_pair_logps` is the whole path for one batch, for callers outside a trainer (``adadpo diagnose``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from adadpo.core.logps import CountedTokens, TokenLogps, counted_tokens, token_logps
from adadpo.core.pairs import PairLogps
from adadpo.trl.chunked_head import chunked_head_problem, install_chunked_head
from adadpo.trl.reference import reference_sums
from adadpo.trl.sharding import UNSERVED

logger = logging.getLogger("adadpo")

#: Token-weighted metrics of one step: TRL's name -> (numerator, count), reduced as sums over processes.
MetricSums = dict[str, tuple[Tensor, Tensor]]

#: Batch columns that are not model inputs.
NON_MODEL_KEYS = frozenset({"completion_mask", "ref_chosen_logps", "ref_rejected_logps"})


def model_inputs(batch: dict[str, Tensor]) -> tuple[dict[str, Any], Tensor]:
    """The model keywords of a TRL preference batch and its ``labels``: ``input_ids`` with ``-100`` wherever
    ``completion_mask`` is 0 (prompt and padding), aligned with ``input_ids`` (the model shifts)."""
    kwargs = {k: v for k, v in batch.items() if k not in NON_MODEL_KEYS}
    kwargs["use_cache"] = False
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    return kwargs, labels


def token_metric_sums(tokens: TokenLogps) -> MetricSums:
    """TRL's token metrics from per-token statistics of a ``[2B]`` pair batch (rows ``< B`` are chosen), by masked
    sums (no boolean indexing, which would read the mask's size from the device)."""
    chosen = tokens.seq < tokens.batch // 2
    n_w = chosen.sum()
    zero = tokens.mean_logits.new_zeros(())
    return {
        "entropy": (tokens.entropy.sum(), tokens.seq.new_tensor(tokens.seq.numel())),
        "logits/chosen": (torch.where(chosen, tokens.mean_logits, zero).sum(), n_w),
        "logits/rejected": (torch.where(chosen, zero, tokens.mean_logits).sum(), tokens.seq.numel() - n_w),
        "mean_token_accuracy": ((tokens.is_top1 & chosen).sum(), n_w),
    }


#: What a backend calls, after the policy's forward, for the reference sums ``(R_w, R_l)`` it builds into the pairs.
Reference = Callable[[], tuple[Tensor, Tensor]]


def _pairs(logps: Tensor, lengths: Tensor, reference: Reference | None, **extras: Tensor | None) -> PairLogps:
    """The pairs of ``[2B]`` sums and lengths laid out as TRL concatenates them (chosen rows, then rejected), with
    the reference's sums when ``reference`` is given (called now: after the policy's forward, TRL's order)."""
    w, l = logps.chunk(2)
    T_w, T_l = lengths.chunk(2)
    R_w, R_l = reference() if reference is not None else (None, None)
    return PairLogps(w, l, T_w, T_l, R_w, R_l, check=False, **extras)


class LogpsBackend:
    """Computes a batch's ``(PairLogps, MetricSums)`` from ``model(**model_kwargs)`` and ``labels``; with
    ``ld_alpha``, LD-DPO's length-desensitised sums (:meth:`adadpo.core.logps.TokenLogps.desensitized_sums`)."""

    name = ""

    def __init__(self, chunk_size: int | None = None, ld_alpha: float | None = None) -> None:
        self.chunk_size = chunk_size
        self.ld_alpha = ld_alpha

    def __call__(self, model: Any, model_kwargs: dict[str, Any], labels: Tensor, metrics: bool,
                 wpo: bool = False, index: CountedTokens | None = None,
                 reference: Reference | None = None) -> tuple[PairLogps, MetricSums]:
        raise NotImplementedError

    def _output(self, tokens: TokenLogps, metric_sums: MetricSums, aux_loss: Tensor | None,
                reference: Reference | None) -> tuple[PairLogps, MetricSums]:
        if self.ld_alpha is None:
            return _pairs(*tokens.sums(), reference, aux_loss=aux_loss), metric_sums
        raw = tokens.sums()[0]
        return _pairs(*tokens.desensitized_sums(self.ld_alpha), reference, aux_loss=aux_loss,
                      raw_chosen_logps=raw[: tokens.batch // 2]), metric_sums

    def __repr__(self) -> str:
        return f"{type(self).__name__}(chunk_size={self.chunk_size}, ld_alpha={self.ld_alpha})"


class ChunkedBackend(LogpsBackend):
    """Backbone + chunked LM head (needs :func:`~adadpo.trl.chunked_head.install_chunked_head`)."""

    name = "chunked"

    def __call__(self, model: Any, model_kwargs: dict[str, Any], labels: Tensor, metrics: bool,
                 wpo: bool = False, index: CountedTokens | None = None,
                 reference: Reference | None = None) -> tuple[PairLogps, MetricSums]:
        _no_wpo(self, wpo)
        out = model(**model_kwargs, labels=labels, adadpo_chunked=True, adadpo_stats=metrics,
                    adadpo_chunk_size=self.chunk_size, adadpo_index=index)
        return self._output(out.tokens, token_metric_sums(out.tokens) if metrics else {}, out.aux_loss, reference)


class FullBackend(LogpsBackend):
    """The model's own logits, then :func:`~adadpo.core.logps.token_logps`."""

    name = "full"

    def __call__(self, model: Any, model_kwargs: dict[str, Any], labels: Tensor, metrics: bool,
                 wpo: bool = False, index: CountedTokens | None = None,
                 reference: Reference | None = None) -> tuple[PairLogps, MetricSums]:
        _no_wpo(self, wpo)
        out = model(**model_kwargs)
        tokens = token_logps(out.logits, labels, chunk_size=self.chunk_size, stats=metrics, index=index)
        return self._output(tokens, token_metric_sums(tokens) if metrics else {}, getattr(out, "aux_loss", None),
                            reference)


class TrlFusedBackend(LogpsBackend):
    """TRL's fused LM head (``trl.trainer.utils.add_fused_lm_head``, which ``DPOTrainer`` installs)."""

    name = "trl_fused"

    def __call__(self, model: Any, model_kwargs: dict[str, Any], labels: Tensor, metrics: bool,
                 wpo: bool = False, index: CountedTokens | None = None,
                 reference: Reference | None = None) -> tuple[PairLogps, MetricSums]:
        out = model(**model_kwargs, labels=labels, fused_lm_head=True)
        counted = labels[:, 1:] != -100
        width = counted.size(1)  # prompt-learning PEFT prepends virtual tokens: keep the real positions
        log_probs = out.log_probs[:, -width:]
        metric_sums = self._metric_sums(out, counted) if metrics else {}
        weights = self._wpo_weights(out, log_probs, counted) if wpo else None
        lengths = counted.sum(dim=1)
        if self.ld_alpha is None:
            return _pairs(log_probs.sum(dim=1), lengths, reference, pair_weights=weights, aux_loss=out.aux_loss), \
                metric_sums
        raw = (log_probs.double() * counted).sum(dim=1).float()
        return _pairs(_desensitized(log_probs, counted, lengths, self.ld_alpha), lengths, reference,
                      pair_weights=weights, aux_loss=out.aux_loss, raw_chosen_logps=raw.chunk(2)[0]), metric_sums

    @staticmethod
    @torch.no_grad()
    def _wpo_weights(outputs: Any, log_probs: Tensor, counted: Tensor) -> Tensor:
        """WPO's pair weights ``w_w w_l``, ``w = exp(mean_t(log p(y_t) - log sum_v p_v^2))`` over the response
        tokens (the sampling probability of the response under the policy, aligned per token), ``[B]``."""
        if getattr(outputs, "log_sum_sq_probs", None) is None:
            raise ValueError("use_weighting=True (WPO) needs TRL's fused LM head with the 'log_sum_sq_probs' output")
        aligned = (log_probs - outputs.log_sum_sq_probs[:, -counted.size(1):]) * counted
        w = torch.exp(aligned.sum(dim=1) / counted.sum(dim=1).clamp_min(1))
        w_w, w_l = w.chunk(2)
        return w_w * w_l

    @staticmethod
    def _metric_sums(outputs: Any, counted: Tensor) -> MetricSums:
        """TRL's token metrics, as ``(numerator, count)``, from its fused head's ``[2B, T-1]`` outputs."""
        width = counted.size(1)
        chosen_mask, rejected_mask = counted.chunk(2)
        sums: MetricSums = {}
        if outputs.entropy is not None:
            sums["entropy"] = ((outputs.entropy[:, -width:].detach() * counted).sum(), counted.sum())
        if outputs.mean_logits is not None:
            logits_w, logits_l = outputs.mean_logits[:, -width:].detach().chunk(2)
            zero = logits_w.new_zeros(())
            sums["logits/chosen"] = (torch.where(chosen_mask, logits_w, zero).sum(), chosen_mask.sum())
            sums["logits/rejected"] = (torch.where(rejected_mask, logits_l, zero).sum(), rejected_mask.sum())
        if outputs.is_top1 is not None:
            top1_w, _ = outputs.is_top1[:, -width:].chunk(2)
            sums["mean_token_accuracy"] = ((top1_w & chosen_mask).sum(), chosen_mask.sum())
        return sums


def _desensitized(log_probs: Tensor, counted: Tensor, lengths: Tensor, alpha: float) -> Tensor:
    """LD-DPO's sums of ``[2B, T]`` per-position log-probs (:meth:`TokenLogps.desensitized_sums`), by masked
    arithmetic: weight 1 up to the pair's shared length ``S = min(T_w, T_l)``, ``alpha`` beyond, 0 off the response."""
    position = counted.cumsum(dim=1) - 1  # 0-based position in the response
    shared = torch.minimum(*lengths.chunk(2)).repeat(2)
    weight = torch.full_like(log_probs, float(alpha)).masked_fill(position < shared[:, None], 1.0)
    sums = ((log_probs * weight).double() * counted).sum(dim=1)
    return sums.to(torch.promote_types(log_probs.dtype, torch.float32))


def _no_wpo(backend: LogpsBackend, wpo: bool) -> None:
    if wpo:
        raise ValueError(f"logps_backend={backend.name!r} does not compute WPO's weights; use_weighting needs "
                         "'trl_fused'")


_WARNED = "_adadpo_chunked_fallback_warned"
BACKENDS: dict[str, type[LogpsBackend]] = {b.name: b for b in (ChunkedBackend, TrlFusedBackend, FullBackend)}


def choose_backend(model: Any, requested: str, chunk_size: int | None = None, sharding: str | None = None,
                   ld_alpha: float | None = None, wpo: bool = False) -> LogpsBackend:
    """The backend for ``model`` (unwrapped from DDP; possibly a PEFT model): ``requested``, except that
    ``chunked`` falls back to ``trl_fused``, with one logged warning, when :func:`chunked_head_problem` names
    a reason, the model will be sharded in a way the chunked head does not serve (``sharding``, as
    :func:`adadpo.trl.sharding.head_sharding` names it: ``"fsdp1"`` or ``"zero3"``; FSDP2 is served), or a
    prompt-learning PEFT adapter prepends virtual tokens (warned once per model); and that ``wpo`` (WPO's
    weights, which need each token's ``log sum_v p_v^2``, an output only TRL's fused head computes) always uses
    ``trl_fused``. Installs the chunked head when it is chosen. ``ld_alpha``: LD-DPO's weight of the tokens past
    the pair's shared length."""
    is_peft = hasattr(model, "get_base_model") and hasattr(model, "peft_config")
    inner = model.get_base_model() if is_peft else model
    problem = None
    if wpo and requested != "trl_fused":
        problem = ("use_weighting=True (WPO) needs each token's log sum of squared probabilities, which only TRL's "
                   "fused head computes")
    elif requested == "chunked":
        problem = chunked_head_problem(inner)
        if problem is None and sharding in UNSERVED:
            problem = UNSERVED[sharding]
        peft_config = getattr(model, "active_peft_config", None) if is_peft else None
        if problem is None and peft_config is not None and peft_config.is_prompt_learning:
            problem = "its prompt-learning PEFT adapter prepends virtual tokens"
        if problem is None:
            install_chunked_head(inner)
    if problem is not None:
        if not getattr(inner, _WARNED, False):
            setattr(inner, _WARNED, True)
            logger.warning(
                "logps_backend=%r cannot serve %s: %s. Its log-probs come from TRL's fused LM head "
                "(logps_backend='trl_fused') instead.",
                requested,
                type(inner).__name__,
                problem,
            )
        requested = "trl_fused"
    return BACKENDS[requested](chunk_size, ld_alpha)


def batch_pair_logps(model: Any, batch: dict[str, Tensor], *, ref_model: Any = None, backend: str = "chunked",
                     chunk_size: int | None = None) -> PairLogps:
    """The :class:`adadpo.PairLogps` of one collated TRL preference batch under ``model`` (and, as reference
    sums, ``ref_model``), without gradients, exactly as ``AdaDPOTrainer`` computes them. ``backend`` as
    ``AdaDPOConfig.logps_backend`` (``trl_fused`` needs TRL's fused head on the model: ``add_fused_lm_head``)."""
    model_kwargs, labels = model_inputs(batch)
    index = counted_tokens(labels)

    def reference() -> tuple[Tensor, Tensor]:
        ref_backend = choose_backend(ref_model, backend, chunk_size)
        return reference_sums(ref_backend, ref_model, model_kwargs, labels, index=index)

    with torch.no_grad():
        pairs, _ = choose_backend(model, backend, chunk_size)(model, model_kwargs, labels, metrics=False, index=index,
                                                              reference=None if ref_model is None else reference)
    return pairs
