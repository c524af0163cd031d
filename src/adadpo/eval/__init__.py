"""Evaluation metrics usable on any judge's pairwise outcomes.

>>> from adadpo.eval import length_controlled_winrate
>>> res = length_controlled_winrate(preference=[1, 0.5, 0, 1], len_model=[900, 400, 300, 1200],
...                                 len_baseline=[600, 500, 700, 800], warn_incomparable=False)
>>> round(res.wr, 3)
0.625
"""

from adadpo.eval.difficulty import DIFFICULTY_PRECISION, estimate_difficulty
from adadpo.eval.lc import *  # noqa: F403
from adadpo.eval.lc import __all__ as _lc_all
from adadpo.eval.lc_models import POOL_LENGTH, ModelsLC, length_controlled_winrates

__all__ = [*_lc_all, "DIFFICULTY_PRECISION", "POOL_LENGTH", "ModelsLC", "estimate_difficulty",
           "length_controlled_winrates"]
