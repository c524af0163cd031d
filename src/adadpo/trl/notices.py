"""What an :class:`~adadpo.trl.AdaDPOConfig` does that its user may not expect: settings that do nothing, a
default far from the loss's scale, and a default adadpo chose. Each is one line for the log (no error: the run
is valid)."""

from __future__ import annotations

from typing import Any

from adadpo.core.balance import balance_options
from adadpo.core.registry import TRL_LOSS_TYPES

#: TRL's loss types that read ``label_smoothing`` (their ``eps``); its sigmoid and the others ignore it.
SMOOTHED_LOSS_TYPES = tuple(n for n, d in TRL_LOSS_TYPES.items() if "label_smoothing" in d.params)
#: DPOConfig's default ``beta``, on the scale of DPO's summed log-ratios.
DPO_DEFAULT_BETA = 0.1


def two_sided(loss_types: list[str] | None) -> list[str]:
    """The loss types among ``loss_types`` whose balanced form is two-sided (nca_pair, bco_pair, ...): only
    ``placement="gradient"`` balances them exactly."""
    return [t for t in loss_types or () if t in TRL_LOSS_TYPES and TRL_LOSS_TYPES[t].balanced == "two-sided"]


def config_notices(config: Any, loss_types: list[str] | None) -> list[str]:
    """The notices for ``config``, whose loss resolves to TRL's ``loss_types`` (``None``: adadpo's rdpo, simpo,
    cpo, orpo)."""
    notices = []
    if config.loss is None and config.label_smoothing and not set(loss_types or ()) & set(SMOOTHED_LOSS_TYPES):
        notices.append(
            f"label_smoothing={config.label_smoothing} does nothing with loss_type={loss_types} (stock TRL ignores it "
            "too); set loss: dpo for adadpo's conservative DPO, or loss_type: robust for TRL's label-noise loss")
    if not config.balance:
        changed = [f"balance_{o.name}={getattr(config, 'balance_' + o.name)!r}" for o in balance_options()
                   if getattr(config, "balance_" + o.name) not in (o.default, None)]
        if changed:
            notices.append(f"{', '.join(changed)} does nothing without balance: true (the plain loss is trained); "
                           "set balance: true to train its AdaDPO form")
    elif config.balance_placement is None and two_sided(loss_types):
        notices.append(f"balance_placement=gradient, chosen for loss_type {two_sided(loss_types)[0]!r}: it gives each "
                       "side its own slope, which only the gradient placement balances exactly")
    if config.loss == "simpo" and config.beta == DPO_DEFAULT_BETA:
        notices.append(f"loss=simpo with beta={config.beta} (DPO's default): SimPO's rewards are per-token means, "
                       "on a scale where its paper uses beta 2 to 2.5; set beta (e.g. 2.0)")
    return notices
