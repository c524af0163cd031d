"""Evaluation metrics usable on any judge's pairwise outcomes.

>>> from adadpo.eval import length_controlled_winrate
>>> res = length_controlled_winrate(preference=[1, 0.5, 0, 1], len_model=[900, 400, 300, 1200],
...                                 len_baseline=[600, 500, 700, 800])
>>> round(res.wr, 3)
0.625
"""

from adadpo.eval.lc import *  # noqa: F403
from adadpo.eval.lc import __all__
