"""``nn.Module`` wrappers around :func:`adadpo.preference_loss`, one per loss family.

>>> loss_fn = SimPOLoss(beta=2.0, gamma=1.0, balance=Balance())
>>> out = loss_fn(pairs)                     # a PairLogps, e.g. from TokenLogps.pairs()
>>> out = loss_fn(chosen_logps, rejected_logps, chosen_lengths, rejected_lengths)   # or the four [B] tensors
>>> out.loss.backward()
"""

from __future__ import annotations

from torch import Tensor, nn

from adadpo.core.balance import Balance
from adadpo.core.losses import PreferenceLossOutput, preference_loss
from adadpo.core.pairs import PairLogps
from adadpo.core.spec import LossSpec


class PreferenceLoss(nn.Module):
    """A configured preference loss: its :class:`LossSpec` is built (and checked) once, at construction.

    ``debug=True`` checks every batch's values (one host sync each); see :class:`LossSpec`.
    """

    loss_name: str = ""

    def __init__(self, loss: str | None = None, *, beta: float = 0.1, balance: Balance | None = None,
                 debug: bool = False, **params: float) -> None:
        super().__init__()
        self.spec = LossSpec(loss or self.loss_name, beta=beta, balance=balance, debug=debug, **params)

    def forward(self, *tensors: PairLogps | Tensor, **named: Tensor) -> PreferenceLossOutput:
        """The loss of a :class:`PairLogps`, or of its fields as ``[B]`` tensors (``chosen_logps, rejected_logps,
        chosen_lengths, rejected_lengths[, ref_chosen_logps, ref_rejected_logps]``, in order or by name)."""
        if len(tensors) == 1 and not named and isinstance(tensors[0], PairLogps):
            return preference_loss(self.spec, tensors[0])
        return preference_loss(self.spec, PairLogps(*tensors, **named))

    def extra_repr(self) -> str:
        params = "".join(f", {k}={v}" for k, v in self.spec.params.items())
        return f"loss={self.spec.loss!r}, beta={self.spec.beta}{params}, balance={self.spec.balance}"


class DPOLoss(PreferenceLoss):
    loss_name = "dpo"


class RDPOLoss(PreferenceLoss):
    loss_name = "rdpo"


class IPOLoss(PreferenceLoss):
    loss_name = "ipo"


class SimPOLoss(PreferenceLoss):
    loss_name = "simpo"


class CPOLoss(PreferenceLoss):
    loss_name = "cpo"


class ORPOLoss(PreferenceLoss):
    loss_name = "orpo"
