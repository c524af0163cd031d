"""TRL integration: ``AdaDPOTrainer``, a drop-in ``trl.DPOTrainer`` for all six losses, plain or balanced.

>>> from adadpo.trl import AdaDPOConfig, AdaDPOTrainer
>>> args = AdaDPOConfig("out", loss="dpo", balance=True, beta=0.1)
>>> trainer = AdaDPOTrainer(model="Qwen/Qwen2-0.5B-Instruct", args=args, train_dataset=dataset)
"""

from adadpo.trl.callbacks import MetricsFileCallback
from adadpo.trl.config import AdaDPOConfig
from adadpo.trl.trainer import AdaDPOTrainer, NonFiniteLossError

__all__ = ["AdaDPOConfig", "AdaDPOTrainer", "MetricsFileCallback", "NonFiniteLossError"]
