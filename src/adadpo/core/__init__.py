"""The torch-only core of adadpo: losses, balancing, log-prob helpers and diagnostics.

Nothing here imports TRL or transformers; integrations and the CLI build on this package.
"""

from adadpo.core.balance import Balance, Coefficients, balance_coefficients, normalized_coefficients
from adadpo.core.diagnostics import ImbalanceReport, gradient_imbalance
from adadpo.core.logps import SequenceLogps, linear_sequence_logps, sequence_logps
from adadpo.core.losses import LOSSES, LossFamily, PreferenceLossOutput, preference_loss, side_statistics
from adadpo.core.modules import CPOLoss, DPOLoss, IPOLoss, ORPOLoss, PreferenceLoss, RDPOLoss, SimPOLoss

__all__ = [
    "LOSSES",
    "Balance",
    "CPOLoss",
    "Coefficients",
    "DPOLoss",
    "IPOLoss",
    "ImbalanceReport",
    "LossFamily",
    "ORPOLoss",
    "PreferenceLoss",
    "PreferenceLossOutput",
    "RDPOLoss",
    "SequenceLogps",
    "SimPOLoss",
    "balance_coefficients",
    "gradient_imbalance",
    "linear_sequence_logps",
    "normalized_coefficients",
    "preference_loss",
    "sequence_logps",
    "side_statistics",
]
