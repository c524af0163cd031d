"""``AdaDPOConfig``: TRL's ``DPOConfig`` plus the loss family and the AdaDPO balance fields.

Every field below mirrors a keyword of :func:`adadpo.preference_loss` / :class:`adadpo.Balance`, with the
``balance_`` prefix for the latter. ``beta`` and ``label_smoothing`` are DPOConfig's own fields.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from trl import DPOConfig

from adadpo.core.balance import LEVELS, NORMALIZATIONS, PLACEMENTS, Balance
from adadpo.core.losses import LOSSES, get_family, resolve_loss_params

_DEFAULT = Balance()

#: Where the trainer's log-probs come from; see ``AdaDPOConfig.logps_backend``.
LOGPS_BACKENDS = ("chunked", "trl_fused", "full")


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())

# DPOConfig fields whose non-default values select TRL-only loss machinery that AdaDPOTrainer replaces.
_TRL_ONLY = {
    "loss_type": (["sigmoid"], "choose the loss with `loss` (one of {losses})"),
    "loss_weights": (None, "one loss is trained at a time"),
    "ld_alpha": (None, "LD-DPO length desensitisation is not supported"),
    "f_divergence_type": ("reverse_kl", "only the reverse-KL (standard) divergence is supported"),
    "use_weighting": (False, "WPO weighting is not supported"),
}


@dataclass
class AdaDPOConfig(DPOConfig):
    r"""Configuration of :class:`~adadpo.trl.AdaDPOTrainer`: ``trl.DPOConfig`` plus the fields below.

    Args:
        loss: preference loss family, one of ``dpo``, ``rdpo``, ``ipo``, ``simpo``, ``cpo``, ``orpo``.
        balance: train the AdaDPO (gradient-balanced) form of ``loss`` instead of the plain one.
        balance_level: ``token`` (geometric-mean token probability) or ``sequence``.
        balance_use_reference: balance the ratios ``pi / pi_ref`` (dpo, rdpo, ipo only).
        balance_alpha_chosen, balance_alpha_rejected: exponents on the two sides' statistics.
        balance_clip: ``kappa >= 1``; ``inf`` disables clipping.
        balance_normalize: ``sum`` | ``geometric`` | ``rejected`` | ``chosen``.
        balance_placement: ``margin`` (the paper's form) or ``gradient`` (loss value unchanged).
        gamma: SimPO's target margin (simpo only, default 0.5).
        length_alpha: R-DPO's length penalty (rdpo only, required).
        cpo_alpha: weight of CPO's chosen NLL term (cpo only, default 1.0).
        logps_backend: how per-token log-probs are computed from the model. ``chunked`` (default): the
            backbone's last hidden state and the LM head weight go to
            :func:`adadpo.core.logps.linear_token_logps`, a chunk of counted tokens at a time, so the
            ``[2B, T, V]`` logits never exist; models it cannot serve (output layer not a plain
            ``nn.Linear``, soft-capped or scaled logits, multimodal, sharded head) fall back to
            ``trl_fused`` with a logged warning. ``trl_fused``: TRL 1.16's fused LM head (what stock
            ``DPOTrainer`` does). ``full``: the model's ordinary forward with full logits (slowest, most
            memory; a reference for tests).
        logps_chunk_size: counted tokens per chunk for ``chunked`` and ``full`` (default: about 32 MiB of
            float32 logits per chunk, ``2**23 // vocab_size`` tokens).
    """

    loss: str = field(
        default="dpo",
        metadata={"help": "Preference loss family.", "choices": list(LOSSES)},
    )
    balance: bool = field(default=False, metadata={"help": "Use the AdaDPO (gradient-balanced) form of the loss."})
    balance_level: str = field(
        default=_DEFAULT.level,
        metadata={"help": "Probability whose gradient is balanced.", "choices": list(LEVELS)},
    )
    balance_use_reference: bool = field(
        default=_DEFAULT.use_reference,
        metadata={"help": "Balance pi/pi_ref instead of pi (reference-based losses only)."},
    )
    balance_alpha_chosen: float = field(default=_DEFAULT.alpha_chosen, metadata={"help": "Exponent on X_w."})
    balance_alpha_rejected: float = field(default=_DEFAULT.alpha_rejected, metadata={"help": "Exponent on X_l."})
    balance_clip: float = field(default=_DEFAULT.clip, metadata={"help": "kappa >= 1; inf disables clipping."})
    balance_normalize: str = field(
        default=_DEFAULT.normalize,
        metadata={"help": "Scale kept by the coefficient pair.", "choices": list(NORMALIZATIONS)},
    )
    balance_placement: str = field(
        default=_DEFAULT.placement,
        metadata={"help": "Where the coefficients act.", "choices": list(PLACEMENTS)},
    )
    gamma: float | None = field(default=None, metadata={"help": "SimPO target margin (simpo; default 0.5)."})
    length_alpha: float | None = field(default=None, metadata={"help": "R-DPO length penalty (rdpo; required)."})
    cpo_alpha: float | None = field(default=None, metadata={"help": "CPO NLL weight (cpo; default 1.0)."})
    logps_backend: str = field(
        default="chunked",
        metadata={
            "help": "Log-prob computation: chunked (token-chunked LM head, no full logits), trl_fused (TRL's fused "
            "LM head) or full (the model's own logits).",
            "choices": list(LOGPS_BACKENDS),
        },
    )
    logps_chunk_size: int | None = field(
        default=None,
        metadata={"help": "Counted tokens per log-prob chunk (default: 2**23 // vocab_size, ~32 MiB of logits)."},
    )

    def __post_init__(self) -> None:
        if self.bf16 is None and not self.fp16 and not _has_gpu():
            self.bf16 = False  # TRL defaults to bf16, which transformers refuses without a GPU unless use_cpu=True
        if not self.use_cpu and not _has_gpu() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # Under torchrun on a machine without GPUs, transformers only sets up DDP (gloo) with use_cpu=True;
            # otherwise every process silently trains alone.
            self.use_cpu = True
        super().__post_init__()
        family = get_family(self.loss)
        for name, (default, why) in _TRL_ONLY.items():
            if getattr(self, name) != default:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} is not supported by AdaDPOConfig ({why.format(losses=list(LOSSES))}); "
                    f"leave it at {default!r}"
                )
        if self.logps_backend not in LOGPS_BACKENDS:
            raise ValueError(f"logps_backend={self.logps_backend!r} is not one of {list(LOGPS_BACKENDS)}")
        if self.logps_chunk_size is not None and (
            isinstance(self.logps_chunk_size, bool) or not isinstance(self.logps_chunk_size, int) or self.logps_chunk_size < 1
        ):
            raise ValueError(f"logps_chunk_size={self.logps_chunk_size!r} must be a positive integer (or None for the default)")
        if isinstance(self.balance_clip, str):  # "inf" from YAML or the command line
            self.balance_clip = float(self.balance_clip)
        self.balance_spec  # noqa: B018 -- validates every balance_* field, also when balance=False
        if self.balance_use_reference and not family.needs_reference:
            raise ValueError(
                f"balance_use_reference=True (Balance(use_reference=True)) needs a reference model, but loss={self.loss!r} "
                "is reference-free; set it to False"
            )
        resolve_loss_params(family, self.beta, self.loss_params)
        if self.precompute_ref_log_probs and not family.needs_reference:
            raise ValueError(
                f"precompute_ref_log_probs=True, but loss={self.loss!r} is reference-free and uses no reference "
                "log-probs; set it to False"
            )
        if self.sync_ref_model and not family.needs_reference:
            raise ValueError(f"sync_ref_model=True, but loss={self.loss!r} is reference-free; set it to False")

    @property
    def balance_spec(self) -> Balance:
        """The :class:`adadpo.Balance` described by the ``balance_*`` fields (whether or not ``balance`` is on)."""
        return Balance(
            level=self.balance_level,
            use_reference=self.balance_use_reference,
            alpha_chosen=self.balance_alpha_chosen,
            alpha_rejected=self.balance_alpha_rejected,
            clip=math.inf if self.balance_clip in (None, math.inf) else self.balance_clip,
            normalize=self.balance_normalize,
            placement=self.balance_placement,
        )

    @property
    def loss_balance(self) -> Balance | None:
        """What :func:`adadpo.preference_loss` takes as ``balance``: ``None`` for the plain loss."""
        return self.balance_spec if self.balance else None

    @property
    def loss_params(self) -> dict[str, float | None]:
        """The loss-specific keywords of :func:`adadpo.preference_loss` that apply to ``loss``."""
        family = get_family(self.loss)
        given = {"gamma": self.gamma, "length_alpha": self.length_alpha, "cpo_alpha": self.cpo_alpha}
        for name, value in given.items():
            if value is not None and name not in family.params:
                raise ValueError(f"{name}={value!r} does not apply to loss={self.loss!r}; it takes {list(family.params)}")
        given["label_smoothing"] = self.label_smoothing if "label_smoothing" in family.params else None
        if "label_smoothing" not in family.params and self.label_smoothing:
            raise ValueError(f"label_smoothing={self.label_smoothing!r} does not apply to loss={self.loss!r}")
        return {k: v for k, v in given.items() if k in family.params}
