"""The reference model: whether one is needed and available, how its sums are computed, and how to train without
loading one.

Reference-based losses (``adadpo.core.registry.reference_based()``: dpo, rdpo, ipo and TRL's loss types) take the
reference's log-prob sums from a live ``ref_model``, precomputed columns (``precompute_ref_log_probs=True``) or the
policy with its PEFT adapter disabled; :func:`reference_sums` is the one computation behind the live and adapter
cases and the precomputation; :func:`check_reference_source` fails early when none is possible. Reference-free
losses (simpo, cpo, orpo) load none: :func:`no_reference_model`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import trl.trainer.dpo_trainer as _trl_dpo
from torch import Tensor
from trl.trainer.utils import get_config_model_id

from adadpo.core.registry import reference_free


def reference_sums(backend: Any, model: Any, model_kwargs: dict[str, Any], labels: Tensor, *, index: Any = None,
                   context: Any = None) -> tuple[Tensor, Tensor]:
    """``(R_w, R_l)``, ``[B]`` each: the summed response log-probs of a pair batch under the reference ``model``,
    without gradients, by the log-prob ``backend`` (:mod:`adadpo.trl.backends`), inside ``context`` (e.g. the
    policy's PEFT adapter disabled and activation checkpointing off); ``index``: the batch's counted tokens."""
    kwargs = {k: v for k, v in model_kwargs.items() if k != "output_router_logits"}
    with torch.no_grad(), context if context is not None else contextlib.nullcontext():
        pairs, _ = backend(model, kwargs, labels, metrics=False, index=index)
    return pairs.chosen_logps, pairs.rejected_logps


@contextlib.contextmanager
def no_reference_model(trainer: Any) -> Iterator[None]:
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


def check_reference_source(model: Any, ref_model: Any, args: Any, peft_config: Any) -> None:
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
            f"loss={args.loss_family!r} needs reference log-probs, but no ref_model was given and the policy model has "
            "no "
            "name_or_path to load a reference copy from; pass ref_model=..., set precompute_ref_log_probs=True "
            "(the policy before training is the reference), train a PEFT adapter (peft_config=...), or use a "
            f"reference-free loss ({reference_free()})"
        )


@contextlib.contextmanager
def no_activation_checkpointing(model: Any, kwargs: dict | None = None) -> Iterator[None]:
    """Activation checkpointing off for a no-grad reference pass, restored after: TRL's
    ``disable_gradient_checkpointing`` under transformers 5's names (its old ones warn at every pass)."""
    if not hasattr(model, "is_activation_checkpointing"):  # not a transformers 5 model: TRL's own
        from trl.models.utils import disable_gradient_checkpointing

        with disable_gradient_checkpointing(model, kwargs):
            yield
        return
    enabled = model.is_activation_checkpointing
    if enabled:
        model.activation_checkpointing_disable()
    try:
        yield
    finally:
        if enabled:
            model.activation_checkpointing_enable(kwargs)
