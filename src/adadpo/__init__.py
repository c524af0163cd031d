"""adadpo: preference optimisation with gradient-balanced updates (AdaDPO, arXiv 2605.28440).

>>> import adadpo
>>> out = adadpo.preference_loss("dpo", chosen_logps=..., rejected_logps=..., chosen_lengths=...,
...                              rejected_lengths=..., ref_chosen_logps=..., ref_rejected_logps=...,
...                              beta=0.1, balance=adadpo.Balance())
>>> out.loss.backward()
"""

from adadpo.core import *  # noqa: F403
from adadpo.core import __all__ as _core_all

__version__ = "0.1.0"
__all__ = [*_core_all, "__version__"]
