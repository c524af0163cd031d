"""The torch-only core of adadpo: losses, balancing, log-prob helpers and diagnostics.

Nothing here imports TRL or transformers; integrations and the CLI build on this package. One batch of
pairs travels as a :class:`PairLogps` from the log-prob helpers to :func:`preference_loss`, whose
configuration is a :class:`LossSpec` checked once, built from the declarations of :mod:`adadpo.core.registry`.
"""

from adadpo.core.balance import Balance, Coefficients, balance_coefficients, normalized_coefficients
from adadpo.core.diagnostics import ImbalanceReport, gradient_imbalance
from adadpo.core.logps import (SequenceLogps, TokenLogps, counted_tokens, linear_sequence_logps, linear_token_logps,
                               sequence_logps, token_logps)
from adadpo.core.losses import PreferenceLossOutput, preference_loss, side_statistics
from adadpo.core.modules import CPOLoss, DPOLoss, IPOLoss, ORPOLoss, PreferenceLoss, RDPOLoss, SimPOLoss
from adadpo.core.pairs import PairLogps
from adadpo.core.params import Param
from adadpo.core.registry import REGISTRY, TRL_LOSS_TYPES, LossDef, register_loss
from adadpo.core.spec import LOSSES, LossFamily, LossSpec

__all__ = [
    "LOSSES",
    "REGISTRY",
    "TRL_LOSS_TYPES",
    "Balance",
    "CPOLoss",
    "Coefficients",
    "DPOLoss",
    "IPOLoss",
    "ImbalanceReport",
    "LossDef",
    "LossFamily",
    "LossSpec",
    "ORPOLoss",
    "PairLogps",
    "Param",
    "PreferenceLoss",
    "PreferenceLossOutput",
    "RDPOLoss",
    "SequenceLogps",
    "SimPOLoss",
    "TokenLogps",
    "balance_coefficients",
    "counted_tokens",
    "gradient_imbalance",
    "linear_sequence_logps",
    "linear_token_logps",
    "normalized_coefficients",
    "preference_loss",
    "register_loss",
    "sequence_logps",
    "side_statistics",
    "token_logps",
]
