"""``nn.Module`` wrappers around :func:`adadpo.preference_loss`, one per loss family.

>>> loss_fn = SimPOLoss(beta=2.0, gamma=1.0, balance=Balance())
>>> out = loss_fn(chosen_logps, rejected_logps, chosen_lengths, rejected_lengths)
>>> out.loss.backward()
"""

from __future__ import annotations

from torch import Tensor, nn

from adadpo.core.balance import Balance
from adadpo.core.losses import PreferenceLossOutput, get_family, preference_loss, resolve_loss_params


class PreferenceLoss(nn.Module):
    """A configured preference loss. Parameters are checked at construction."""

    loss_name: str = ""

    def __init__(self, loss: str | None = None, *, beta: float = 0.1, balance: Balance | None = None, **params: float) -> None:
        super().__init__()
        name = loss or self.loss_name
        family = get_family(name)
        resolve_loss_params(family, beta, params)  # fail early, with the same messages
        self.loss = name
        self.beta = beta
        self.balance = balance
        self.params = params

    def forward(
        self,
        chosen_logps: Tensor,
        rejected_logps: Tensor,
        chosen_lengths: Tensor,
        rejected_lengths: Tensor,
        ref_chosen_logps: Tensor | None = None,
        ref_rejected_logps: Tensor | None = None,
    ) -> PreferenceLossOutput:
        return preference_loss(
            self.loss,
            chosen_logps=chosen_logps,
            rejected_logps=rejected_logps,
            chosen_lengths=chosen_lengths,
            rejected_lengths=rejected_lengths,
            ref_chosen_logps=ref_chosen_logps,
            ref_rejected_logps=ref_rejected_logps,
            beta=self.beta,
            balance=self.balance,
            **self.params,
        )

    def extra_repr(self) -> str:
        params = "".join(f", {k}={v}" for k, v in self.params.items())
        return f"loss={self.loss!r}, beta={self.beta}{params}, balance={self.balance}"


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
