"""``AdaDPOConfig``: TRL's ``DPOConfig`` (every loss option of it included) plus the loss family and the AdaDPO
balance fields.

The ``balance_*`` fields are generated from :class:`adadpo.Balance`'s own fields (name, type, default, help,
choices), and one field per loss parameter from the registry's :class:`~adadpo.core.params.Param` declarations
(:data:`LOSS_PARAM_FIELDS`: ``gamma``, ``length_alpha``, ``cpo_alpha``, ``rpo_alpha``, ...), so neither can drift
from its declaration and a new loss's parameter needs no code here. ``beta``, ``label_smoothing`` and
``discopop_tau`` are DPOConfig's own fields.
:meth:`AdaDPOConfig.loss_spec` resolves all of it into the :class:`adadpo.LossSpec` (or, for TRL's other losses,
of TRL's losses and weighted lists) the trainer applies every step; the loss names, their parameters and which
need a reference come from :mod:`adadpo.core.registry`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields, make_dataclass

from trl import DPOConfig

from adadpo.core.balance import Balance, balance_options
from adadpo.core.params import ParamField
from adadpo.core.registry import LOSSES, NATIVE_LOSS_TYPES, REGISTRY, TRL_LOSS_TYPES, get_family
from adadpo.core.spec import LOSS_PARAMS, LossSpec, check_reference
from adadpo.trl.notices import config_notices, two_sided
from adadpo.trl.ranges import check_fields

logger = logging.getLogger("adadpo")

#: Where the trainer's log-probs come from; see ``AdaDPOConfig.logps_backend``.
LOGPS_BACKENDS = ("chunked", "trl_fused", "full")
BALANCE_PREFIX = "balance_"


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


#: DPOConfig's options that shape TRL's losses, with their defaults (they apply to no family but dpo and ipo).
TRL_LOSS_OPTIONS = {"loss_weights": None, "ld_alpha": None, "f_divergence_type": "reverse_kl", "use_weighting": False}


def resolve_loss(loss: str, loss_type: list[str]) -> list[str] | None:
    """The one rule joining adadpo's ``loss`` and TRL's ``loss_type``: each at its default (``dpo``,
    ``['sigmoid']``, which name the same loss) defers to the other; when both are set they must name the same loss
    (``loss='ipo'`` with ``loss_type=['ipo']``). Returns TRL's loss types to train, or ``None`` for adadpo's
    ``rdpo``, ``simpo``, ``cpo`` or ``orpo``; ``ValueError`` on a contradiction."""
    loss_type = list(loss_type)
    if loss_type == ["sigmoid"]:
        return [NATIVE_LOSS_TYPES[loss]] if loss in NATIVE_LOSS_TYPES else None
    if loss == "dpo" or loss_type == [NATIVE_LOSS_TYPES.get(loss)]:
        return loss_type
    raise ValueError(
        f"loss={loss!r} and loss_type={loss_type!r} name different losses; set one of them: loss_type for TRL's "
        f"losses (leave loss='dpo'), or loss for adadpo's {list(LOSSES)} (leave loss_type=['sigmoid'])"
    )


def _gloo_process_group(timeout_seconds: int) -> None:
    """Start the gloo process group (env:// from torchrun) with ``ddp_timeout``: transformers starts CPU process
    groups without it (the 30-minute default), so one frozen process would hang the others that long."""
    from datetime import timedelta

    import torch.distributed as dist

    if dist.is_available() and not dist.is_initialized():
        dist.init_process_group(backend="gloo", timeout=timedelta(seconds=timeout_seconds))


#: Balance fields whose config default is ``None``, chosen from the loss (see ``AdaDPOConfig.balance_spec``).
CHOSEN_BY_LOSS = {"placement": " Unset: margin, or gradient for TRL's two-sided losses ("
                               + ", ".join(n for n, d in TRL_LOSS_TYPES.items() if d.balanced == "two-sided")
                               + "), which only it balances exactly."}

#: ``balance_<name>`` for every field of :class:`adadpo.Balance`, same type, default and help (``placement``:
#: unset by default, see :data:`CHOSEN_BY_LOSS`).
BalanceFields = make_dataclass(
    "BalanceFields",
    [
        (BALANCE_PREFIX + o.name, o.kind | None if o.name in CHOSEN_BY_LOSS else o.kind,
         field(default=None if o.name in CHOSEN_BY_LOSS else o.default,
               metadata={"help": o.help + CHOSEN_BY_LOSS.get(o.name, ""),
                         **({"choices": list(o.choices)} if o.choices else {})}))
        for o in balance_options()
    ],
)


#: The loss parameters ``AdaDPOConfig`` adds, by name: every registered loss's (:data:`adadpo.core.spec.LOSS_PARAMS`)
#: but those ``DPOConfig`` has already (``label_smoothing``, ``discopop_tau``).
LOSS_PARAM_FIELDS = {name: p for name, p in LOSS_PARAMS.items() if name not in {f.name for f in fields(DPOConfig)}}


def _param_help(p: ParamField) -> str:
    """A loss parameter's config help, from its declarations: the help text and the losses that take it."""
    helps = {q.help for q in p.takers.values()}
    text = helps.pop() if len(helps) == 1 else p.help  # else each loss's help, with the losses it is for
    required = [n for n in p.required_by if len(p.required_by) < len(p.takers)]
    unset = f"required by {', '.join(required)}" if required else "unset: the default" if not p.required_by else ""
    return f"{text} Only for {', '.join(p.takers)}" + (f"; {unset}." if unset else ".")


#: One field per :data:`LOSS_PARAM_FIELDS` entry: its type or ``None`` (unset: each loss's default), its help with
#: the losses that take it.
LossParamFields = make_dataclass(
    "LossParamFields",
    [(name, p.kind | None, field(default=None, metadata={"help": _param_help(p)}))
     for name, p in LOSS_PARAM_FIELDS.items()],
)


@dataclass
class AdaDPOConfig(LossParamFields, BalanceFields, DPOConfig):
    r"""Configuration of :class:`~adadpo.trl.AdaDPOTrainer`: ``trl.DPOConfig`` plus the fields below.

    TRL's loss options (``loss_type``, ``loss_weights``, ``use_weighting``, ``ld_alpha``, ``f_divergence_type``,
    ``f_alpha_divergence_coef``, ``discopop_tau``) work as in stock ``DPOTrainer`` (see
    :mod:`adadpo.core.registry`); ``loss`` and ``loss_type`` combine by :func:`resolve_loss`.

    Args:
        loss: preference loss family, one of ``dpo``, ``rdpo``, ``ipo``, ``simpo``, ``cpo``, ``orpo``, ``rpo``
            (``dpo`` and ``ipo`` are TRL's ``loss_type`` ``sigmoid`` and ``ipo``). Unset (``None``), the loss is
            the one ``loss_type`` names, exactly as stock ``DPOConfig`` trains it (:attr:`loss_family`: ``dpo``);
            set, it is adadpo's: ``loss="dpo"`` with ``label_smoothing`` is conservative DPO, where TRL's
            ``sigmoid`` ignores ``label_smoothing``.
        balance: train the AdaDPO (gradient-balanced) form of ``loss`` instead of the plain one.
        balance_<field>: one per field of :class:`adadpo.Balance` (``balance_level``, ``balance_use_reference``,
            ``balance_alpha_chosen``, ``balance_alpha_rejected``, ``balance_clip``, ``balance_normalize``,
            ``balance_placement``), with its type, default and choices; checked also when ``balance`` is off.
        <parameter>: one per loss parameter of :mod:`adadpo.core.registry` that DPOConfig lacks
            (:data:`LOSS_PARAM_FIELDS`: ``gamma`` for simpo, ``length_alpha`` for rdpo (required), ``cpo_alpha`` for
            cpo, ``rpo_alpha`` for rpo, ...), with the declaration's type and help; unset (``None``): the loss's
            default. Bounds are checked for the loss that takes it (``LossSpec``).
        logps_backend: how per-token log-probs are computed from the model. ``chunked`` (default): the
            backbone's last hidden state and the LM head weight go to
            :func:`adadpo.core.logps.linear_token_logps`, a chunk of counted tokens at a time, so the
            ``[2B, T, V]`` logits never exist; models it cannot serve (output layer not a plain
            ``nn.Linear``, soft-capped or scaled logits, multimodal, FSDP1 or ZeRO-3 head) fall back to
            ``trl_fused`` with a logged warning. ``trl_fused``: TRL 1.16's fused LM head (what stock
            ``DPOTrainer`` does). ``full``: the model's ordinary forward with full logits (slowest, most
            memory; a reference for tests).
        logps_chunk_size: counted tokens per chunk for ``chunked`` and ``full`` (default: about 32 MiB of
            float32 logits per chunk, ``2**23 // vocab_size`` tokens).
        loss_debug: check every batch's log-prob sums and AdaDPO coefficients in the loss (one host sync per
            step) and fail at the first bad value; off, a bad batch surfaces as ``NonFiniteLossError``.
    """

    loss: str | None = field(
        default=None,
        metadata={"help": "Preference loss family (unset: the one loss_type names, DPO by default).",
                  "choices": list(LOSSES)},
    )
    balance: bool = field(default=False, metadata={"help": "Use the AdaDPO (gradient-balanced) form of the loss."})
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
    loss_debug: bool = field(
        default=False, metadata={"help": "Check every batch's log-prob sums and coefficients (one host sync per step)."}
    )

    def __post_init__(self) -> None:
        check_fields(self)  # every number and enum in range, before transformers reads them
        if self.bf16 is None and not self.fp16 and not _has_gpu():
            self.bf16 = False  # TRL defaults to bf16, which transformers refuses without a GPU unless use_cpu=True
        if self.activation_checkpointing is None and self.gradient_checkpointing is not None:
            # TRL's DPOConfig sets the deprecated alias (gradient_checkpointing=True); setting the new name from it is
            # what transformers does too, without its FutureWarning at every run
            self.activation_checkpointing = self.gradient_checkpointing
        if not self.use_cpu and not _has_gpu() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # Under torchrun on a machine without GPUs, transformers only sets up DDP (gloo) with use_cpu=True;
            # otherwise every process silently trains alone.
            self.use_cpu = True
        if self.use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 and self.ddp_backend in (None, "gloo"):
            _gloo_process_group(self.ddp_timeout)
        super().__post_init__()
        get_family(self.loss_family)
        if not isinstance(self.balance, bool):
            raise ValueError(f"balance={self.balance!r} must be a bool (True: the AdaDPO form of the loss)")
        self.loss_type = [self.loss_type] if isinstance(self.loss_type, str) else list(self.loss_type)
        if resolve_loss(self.loss_family, self.loss_type) is None:
            for name, default in TRL_LOSS_OPTIONS.items():
                if getattr(self, name) != default:
                    raise ValueError(f"{name}={getattr(self, name)!r} is an option of TRL's losses (loss_type) and "
                                     f"does not apply to loss={self.loss_family!r}; leave it at {default!r}")
        if self.balance and self.ld_alpha is not None:
            raise ValueError(f"balance=True does not apply with ld_alpha={self.ld_alpha!r}: LD-DPO weights a "
                             "response's tokens unequally, so no one coefficient per side equalises their gradients; "
                             "drop one")
        if self.logps_backend not in LOGPS_BACKENDS:
            raise ValueError(f"logps_backend={self.logps_backend!r} is not one of {list(LOGPS_BACKENDS)}")
        spec = self.loss_spec()  # every loss and balance_* field, also when balance=False
        if int(os.environ.get("RANK", "0")) == 0:  # once, not once per process
            for notice in config_notices(self, resolve_loss(self.loss_family, self.loss_type)):
                logger.warning("adadpo: %s", notice)
        if self.precompute_ref_log_probs and not spec.needs_reference:
            raise ValueError(
                f"precompute_ref_log_probs=True, but loss={self.loss_family!r} is reference-free and uses no reference "
                "log-probs; set it to False"
            )
        if self.sync_ref_model and not spec.needs_reference:
            raise ValueError(f"sync_ref_model=True, but loss={self.loss_family!r} is reference-free; set it to False")

    @property
    def loss_family(self) -> str:
        """``loss``, or ``dpo`` (which defers to ``loss_type``) when it is not set."""
        return self.loss or "dpo"

    def balance_spec(self) -> Balance:
        """The :class:`adadpo.Balance` of the ``balance_*`` fields (whether or not ``balance`` is on); an unset
        ``balance_placement`` is ``gradient`` for TRL's two-sided losses (the placement that balances them
        exactly), else ``margin``."""
        values = {o.name: getattr(self, BALANCE_PREFIX + o.name) for o in balance_options()}
        if values["placement"] is None:
            values["placement"] = "gradient" if two_sided(resolve_loss(self.loss_family, self.loss_type)) else "margin"
        return Balance(**values)

    def loss_spec(self) -> LossSpec:
        """What ``AdaDPOTrainer`` applies each step, checked: the :class:`adadpo.LossSpec` of adadpo's family (also
        for TRL's ``sigmoid`` and ``ipo`` alone with TRL's defaults, which are adadpo's dpo and ipo), else of TRL's
        loss types and options (see :func:`resolve_loss`)."""
        balance = self.balance_spec()
        if not self.balance:  # the balance_* fields are checked also with the balance off (LossSpec: with it on)
            check_reference(balance, get_family(self.loss_family))
        balance = balance if self.balance else None
        loss_types = resolve_loss(self.loss_family, self.loss_type)
        native = loss_types in ([t] for t in NATIVE_LOSS_TYPES.values()) and self.loss_weights in (None, [1.0]) \
            and self.f_divergence_type == "reverse_kl" and not self.use_weighting
        if loss_types is None or native:
            families = {v: k for k, v in NATIVE_LOSS_TYPES.items()}
            loss = self.loss_family if loss_types is None else families[loss_types[0]]
            # the parameters as adadpo's loss (named by `loss`) reads them, else as TRL's sigmoid or ipo does: those
            # ignore label_smoothing (conservative dpo, rdpo, simpo, cpo apply it; ipo refuses it)
            params = self._loss_params([loss] if self.loss is not None else loss_types, self.loss is not None)
            return LossSpec(loss, beta=self.beta, balance=balance, debug=self.loss_debug, **params)
        return LossSpec(
            loss_types, weights=self.loss_weights, beta=self.beta, balance=balance, debug=self.loss_debug,
            f_divergence_type=self.f_divergence_type, f_alpha_divergence_coef=self.f_alpha_divergence_coef,
            use_weighting=self.use_weighting, **self._loss_params(loss_types, False),
        )

    def _loss_params(self, names: list[str], adadpo_loss: bool) -> dict[str, object]:
        """The loss parameters given to ``LossSpec`` for the terms ``names``: every :data:`LOSS_PARAM_FIELDS` field
        (``LossSpec`` refuses a set one no term takes, naming the loss), and DPOConfig's own ones (set by default)
        as TRL reads them: for the terms that take them, and for adadpo's ``loss`` also those with a neutral value
        (``label_smoothing=0.1`` for ipo is refused, TRL's default 0.0 is not)."""
        takes = {p for n in names if n in REGISTRY for p in REGISTRY[n].params}  # LossSpec refuses unknown names
        return {name: getattr(self, name) for name, p in LOSS_PARAMS.items()
                if name in LOSS_PARAM_FIELDS or name in takes or (adadpo_loss and p.neutral is not None)}
