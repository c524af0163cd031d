"""How imbalanced is a plain preference loss on *your* pairs?

``log rho = X_w - X_l`` (spec section 4) is the log of how many times harder the plain loss pushes the
rejected response down than it pulls the chosen one up. ``rho ~ 1`` everywhere: AdaDPO changes little.
``log rho`` large and positive for most pairs (typical once the model ranks pairs correctly): the loss
mostly teaches what *not* to say, and a balanced loss behaves differently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from adadpo.core.balance import Balance, Level
from adadpo.core.losses import side_statistics
from adadpo.core.pairs import PairLogps

QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class ImbalanceReport:
    """Distribution of ``log rho`` over pairs, and how often a given clip ``kappa`` would bind.

    Attributes:
        log_rho: ``[B]`` float64 on CPU.
        clip_fractions: ``{kappa: share of pairs with |log rho| > log kappa}``.
    """

    loss: str
    level: str
    use_reference: bool
    log_rho: Tensor
    clip_fractions: dict[float, float] = field(default_factory=dict)

    @property
    def num_pairs(self) -> int:
        return self.log_rho.numel()

    @property
    def mean(self) -> float:
        return float(self.log_rho.mean())

    @property
    def rejected_dominant(self) -> float:
        """Share of pairs where the rejected side gets the larger push (``rho > 1``)."""
        return float((self.log_rho > 0).double().mean())

    def quantiles(self, qs: tuple[float, ...] = QUANTILES) -> dict[float, float]:
        values = torch.quantile(self.log_rho, torch.tensor(qs, dtype=self.log_rho.dtype))
        return dict(zip(qs, values.tolist()))

    def summary(self) -> dict[str, object]:
        """Plain-Python summary, JSON-serialisable."""
        return {
            "loss": self.loss,
            "level": self.level,
            "use_reference": self.use_reference,
            "num_pairs": self.num_pairs,
            "mean_log_rho": self.mean,
            "rejected_dominant": self.rejected_dominant,
            "quantiles": {str(q): v for q, v in self.quantiles().items()},
            "clip_fractions": {str(k): v for k, v in self.clip_fractions.items()},
        }

    def to_text(self) -> str:
        q = self.quantiles()
        ref = ", reference ratios" if self.use_reference else ""
        lines = [
            f"Gradient imbalance of plain {self.loss} ({self.level} level{ref}), {self.num_pairs} pairs",
            "  log rho = log(|push on rejected| / |pull on chosen|); 0 means balanced",
            f"  mean {self.mean:+.3f}   rho > 1 (rejected pushed harder) in {100 * self.rejected_dominant:.1f}% of pairs",
            "  quantiles  " + "  ".join(f"q{int(100 * k):02d} {v:+.3f}" for k, v in q.items()),
            "  clip kappa would bind on:  "
            + "  ".join(f"kappa={k:g}: {100 * v:.1f}%" for k, v in self.clip_fractions.items()),
        ]
        return "\n".join(lines)

    __str__ = to_text


def gradient_imbalance(
    loss: str = "dpo",
    pairs: PairLogps | None = None,
    *,
    chosen_logps: Tensor | None = None,
    rejected_logps: Tensor | None = None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    ref_chosen_logps: Tensor | None = None,
    ref_rejected_logps: Tensor | None = None,
    level: Level = "token",
    use_reference: bool = False,
    kappas: tuple[float, ...] = (2.0, 5.0, 10.0, 100.0),
) -> ImbalanceReport:
    """Report the plain loss's gradient imbalance on a batch of pairs: a :class:`PairLogps`, or its ``[B]``
    fields as keywords (as for :func:`adadpo.preference_loss`). ``kappas`` are the clips whose binding share
    is reported."""
    for k in kappas:
        if not k >= 1:
            raise ValueError(f"kappas must all be >= 1, got {k!r}")
    x_w, x_l = side_statistics(
        loss,
        pairs,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        balance=Balance(level=level, use_reference=use_reference),
    )
    log_rho = (x_w - x_l).detach().to("cpu", torch.float64)
    fractions = {float(k): float((log_rho.abs() > math.log(k)).double().mean()) for k in kappas}
    return ImbalanceReport(loss=loss, level=level, use_reference=use_reference, log_rho=log_rho, clip_fractions=fractions)
