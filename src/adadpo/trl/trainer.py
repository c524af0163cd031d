"""``AdaDPOTrainer``: TRL's ``DPOTrainer`` with the loss computed by :func:`adadpo.preference_loss`.

Everything but the loss is TRL's: dataset formats, tokenisation, collation, PEFT, reference handling,
distributed set-up. TRL 1.16 computes forward, reference, loss and metrics in one method,
``DPOTrainer._compute_loss``; this class overrides it with a walk over named parts:

    batch --model_inputs--> (model kwargs, labels) --counted_tokens--> index (the step's one nonzero)
          --backend (policy forward, then reference_sums)--> PairLogps with R_w, R_l (+ token metrics)
          --preference_loss(loss_spec, .)--> loss --reduce_step--> logs (the step's one gather and read)

* :mod:`adadpo.trl.backends`: the log-prob backends (``args.logps_backend``), each returning the pairs;
  :mod:`adadpo.trl.chunked_head`: the model surgery behind the default, ``chunked``.
* :mod:`adadpo.trl.reference`: the reference's sums (live, PEFT adapter, precomputation); reference-free losses
  load no reference model.
* :mod:`adadpo.trl.metrics`: one gather per step; a non-finite loss stops every process.
* :mod:`adadpo.trl.checkpoints`: checkpoints are staged and renamed into place.
* ``_prepare_dataset``: column, empty-response and length checks, and after construction every token id against
  the model's vocabulary (:func:`~adadpo.trl.data.check_token_ids`), so that the step checks nothing
  (``loss_debug=True`` checks every batch again); :mod:`adadpo.trl.fingerprint`: every process has the same
  data; ``create_model_card``: every setting.

Pinned to ``trl>=1.16,<1.17`` (see pyproject.toml): the overridden methods are TRL internals.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from torch import Tensor
from trl import DPOTrainer
from trl.trainer.utils import get_config_model_id, use_adapter

from adadpo.core.logps import counted_tokens
from adadpo.core.losses import preference_loss
from adadpo.core.pairs import PairLogps
from adadpo.core.registry import reference_based
from adadpo.trl.backends import LogpsBackend, choose_backend, model_inputs
from adadpo.trl.checkpoints import StagedCheckpoints
from adadpo.trl.config import AdaDPOConfig
from adadpo.trl.data import check_preference_dataset, check_token_ids, report_truncation
from adadpo.trl.fingerprint import check_same_data
from adadpo.trl.metrics import NonFiniteLossError, all_finite, non_finite_message, reduce_step
from adadpo.trl.modelcard import (complete_card, finish_card, local_names, method_paper, settings_section,
                                  training_procedure)
from adadpo.trl.reference import (check_reference_source, no_activation_checkpointing, no_reference_model,
                                  reference_sums)
from adadpo.trl.sharding import check_sharding_request, head_sharding, warn_if_not_sharded

__all__ = ["AdaDPOTrainer", "NonFiniteLossError"]


class AdaDPOTrainer(StagedCheckpoints, DPOTrainer):
    """Drop-in replacement of ``trl.DPOTrainer`` for adadpo's loss families and every TRL 1.16 ``loss_type``
    (with ``loss_weights``, WPO, LD-DPO and the f-divergences), plain or AdaDPO-balanced.

    Same constructor and dataset formats as ``DPOTrainer``; ``args`` must be an :class:`AdaDPOConfig`
    (``loss``, ``balance``, ``balance_*``, the loss parameters: ``gamma``, ``length_alpha``, ...), resolved once into
    ``self.loss_spec`` (:class:`adadpo.LossSpec`). Per step::

        pairs, _ = backend(model, batch, reference)     # PairLogps: A_w, A_l, T_w, T_l, R_w, R_l (+ extras)
        loss = preference_loss(self.loss_spec, pairs).loss   # every loss, TRL's loss types too

    Logged metrics keep TRL's names (``rewards/*``, ``logps/*``, ``entropy``, ``logits/*``,
    ``mean_token_accuracy``, ``num_tokens``) and add ``balance/*``, averaged over processes.
    A non-finite loss raises :class:`NonFiniteLossError` on every process.
    """

    _tag_names = ["trl", "dpo", "adadpo"]
    _name = "AdaDPO"

    def __init__(self, model: Any, ref_model: Any = None, args: AdaDPOConfig | None = None, *pos: Any, **kw: Any):
        if not isinstance(model, (str, torch.nn.Module)):
            raise TypeError(f"model must be a Hub id, a local directory or a transformers model, got {type(model).__name__}")
        if args is None:
            name = model if isinstance(model, str) else get_config_model_id(model.config)
            args = AdaDPOConfig(f"{(name or 'model').split('/')[-1]}-AdaDPO")
        if not isinstance(args, AdaDPOConfig):
            raise TypeError(
                f"args must be an adadpo.trl.AdaDPOConfig (a DPOConfig with `loss` and `balance_*` fields), "
                f"got {type(args).__name__}"
            )
        self.loss_spec = args.loss_spec()
        check_sharding_request(args)
        peft_config = kw.get("peft_config") if len(pos) < 9 else pos[8]
        if self.loss_spec.needs_reference:
            check_reference_source(model, ref_model, args, peft_config)
        elif ref_model is not None:
            raise ValueError(f"ref_model was given, but loss={args.loss_family!r} is reference-free; drop it or use "
                             f"{reference_based()}")
        self._backends: dict[int, LogpsBackend] = {}  # id(unwrapped model) -> its backend; see logps_backend_for
        self._backend_of: dict[int, tuple[Any, LogpsBackend]] = {}  # id(model as passed) -> (model, its backend)
        with contextlib.nullcontext() if self.loss_spec.needs_reference else no_reference_model(self):
            super().__init__(model, ref_model, args, *pos, **kw)
        warn_if_not_sharded(self.args, self.accelerator)
        evals = self.eval_dataset if isinstance(self.eval_dataset, dict) else {"": self.eval_dataset}
        check_same_data(self.accelerator, {"train": self.train_dataset,
                                           **{f"eval {k}".strip(): v for k, v in evals.items()}})
        for m in (self.model, self.ref_model):
            if m is not None:
                self.logps_backend_for(m)
        vocab = self.accelerator.unwrap_model(self.model).get_output_embeddings().weight.shape[0]
        for name, data in {"train": self.train_dataset, **{f"eval {k}".strip(): v for k, v in evals.items()}}.items():
            check_token_ids(data, vocab, name)

    # ------------------------------------------------------------------------------------------- data

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        if "chosen_ids" in (dataset.column_names or ()):
            return dataset  # already tokenised
        dataset = check_preference_dataset(dataset, dataset_name)
        prepared = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        report_truncation(dataset, prepared, dataset_name, args.max_length, args.truncation_mode)
        return prepared

    # --------------------------------------------------------------------------------------- log-probs

    def logps_backend_for(self, model: Any) -> LogpsBackend:
        """The log-prob backend of ``model`` (policy or reference, possibly DDP- or PEFT-wrapped), chosen once
        per model by :func:`~adadpo.trl.backends.choose_backend` from ``args.logps_backend``; looked up by the
        object itself first (unwrapping walks every module: a millisecond per call on a tiny model)."""
        known = self._backend_of.get(id(model))
        if known is not None and known[0] is model:
            return known[1]
        inner = self.accelerator.unwrap_model(model)
        key = id(inner.get_base_model() if _is_peft(inner) else inner)
        if key not in self._backends:
            self._backends[key] = choose_backend(inner, self.args.logps_backend, self.args.logps_chunk_size,
                                                 head_sharding(self.accelerator), ld_alpha=self.args.ld_alpha,
                                                 wpo=self.args.use_weighting)
        self._backend_of[id(model)] = (model, self._backends[key])  # holds the model: its id is not reused
        return self._backends[key]

    def _reference_adapter(self) -> Any:
        """PEFT without a ``ref_model``: the base model (or the frozen ``ref`` adapter) is the reference."""
        if self.ref_model is not None or not _is_peft(self.accelerator.unwrap_model(self.model)):
            return contextlib.nullcontext()
        unwrapped = self.accelerator.unwrap_model(self.model)
        return use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)

    def reference_logps(self, model_kwargs: dict[str, Any], labels: Tensor, index: Any = None,
                        model: Any = None) -> tuple[Tensor, Tensor]:
        """``(R_w, R_l)`` of one batch under the reference: ``model``, else ``ref_model``, else the policy with its
        PEFT adapter disabled (:func:`~adadpo.trl.reference.reference_sums`, activation checkpointing off)."""
        if model is None:
            model = self.ref_model if self.ref_model is not None else self.model
        context = contextlib.ExitStack()
        if self.args.activation_checkpointing or self.args.gradient_checkpointing:  # (the check walks every module)
            context.enter_context(no_activation_checkpointing(self.model, self.args.activation_checkpointing_kwargs))
        context.enter_context(self._reference_adapter())
        return reference_sums(self.logps_backend_for(model), model, model_kwargs, labels, index=index, context=context)

    def compute_ref_log_probs(self, model: Any, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Reference sums for one batch when precomputing (``precompute_ref_log_probs=True``), chunked if chosen."""
        if self.logps_backend_for(model).name != "chunked":
            return super().compute_ref_log_probs(model, inputs)
        model_kwargs, labels = model_inputs(inputs)
        with self.accelerator.autocast():
            return self.reference_logps(model_kwargs, labels, model=model)

    # ------------------------------------------------------------------------------------------- loss

    def _compute_loss(self, model: Any, inputs: dict[str, Tensor], return_outputs: bool) -> Any:
        model_kwargs, labels = model_inputs(inputs)
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        spec = self.loss_spec
        index = counted_tokens(labels, vocab=self._vocab() if spec.debug else None)
        reference = None
        if spec.needs_reference:  # called by the backend after the policy's forward
            reference = (lambda: (inputs["ref_chosen_logps"], inputs["ref_rejected_logps"])) \
                if self.precompute_ref_logps else (lambda: self.reference_logps(model_kwargs, labels, index))
        pairs, token_sums = self.logps_backend_for(model)(model, model_kwargs, labels, metrics=True,
                                                          wpo=spec.use_weighting, index=index, reference=reference)
        out = preference_loss(spec, pairs)
        loss, means = out.loss, out.metrics
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * pairs.aux_loss
            means["aux_loss"] = pairs.aux_loss
        self._log_step("train" if self.model.training else "eval", loss, means, token_sums, pairs, inputs)
        if return_outputs:  # TRL's deprecated path: logits for compute_metrics need a plain forward
            with torch.no_grad():
                outputs = model(**{k: v for k, v in model_kwargs.items() if k != "output_router_logits"})
            return loss, outputs
        return loss

    def _vocab(self) -> int:
        return self.accelerator.unwrap_model(self.model).get_output_embeddings().weight.shape[0]

    def _log_step(self, mode: str, loss: Tensor, means: dict[str, Tensor], sums: dict[str, Any], pairs: PairLogps,
                  inputs: dict[str, Tensor]) -> None:
        """Reduce this step's metrics across processes (:func:`~adadpo.trl.metrics.reduce_step`) into TRL's
        ``_metrics``; stop on every process if any process's loss is not finite."""
        losses, values, num_tokens = reduce_step(self.accelerator, loss, means, sums, inputs["attention_mask"].sum())
        if not all_finite(losses):
            spec = self.loss_spec
            settings = f"loss={spec.loss!r}, balance={spec.balance is not None}, beta={spec.beta}"
            bad = sum(not torch.isfinite(p).all() for p in self.model.parameters())
            raise NonFiniteLossError(non_finite_message(self.state.global_step + 1, losses, pairs, settings, bad))
        for key, value in values.items():
            self._metrics[mode][key].append(value)
        if mode == "train":
            self._total_train_tokens += num_tokens // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]

    # ------------------------------------------------------------------------------------------- card

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None, tags: Any = None) -> None:
        """TRL's model card naming the method's paper (AdaDPO's when balanced) and local paths as such, followed
        by every adadpo and trainer setting of this run."""
        self._name, self._paper = method_paper(self.loss_spec, DPOTrainer._paper.get("citation"))
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if self.is_world_process_zero():
            path = os.path.join(self.args.output_dir, "README.md")
            with open(path, encoding="utf-8") as f:
                card = local_names(f.read(), get_config_model_id(self.model.config), dataset_name)
            adapter = self.model.peft_config.get("default") if _is_peft(self.model) else None
            card = complete_card(card, self.args.output_dir, training_procedure(
                self.args, self.state, adapter, self.accelerator.num_processes))
            with open(path, "w", encoding="utf-8") as f:
                f.write(card + settings_section(self.args, self.accelerator.mixed_precision))
            finish_card(path, self.accelerator.unwrap_model(self.model), dataset_name)


def _is_peft(model: Any) -> bool:
    return hasattr(model, "get_base_model") and hasattr(model, "peft_config")

