"""TRL integration: ``AdaDPOTrainer``, a drop-in ``trl.DPOTrainer`` for all six losses, plain or balanced.

>>> from adadpo.trl import AdaDPOConfig, AdaDPOTrainer
>>> args = AdaDPOConfig("out", loss="dpo", balance=True, beta=0.1)
>>> trainer = AdaDPOTrainer(model="Qwen/Qwen2-0.5B-Instruct", args=args, train_dataset=dataset)

``batch_pair_logps(model, batch)`` gives the :class:`adadpo.PairLogps` of one collated TRL batch, as the
trainer computes it, outside any trainer.
"""

try:
    import trl  # noqa: F401
except ModuleNotFoundError as err:  # pragma: no cover - exercised by tests/test_architecture.py in a subprocess
    raise ModuleNotFoundError(f"adadpo.trl needs the 'trainer' extra: pip install \"adadpo[trainer]\" ({err})",
                              name=err.name) from err

from adadpo.trl.backends import batch_pair_logps, model_inputs
from adadpo.trl.callbacks import MetricsFileCallback
from adadpo.trl.config import AdaDPOConfig
from adadpo.trl.dirlock import DirLock
from adadpo.trl.trainer import AdaDPOTrainer, NonFiniteLossError

__all__ = ["AdaDPOConfig", "AdaDPOTrainer", "DirLock", "MetricsFileCallback", "NonFiniteLossError",
           "batch_pair_logps", "model_inputs"]
