"""``AdaDPOTrainer``: TRL's ``DPOTrainer`` with the loss computed by :func:`adadpo.preference_loss`.

Everything but the loss is TRL's: dataset formats, tokenisation, collation, PEFT, reference handling,
distributed set-up. TRL 1.16 computes forward, reference, loss and metrics in one method,
``DPOTrainer._compute_loss``; this class overrides that method and little else:

* ``_compute_loss`` / ``compute_ref_log_probs``: log-probs from the backend chosen by
  ``args.logps_backend``. The default, ``chunked``, runs the model's backbone and then
  :func:`adadpo.core.logps.linear_token_logps` on the final hidden states and the LM head weight, a chunk of
  counted tokens at a time, so the ``[2B, T, V]`` logits never exist (see :func:`install_chunked_head`).

* ``__init__``: reference-free losses (simpo, cpo, orpo) load no reference model.
* ``_prepare_dataset``: column, empty-response and length checks with messages naming the problem.
* ``_save_checkpoint``: checkpoints are staged and renamed into place, so a killed run never leaves a
  half-written ``checkpoint-N``.
* ``create_model_card``: TRL's card plus every adadpo and trainer setting.

Pinned to ``trl>=1.16,<1.17`` (see pyproject.toml): the overridden methods are TRL internals.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import shutil
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import trl.trainer.dpo_trainer as _trl_dpo
from torch import Tensor
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
from transformers.utils import ModelOutput
from trl import DPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import get_config_model_id, use_adapter

from adadpo.core.logps import TokenLogps, linear_token_logps, token_logps
from adadpo.core.losses import PreferenceLossOutput, get_family, preference_loss
from adadpo.trl.config import AdaDPOConfig
from adadpo.trl.data import check_preference_dataset, report_truncation
from adadpo.trl.modelcard import settings_section

logger = logging.getLogger("adadpo")

#: Token-weighted metrics of one step: name -> (numerator, count), reduced as sums over processes.
MetricSums = dict[str, tuple[Tensor, Tensor]]

_NON_MODEL_KEYS = frozenset({"completion_mask", "ref_chosen_logps", "ref_rejected_logps"})
_STAGING_DIR = ".staging"


class NonFiniteLossError(FloatingPointError):
    """Training stopped because the loss (or the log-probs it is built from) was not finite."""


@dataclass
class PairLogps:
    """Per-pair sums of response-token log-probs (``[B]`` each) and response lengths."""

    chosen: Tensor
    rejected: Tensor
    chosen_lengths: Tensor
    rejected_lengths: Tensor


@contextlib.contextmanager
def _no_reference_model(trainer: DPOTrainer) -> Iterator[None]:
    """While ``DPOTrainer.__init__`` runs, make its reference-model loading a no-op.

    TRL loads a copy of the policy as reference unless PEFT or precomputation makes it unnecessary; a
    reference-free loss needs none. The policy itself is loaded before ``Trainer.__init__`` creates the
    accelerator, the reference after, which tells the two calls apart.
    """
    load = _trl_dpo.create_model_from_path

    def load_policy_only(*args: Any, **kwargs: Any) -> Any:
        if "accelerator" in trainer.__dict__:
            return None
        return load(*args, **kwargs)

    _trl_dpo.create_model_from_path = load_policy_only
    try:
        yield
    finally:
        _trl_dpo.create_model_from_path = load


# ------------------------------------------------------------------------------------------ chunked head

#: Marker attribute set on a causal LM whose forward :func:`install_chunked_head` has wrapped.
_CHUNKED_MARKER = "_adadpo_chunked_head"
#: Config fields that rescale or cap the logits after the LM head (the chunked head does not apply them).
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


@dataclass
class ChunkedLogpsOutput(ModelOutput):
    """What a model with :func:`install_chunked_head` returns for ``adadpo_chunked=True``.

    Per counted token (``N`` in all, in (row, position) order; see :class:`adadpo.core.logps.TokenLogps`):
    ``logps`` ``[N]`` float32, ``seq`` ``[N]`` int64 row; with ``adadpo_stats=True`` also ``entropy``,
    ``mean_logits`` ``[N]`` float32 and ``is_top1`` ``[N]`` bool. ``aux_loss``: the MoE load-balancing
    loss when router logits were requested, else ``None``.
    """

    logps: Tensor | None = None
    seq: Tensor | None = None
    entropy: Tensor | None = None
    mean_logits: Tensor | None = None
    is_top1: Tensor | None = None
    aux_loss: Tensor | None = None

    def tokens(self, batch: int) -> TokenLogps:
        return TokenLogps(self.logps, self.seq, batch, self.entropy, self.mean_logits, self.is_top1)


def chunked_head_problem(model: Any) -> str | None:
    """Why :func:`install_chunked_head` cannot serve ``model`` (an unwrapped causal LM), or ``None`` if it can.

    The chunked head computes ``log_softmax(hidden @ W.T + b)`` itself, so it needs a backbone separate
    from the head (``model.base_model``), an output layer that is exactly ``torch.nn.Linear`` (not a PEFT,
    quantised or parallel layer) and no transformation of the logits after it (soft-capping, scaling).
    """
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if type(head) is not torch.nn.Linear:
        return f"its output layer is {type(head).__name__}, not a plain torch.nn.Linear"
    config = getattr(model, "config", None)
    if config is None or getattr(model, "base_model", model) is model:
        return "it has no backbone separate from its LM head (model.base_model)"
    text_config = config.get_text_config()
    if text_config is not config:
        return "it is a multimodal model (its text config is nested)"
    for name in _LOGIT_TRANSFORMS:
        value = getattr(text_config, name, None)
        if value is not None and not (name != "final_logit_softcapping" and value == 1):
            return f"its config transforms the logits after the LM head ({name}={value!r})"
    return None


def _router_aux_loss(model: Any, backbone_outputs: Any, attention_mask: Tensor | None) -> Tensor:
    """The MoE load-balancing loss, as the model's own forward (and TRL's fused head) computes it."""
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    text_config = model.config.get_text_config()
    num_experts = getattr(model, "num_experts", None) or text_config.num_experts
    top_k = getattr(model, "num_experts_per_tok", None) or text_config.num_experts_per_tok
    return load_balancing_loss_func(backbone_outputs.router_logits, num_experts, top_k, attention_mask)


def install_chunked_head(model: Any) -> None:
    """Let ``model(..., labels=labels, adadpo_chunked=True)`` return :class:`ChunkedLogpsOutput`.

    Wraps ``model.forward`` (an unwrapped causal LM; check :func:`chunked_head_problem` first). With
    ``adadpo_chunked=True`` the wrapper runs the backbone (``model.base_model``, which carries any LoRA
    layers) and then :func:`~adadpo.core.logps.linear_token_logps` on its last hidden state and
    ``model.get_output_embeddings()``'s weight and bias, looked up on every call. Extra keywords:
    ``adadpo_stats`` (also the per-token entropy, mean logit and top-1 flag) and ``adadpo_chunk_size``.
    Without ``adadpo_chunked`` the forward is the previous one. Because the call goes through
    ``model.__call__``, DDP, PEFT and accelerate's autocast wrappers around ``model`` still apply.
    Idempotent.
    """
    if getattr(model, _CHUNKED_MARKER, False):
        return
    previous = model.forward
    text_config = model.config.get_text_config()

    # keep the original signature (``generate`` validates its kwargs against it): wrap the function, not the bound method
    @functools.wraps(getattr(previous, "__func__", previous))
    def forward(
        self: Any,
        *args: Any,
        adadpo_chunked: bool = False,
        adadpo_stats: bool = False,
        adadpo_chunk_size: int | None = None,
        labels: Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        if not adadpo_chunked:
            return previous(*args, **({**kwargs, "labels": labels} if labels is not None else kwargs))
        if labels is None:
            raise ValueError("adadpo_chunked=True needs labels (input_ids with -100 where nothing is scored)")
        kwargs["use_cache"] = False
        if getattr(text_config, "output_router_logits", False):
            kwargs.setdefault("output_router_logits", True)
        backbone_outputs = self.base_model(*args, **kwargs)
        head = self.get_output_embeddings()
        hidden = backbone_outputs.last_hidden_state.to(head.weight.device)
        tokens = linear_token_logps(
            hidden, head.weight, labels.to(head.weight.device), bias=head.bias, chunk_size=adadpo_chunk_size,
            stats=adadpo_stats,
        )
        aux_loss = None
        if kwargs.get("output_router_logits"):
            aux_loss = _router_aux_loss(self, backbone_outputs, kwargs.get("attention_mask"))
        return ChunkedLogpsOutput(
            logps=tokens.logps, seq=tokens.seq, entropy=tokens.entropy, mean_logits=tokens.mean_logits,
            is_top1=tokens.is_top1, aux_loss=aux_loss,
        )

    model.forward = types.MethodType(forward, model)
    setattr(model, _CHUNKED_MARKER, True)


class AdaDPOTrainer(DPOTrainer):
    """Drop-in replacement of ``trl.DPOTrainer`` for the six loss families, plain or AdaDPO-balanced.

    Same constructor and dataset formats as ``DPOTrainer``; ``args`` must be an :class:`AdaDPOConfig`
    (``loss``, ``balance``, ``balance_*``, ``gamma``, ``length_alpha``, ``cpo_alpha``).
    Per step, with ``A`` the summed response log-probs of the policy and ``R`` of the reference
    (reference-based losses only)::

        loss = preference_loss(args.loss, chosen_logps=A_w, rejected_logps=A_l, chosen_lengths=T_w,
                               rejected_lengths=T_l, ref_chosen_logps=R_w, ref_rejected_logps=R_l,
                               beta=args.beta, balance=args.loss_balance, **args.loss_params).loss

    Logged metrics keep TRL's names (``rewards/*``, ``logps/*``, ``entropy``, ``logits/*``,
    ``mean_token_accuracy``, ``num_tokens``) and add ``balance/*``, averaged over processes.
    A non-finite loss raises :class:`NonFiniteLossError` on every process.
    """

    _tag_names = ["trl", "dpo", "adadpo"]
    _name = "AdaDPO"

    def __init__(self, model: Any, ref_model: Any = None, args: AdaDPOConfig | None = None, *pos: Any, **kw: Any):
        if args is None:
            name = model if isinstance(model, str) else get_config_model_id(model.config)
            args = AdaDPOConfig(f"{(name or 'model').split('/')[-1]}-AdaDPO")
        if not isinstance(args, AdaDPOConfig):
            raise TypeError(
                f"args must be an adadpo.trl.AdaDPOConfig (a DPOConfig with `loss` and `balance_*` fields), "
                f"got {type(args).__name__}"
            )
        self.family = get_family(args.loss)
        peft_config = kw.get("peft_config") if len(pos) < 9 else pos[8]
        if self.family.needs_reference:
            _check_reference_source(model, ref_model, args, peft_config)
        elif ref_model is not None:
            raise ValueError(f"ref_model was given, but loss={args.loss!r} is reference-free; drop it or use dpo, rdpo or ipo")
        context = contextlib.nullcontext() if self.family.needs_reference else _no_reference_model(self)
        self._backends: dict[int, str] = {}  # id(unwrapped causal LM) -> backend; filled by _backend_for
        with context:
            super().__init__(model, ref_model, args, *pos, **kw)
        self._backend_for(self.model)
        if self.ref_model is not None:
            self._backend_for(self.ref_model)

    # ------------------------------------------------------------------------------------------- data

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        if "chosen_ids" in (dataset.column_names or ()):
            return dataset  # already tokenised
        check_preference_dataset(dataset, dataset_name)
        prepared = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        report_truncation(dataset, prepared, dataset_name, args.max_length, args.truncation_mode)
        return prepared

    # --------------------------------------------------------------------------------------- log-probs

    def _backend_for(self, model: Any) -> str:
        """The log-prob backend for ``model`` (policy or reference, possibly DDP- or PEFT-wrapped).

        ``args.logps_backend``, except that ``chunked`` falls back to ``trl_fused`` (with one warning per
        model) when :func:`chunked_head_problem` names a reason, or the LM head is sharded (FSDP, ZeRO-3),
        or a prompt-learning PEFT adapter prepends virtual tokens. Decided once per model.
        """
        inner = self.accelerator.unwrap_model(model)
        if hasattr(inner, "get_base_model") and hasattr(inner, "peft_config"):
            peft_model, inner = inner, inner.get_base_model()
        else:
            peft_model = None
        key = id(inner)
        if key in self._backends:
            return self._backends[key]
        backend = self.args.logps_backend
        if backend == "chunked":
            problem = chunked_head_problem(inner)
            if problem is None and (self.is_fsdp_enabled or _zero_stage(self) == 3):
                problem = "its LM head weight is sharded (FSDP or DeepSpeed ZeRO-3)"
            peft_config = getattr(peft_model, "active_peft_config", None)
            if problem is None and peft_config is not None and peft_config.is_prompt_learning:
                problem = "its prompt-learning PEFT adapter prepends virtual tokens"
            if problem is None:
                install_chunked_head(inner)
            else:
                logger.warning(
                    "logps_backend='chunked' cannot serve %s: %s. Its log-probs come from TRL's fused LM head "
                    "(logps_backend='trl_fused') instead.",
                    type(inner).__name__,
                    problem,
                )
                backend = "trl_fused"
        self._backends[key] = backend
        return backend

    def _model_kwargs(self, inputs: dict[str, Tensor]) -> tuple[dict[str, Any], Tensor]:
        kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        kwargs["use_cache"] = False
        labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
        return kwargs, labels

    @staticmethod
    def _pair_sums(per_token_logps: Tensor, completion_mask: Tensor) -> PairLogps:
        """Sum the ``[2B, T-1]`` per-token log-probs (chosen rows first) into per-pair sums and lengths."""
        shift_mask = completion_mask[:, 1:]
        sums = per_token_logps[:, -shift_mask.size(1) :].sum(dim=1)  # prompt-learning PEFT prepends tokens
        lengths = shift_mask.sum(dim=1)
        (a_w, a_l), (t_w, t_l) = sums.chunk(2), lengths.chunk(2)
        return PairLogps(a_w, a_l, t_w, t_l)

    @staticmethod
    def _token_pair_sums(tokens: TokenLogps) -> tuple[PairLogps, MetricSums]:
        """Per-pair sums and lengths from per-token log-probs (rows ``< B`` chosen), and TRL's token metrics.

        The metrics, as ``(numerator, count)``: ``entropy`` over every counted token, ``logits/chosen`` and
        ``logits/rejected`` (mean logit) over each side's tokens, ``mean_token_accuracy`` over the chosen ones.
        """
        per_seq = tokens.per_sequence()
        (a_w, a_l), (t_w, t_l) = per_seq.logps.chunk(2), per_seq.lengths.chunk(2)
        sums: MetricSums = {}
        if tokens.entropy is not None:
            chosen = tokens.seq < tokens.batch // 2
            n_w = chosen.sum()
            sums["entropy"] = (tokens.entropy.sum(), tokens.seq.new_tensor(tokens.seq.numel()))
            sums["logits/chosen"] = (tokens.mean_logits[chosen].sum(), n_w)
            sums["logits/rejected"] = (tokens.mean_logits[~chosen].sum(), tokens.seq.numel() - n_w)
            sums["mean_token_accuracy"] = ((tokens.is_top1 & chosen).sum(), n_w)
        return PairLogps(a_w, a_l, t_w, t_l), sums

    @staticmethod
    def _fused_metric_sums(outputs: Any, completion_mask: Tensor) -> MetricSums:
        """TRL's token metrics, as ``(numerator, count)``, from its fused head's ``[2B, T-1]`` outputs."""
        mask = completion_mask[:, 1:].bool()
        seq_len = mask.size(1)
        chosen_mask, rejected_mask = mask.chunk(2)
        sums: MetricSums = {}
        if outputs.entropy is not None:
            sums["entropy"] = ((outputs.entropy[:, -seq_len:].detach() * mask).sum(), mask.sum())
        if outputs.mean_logits is not None:
            logits_w, logits_l = outputs.mean_logits[:, -seq_len:].detach().chunk(2)
            sums["logits/chosen"] = (logits_w[chosen_mask].sum(), chosen_mask.sum())
            sums["logits/rejected"] = (logits_l[rejected_mask].sum(), rejected_mask.sum())
        if outputs.is_top1 is not None:
            top1_w, _ = outputs.is_top1[:, -seq_len:].chunk(2)
            sums["mean_token_accuracy"] = ((top1_w & chosen_mask).sum(), chosen_mask.sum())
        return sums

    def _forward_logps(
        self, model: Any, model_kwargs: dict[str, Any], labels: Tensor, completion_mask: Tensor, metrics: bool
    ) -> tuple[PairLogps, MetricSums, Tensor | None]:
        """One forward of ``model`` with the backend chosen for it: per-pair sums, token metrics, MoE aux loss.

        ``chunked``: backbone + :func:`~adadpo.core.logps.linear_token_logps`; ``trl_fused``: TRL's fused LM
        head; ``full``: the model's own forward (full ``[2B, T, V]`` logits), then
        :func:`~adadpo.core.logps.token_logps`. ``metrics=False`` skips the token metrics where that saves work.
        """
        backend = self._backend_for(model)
        if backend == "chunked":
            out = model(
                **model_kwargs, labels=labels, adadpo_chunked=True, adadpo_stats=metrics,
                adadpo_chunk_size=self.args.logps_chunk_size,
            )
            return (*self._token_pair_sums(out.tokens(labels.shape[0])), out.aux_loss)
        if backend == "full":
            out = model(**model_kwargs)
            tokens = token_logps(out.logits, labels, chunk_size=self.args.logps_chunk_size, stats=metrics)
            return (*self._token_pair_sums(tokens), getattr(out, "aux_loss", None))
        out = model(**model_kwargs, labels=labels, fused_lm_head=True)
        return self._pair_sums(out.log_probs, completion_mask), self._fused_metric_sums(out, completion_mask), out.aux_loss

    def reference_logps(self, model_kwargs: dict[str, Any], labels: Tensor, completion_mask: Tensor) -> PairLogps:
        """The reference's per-pair sums: the ``ref_model``, or the policy with its PEFT adapter disabled."""
        kwargs = {k: v for k, v in model_kwargs.items() if k != "output_router_logits"}
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            if self.ref_model is None:  # PEFT: the base model (or the frozen "ref" adapter) is the reference
                unwrapped = self.accelerator.unwrap_model(self.model)
                with use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None):
                    pairs, _, _ = self._forward_logps(self.model, kwargs, labels, completion_mask, metrics=False)
            else:
                pairs, _, _ = self._forward_logps(self.ref_model, kwargs, labels, completion_mask, metrics=False)
        return pairs

    def compute_ref_log_probs(self, model: Any, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Reference sums for one batch when precomputing (``precompute_ref_log_probs=True``), chunked if chosen."""
        if self._backend_for(model) != "chunked":
            return super().compute_ref_log_probs(model, inputs)
        model_kwargs, labels = self._model_kwargs(inputs)
        adapter = contextlib.nullcontext()
        if self.ref_model is None and self._is_peft(self.model):
            unwrapped = self.accelerator.unwrap_model(self.model)
            adapter = use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
        with (
            torch.no_grad(),
            disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
            adapter,
            self.accelerator.autocast(),
        ):
            pairs, _, _ = self._forward_logps(model, model_kwargs, labels, inputs["completion_mask"], metrics=False)
        return pairs.chosen, pairs.rejected

    def _is_peft(self, model: Any) -> bool:
        inner = self.accelerator.unwrap_model(model)
        return hasattr(inner, "get_base_model") and hasattr(inner, "peft_config")

    # ------------------------------------------------------------------------------------------- loss

    def _compute_loss(self, model: Any, inputs: dict[str, Tensor], return_outputs: bool) -> Any:
        mode = "train" if self.model.training else "eval"
        model_kwargs, labels = self._model_kwargs(inputs)
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        completion_mask = inputs["completion_mask"]
        policy, token_sums, aux_loss = self._forward_logps(model, model_kwargs, labels, completion_mask, metrics=True)

        ref_w = ref_l = None
        if self.family.needs_reference:
            if self.precompute_ref_logps:
                ref_w, ref_l = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:
                ref = self.reference_logps(model_kwargs, labels, completion_mask)
                ref_w, ref_l = ref.chosen, ref.rejected

        sums = [policy.chosen, policy.rejected] + ([ref_w, ref_l] if ref_w is not None else [])
        inputs_finite = bool(torch.isfinite(torch.stack([s.detach().float() for s in sums])).all())
        out: PreferenceLossOutput | None = None
        if inputs_finite:
            out = preference_loss(
                self.args.loss,
                chosen_logps=policy.chosen,
                rejected_logps=policy.rejected,
                chosen_lengths=policy.chosen_lengths,
                rejected_lengths=policy.rejected_lengths,
                ref_chosen_logps=ref_w,
                ref_rejected_logps=ref_l,
                beta=self.beta,
                balance=self.args.loss_balance,
                **self.args.loss_params,
            )
            loss = out.loss
        else:
            loss = policy.chosen.new_full((), math.nan)
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * aux_loss
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather_for_metrics(aux_loss).mean().item())

        self._log_step_metrics(mode, loss, out, token_sums, inputs, policy, ref_w, ref_l)

        if return_outputs:  # TRL's deprecated path: logits for compute_metrics need a plain forward
            with torch.no_grad():
                outputs = model(**{k: v for k, v in model_kwargs.items() if k != "output_router_logits"})
            return loss, outputs
        return loss

    # ---------------------------------------------------------------------------------------- metrics

    def _log_step_metrics(
        self,
        mode: str,
        loss: Tensor,
        out: PreferenceLossOutput | None,
        sums: MetricSums,
        inputs: dict[str, Tensor],
        policy: PairLogps,
        ref_w: Tensor | None,
        ref_l: Tensor | None,
    ) -> None:
        """Reduce this step's metrics across processes in one gather; stop everywhere on a non-finite loss.

        Per-pair means (the core's metrics) are averaged over processes, which equals the mean over all
        pairs since every process sees the same batch size; token-weighted ones (entropy, logits, token
        accuracy) are reduced as sums over counts.
        """
        means = dict(out.metrics) if out is not None else {}
        device = loss.device
        local = torch.cat(
            [
                torch.stack([loss.detach().float(), (~torch.isfinite(loss.detach())).float()]).to(device),
                torch.stack([v.float().to(device) for v in means.values()]) if means else torch.zeros(0, device=device),
                torch.stack([torch.stack([n.float(), d.float()]) for n, d in sums.values()]).flatten().to(device)
                if sums
                else torch.zeros(0, device=device),
                inputs["attention_mask"].sum().float().reshape(1).to(device),
            ]
        )
        gathered = self.accelerator.gather(local).reshape(-1, local.numel())
        if gathered[:, 1].sum() > 0:
            self._raise_non_finite(gathered[:, 0], policy, ref_w, ref_l)
        reduced = gathered.mean(0)
        for i, key in enumerate(means, start=2):
            self._metrics[mode][key].append(reduced[i].item())
        offset = 2 + len(means)
        totals = gathered.sum(0)
        for j, key in enumerate(sums):
            den = totals[offset + 2 * j + 1].item()
            self._metrics[mode][key].append(totals[offset + 2 * j].item() / den if den > 0 else 0.0)
        if mode == "train":
            self._total_train_tokens += int(totals[-1].item()) // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]

    def _raise_non_finite(self, losses: Tensor, policy: PairLogps, ref_w: Tensor | None, ref_l: Tensor | None) -> None:
        step = self.state.global_step + 1

        def describe(name: str, x: Tensor | None) -> str:
            if x is None:
                return ""
            x = x.detach().double().cpu()
            bad = (~torch.isfinite(x)).sum().item()
            finite = x[torch.isfinite(x)]
            span = f"min {finite.min().item():.4g}, max {finite.max().item():.4g}" if finite.numel() else "none finite"
            return f"\n  {name}: {bad} non-finite of {x.numel()}; finite {span}"

        per_process = ", ".join(f"{v:.4g}" for v in losses.tolist())
        raise NonFiniteLossError(
            f"non-finite loss at step {step} (loss per process: {per_process}); training stopped. "
            f"This process's batch (loss={self.args.loss!r}, balance={self.args.balance}, beta={self.beta}):"
            + describe("chosen_logps (sum over response tokens)", policy.chosen)
            + describe("rejected_logps", policy.rejected)
            + describe("ref_chosen_logps", ref_w)
            + describe("ref_rejected_logps", ref_l)
            + describe("chosen_lengths", policy.chosen_lengths.float())
            + describe("rejected_lengths", policy.rejected_lengths.float())
            + "\nTry a lower learning_rate, bf16/fp32 instead of fp16, or gradient clipping (max_grad_norm)."
        )

    # -------------------------------------------------------------------------------- checkpoints, card

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """Write ``checkpoint-N`` into a staging directory, then rename it into place.

        A run killed while saving leaves at most a stale staging directory, which ``get_last_checkpoint``
        ignores and the next save removes; every ``checkpoint-N`` on disk is complete.
        """
        run_dir = self._get_output_dir(trial=trial)
        staging_root = os.path.join(run_dir, _STAGING_DIR)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save:
            shutil.rmtree(staging_root, ignore_errors=True)
            os.makedirs(staging_root, exist_ok=True)
        self.accelerator.wait_for_everyone()
        self._get_output_dir = lambda trial=None: staging_root  # type: ignore[method-assign]
        try:
            super()._save_checkpoint(model, trial)
        finally:
            del self._get_output_dir
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            final = os.path.join(run_dir, name)
            if os.path.exists(final):
                shutil.rmtree(final)
            os.replace(os.path.join(staging_root, name), final)
            shutil.rmtree(staging_root, ignore_errors=True)
            if self.state.best_model_checkpoint and self.state.best_model_checkpoint.startswith(staging_root):
                self.state.best_model_checkpoint = self.state.best_model_checkpoint.replace(staging_root, run_dir)
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=False,
            )
        self.accelerator.wait_for_everyone()

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None, tags: Any = None) -> None:
        """TRL's model card, followed by every adadpo and trainer setting of this run."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if self.is_world_process_zero():
            with open(os.path.join(self.args.output_dir, "README.md"), "a", encoding="utf-8") as f:
                f.write(settings_section(self.args))


def _check_reference_source(model: Any, ref_model: Any, args: AdaDPOConfig, peft_config: Any) -> None:
    """Fail early, and clearly, when a reference-based loss has no way to get reference log-probs."""
    if ref_model is not None or args.precompute_ref_log_probs or peft_config is not None:
        return
    if isinstance(model, str):
        return  # TRL loads a second copy from the same path
    from accelerate.utils import is_peft_model

    if is_peft_model(model):
        return  # the adapter is disabled (or a frozen "ref" copy of it is used)
    path = get_config_model_id(model.config)
    if not path:
        raise ValueError(
            f"loss={args.loss!r} needs reference log-probs, but no ref_model was given and the policy model has no "
            "name_or_path to load a reference copy from; pass ref_model=..., set precompute_ref_log_probs=True "
            "(the policy before training is the reference), train a PEFT adapter (peft_config=...), or use a "
            "reference-free loss (simpo, cpo, orpo)"
        )


def _zero_stage(trainer: Any) -> int | None:
    """The DeepSpeed ZeRO stage of ``trainer``'s accelerator, or ``None`` without DeepSpeed."""
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None) if trainer.is_deepspeed_enabled else None
    return getattr(plugin, "zero_stage", None) if plugin is not None else None
