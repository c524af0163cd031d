"""The reference model: whether one is needed and available, and how to train without loading one.

Reference-based losses (dpo, rdpo, ipo) take the reference's log-prob sums from a live ``ref_model``,
precomputed columns (``precompute_ref_log_probs=True``) or the policy with its PEFT adapter disabled;
:func:`check_reference_source` fails early when none is possible. Reference-free losses (simpo, cpo, orpo)
load none: :func:`no_reference_model`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import trl.trainer.dpo_trainer as _trl_dpo
from trl.trainer.utils import get_config_model_id


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
            "reference-free loss (simpo, cpo, orpo)"
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
