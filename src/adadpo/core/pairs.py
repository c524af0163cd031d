"""``PairLogps``: the one container a batch of preference pairs travels in, from the model's output to the loss.

For pair ``b``: ``A_w = chosen_logps[b]`` and ``A_l = rejected_logps[b]`` are the summed response-token
log-probs under the policy, ``T_w``, ``T_l`` the response lengths, and ``R_w``, ``R_l`` the same sums under
the reference model (``None`` for the reference-free losses simpo, cpo, orpo).

The log-prob helpers build it (:meth:`adadpo.core.logps.TokenLogps.pairs`,
:meth:`adadpo.core.logps.SequenceLogps.pairs`), :class:`adadpo.LossSpec` and :func:`adadpo.preference_loss`
consume it. Construction checks the structure (types, shapes, dtypes, both reference sums or neither) without
reading a value, so building one never waits for the device; :meth:`PairLogps.check_values` reads the values
(finite, lengths >= 1) in one host sync, for inputs that did not come from a model.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass
from functools import cached_property

import torch
from torch import Tensor

_LOGPS = ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps", "raw_chosen_logps")
#: The ``[B]`` fields, in order (``aux_loss`` is a scalar).
_PER_PAIR = ("chosen_logps", "rejected_logps", "chosen_lengths", "rejected_lengths", "ref_chosen_logps",
             "ref_rejected_logps", "pair_weights", "raw_chosen_logps")


#: Per-token tolerance above 0 of a log-prob sum (rounding in low precision); beyond it a sum is not a log-prob.
LOGP_SLACK = 1e-2


def _check_tensor(name: str, x: object, shape: torch.Size | None) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [B], got {type(x).__name__}")
    if x.is_meta:
        raise ValueError(f"{name} is on the meta device, which holds no values; pass a tensor on the CPU or an "
                         "accelerator")
    if x.dtype == torch.bool or x.is_complex():
        kind = "floating-point" if name in _LOGPS else "real (integer or floating-point)"
        raise ValueError(f"{name} must be a {kind} tensor, got {x.dtype}")
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor of shape [B] (one value per pair), got shape {tuple(x.shape)}")
    if shape is not None and x.shape != shape:
        raise ValueError(f"{name} has shape {tuple(x.shape)} but chosen_logps has shape {tuple(shape)}; every input must be [B]")
    if name in _LOGPS and not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")


def _alias(name: str) -> cached_property:
    """The field ``name`` under the method's short name (read once per instance, then a plain attribute)."""
    read = lambda self: getattr(self, name)  # noqa: E731
    read.__doc__ = f"``{name}``."
    return cached_property(read)


@dataclass(frozen=True)
class PairLogps:
    """Per-pair sums of response-token log-probs and response lengths, ``[B]`` each.

    Attributes:
        chosen_logps, rejected_logps: ``A_w``, ``A_l``, floating point, differentiable.
        chosen_lengths, rejected_lengths: ``T_w``, ``T_l``, response token counts (any real dtype), ``>= 1``.
        ref_chosen_logps, ref_rejected_logps: ``R_w``, ``R_l`` under the reference model (treated as
            constants by the losses), or both ``None``.
        pair_weights: ``[B]`` WPO weights ``w_w w_l`` (detached), for a spec with ``use_weighting``; else ``None``.
        raw_chosen_logps: ``[B]`` unweighted chosen sums when ``chosen_logps`` are LD-DPO's length-desensitised
            ones (TRL's ``sft`` term averages the raw log-probs); else ``None``.
        aux_loss: the MoE router's load-balancing loss (scalar) from the same forward, or ``None``.
        check: ``False`` skips the structure checks (for pairs a backend built from a model's output).
    """

    chosen_logps: Tensor
    rejected_logps: Tensor
    chosen_lengths: Tensor
    rejected_lengths: Tensor
    ref_chosen_logps: Tensor | None = None
    ref_rejected_logps: Tensor | None = None
    pair_weights: Tensor | None = None
    raw_chosen_logps: Tensor | None = None
    aux_loss: Tensor | None = None
    check: InitVar[bool] = True

    def __post_init__(self, check: bool) -> None:
        if check:
            self.check_structure()

    def check_structure(self) -> PairLogps:
        """Raise ``ValueError`` naming the field unless every field is a 1-D ``[B]`` tensor of one shape (sums
        floating point) and the reference sums are both given or both ``None``; reads no value. Returns ``self``."""
        _check_tensor("chosen_logps", self.chosen_logps, None)
        shape = self.chosen_logps.shape
        for name in ("rejected_logps", "chosen_lengths", "rejected_lengths"):
            _check_tensor(name, getattr(self, name), shape)
        refs = {"ref_chosen_logps": self.ref_chosen_logps, "ref_rejected_logps": self.ref_rejected_logps}
        missing = [name for name, x in refs.items() if x is None]
        if len(missing) == 1:
            raise ValueError(f"{missing[0]} is missing: give both reference sums (ref_chosen_logps, ref_rejected_logps) or neither")
        if not missing:
            for name, x in refs.items():
                _check_tensor(name, x, shape)
        for name in ("pair_weights", "raw_chosen_logps"):
            if getattr(self, name) is not None:
                _check_tensor(name, getattr(self, name), shape)
        return self

    @property
    def has_reference(self) -> bool:
        return self.ref_chosen_logps is not None

    # the method's names (docs/method.md): A policy sums, T lengths, R reference sums; w chosen, l rejected (read once
    # per instance: the fields are frozen, so the first read is stored and the others are plain attribute reads)
    A_w = _alias("chosen_logps")
    A_l = _alias("rejected_logps")
    T_w = _alias("chosen_lengths")
    T_l = _alias("rejected_lengths")
    R_w = _alias("ref_chosen_logps")
    R_l = _alias("ref_rejected_logps")

    def computed(self) -> PairLogps:
        """The pairs as the losses compute with them: sums and lengths in float32 (float64 for float64 sums) on the
        policy sums' device, the reference sums detached (constants); unchecked."""
        to = {"dtype": torch.promote_types(self.chosen_logps.dtype, torch.float32), "device": self.chosen_logps.device}
        R_w, R_l, raw = self.ref_chosen_logps, self.ref_rejected_logps, self.raw_chosen_logps
        return PairLogps(self.chosen_logps.to(**to), self.rejected_logps.to(**to), self.chosen_lengths.to(**to),
                         self.rejected_lengths.to(**to), None if R_w is None else R_w.detach().to(**to),
                         None if R_l is None else R_l.detach().to(**to), self.pair_weights,
                         None if raw is None else raw.to(**to), self.aux_loss, check=False)

    def with_reference(self, ref_chosen_logps: Tensor, ref_rejected_logps: Tensor, check: bool = True) -> PairLogps:
        """The same pairs with the reference sums ``R_w``, ``R_l`` (``[B]`` each) attached (``check`` as the
        constructor's)."""
        return PairLogps(self.chosen_logps, self.rejected_logps, self.chosen_lengths, self.rejected_lengths,
                         ref_chosen_logps, ref_rejected_logps, self.pair_weights, self.raw_chosen_logps, self.aux_loss,
                         check=check)

    def tensors(self) -> dict[str, Tensor]:
        """The ``[B]`` fields that are set, by name (the keywords of :func:`adadpo.preference_loss`)."""
        return {name: getattr(self, name) for name in _PER_PAIR if getattr(self, name) is not None}

    @classmethod
    def cat(cls, parts: list[PairLogps]) -> PairLogps:
        """Concatenate batches of pairs (all with the same fields set: a reference or none, ...)."""
        parts = list(parts)
        if not parts or not all(isinstance(p, PairLogps) for p in parts):
            raise ValueError(f"PairLogps.cat takes a non-empty list of PairLogps, got "
                             f"{[type(p).__name__ for p in parts] or 'an empty list'}")
        names = list(parts[0].tensors())
        for i, p in enumerate(parts):
            if list(p.tensors()) != names:
                raise ValueError(f"PairLogps.cat: part {i} sets {list(p.tensors())} but part 0 sets {names}; "
                                 "concatenate batches with the same fields (a reference in all or in none)")
        return cls(**{name: torch.cat([getattr(p, name) for p in parts]) for name in names})

    def check_values(self) -> PairLogps:
        """Raise ``ValueError`` naming the field and the first bad pair unless every sum is finite and at most 0
        (a sum of log-probabilities; :data:`LOGP_SLACK` per token allows for rounding) and every length ``>= 1``;
        one host sync for all checks. Returns ``self``."""
        values = self.tensors()
        checks = {name: torch.isfinite(x.detach()).all() for name, x in values.items()}
        checks.update({f"{n}>=1": (values[n].detach() >= 1).all() for n in ("chosen_lengths", "rejected_lengths")})
        slack = {side: LOGP_SLACK * values[f"{side}_lengths"].detach().clamp(min=1) for side in ("chosen", "rejected")}
        checks.update({f"{n}<=0": (values[n].detach() <= slack[n.split("_")[-2]]).all()
                       for n in values if n.endswith("_logps")})
        flags = torch.stack([c.to(self.chosen_logps.device) for c in checks.values()]).tolist()
        for key, ok in zip(checks, flags):
            if ok:
                continue
            name = key.removesuffix(">=1").removesuffix("<=0")
            x = values[name].detach()
            if key.endswith("<=0"):
                bad = torch.nonzero(x > slack[name.split("_")[-2]]).flatten()
                raise ValueError(
                    f"{name} must be <= 0 for every pair (a sum of token log-probabilities); found "
                    f"{x[bad[0]].item():g} at index {bad[0].item()} ({bad.numel()} pair(s) in all): pass log-probs, "
                    "not probabilities, logits or negated log-probs"
                )
            if key.endswith(">=1"):
                bad = torch.nonzero(x < 1).flatten()
                raise ValueError(
                    f"{name} must be >= 1 for every pair (an empty response has no tokens to train on); "
                    f"found {x[bad[0]].item():g} at index {bad[0].item()} ({bad.numel()} pair(s) in all)"
                )
            bad = torch.nonzero(~torch.isfinite(x)).flatten()
            raise ValueError(
                f"{name} must be finite; found {x[bad[0]].item()} at index {bad[0].item()} ({bad.numel()} pair(s) in all)"
            )
        return self
