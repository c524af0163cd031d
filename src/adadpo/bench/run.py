"""What a benchmark run is, in any world: a method, a grid cell, a seed and a budget, trained with ``AdaDPOTrainer``.

The training goes through :class:`adadpo.trl.AdaDPOTrainer`, the code path users get. Every method shares
the world, the pairs, the seed and the :class:`Budget` (batch, epochs, schedule); only the loss differs.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from unittest import mock

import torch

from adadpo import LOSSES

#: Metrics the trainer logs that make the training curves.
CURVE_KEYS = ("rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected", "balance/log_rho", "loss")


@dataclass(frozen=True)
class Method:
    """A loss and its balance: ``balance=None`` is the plain loss, a dict the ``adadpo.Balance`` fields."""

    name: str
    loss: str
    balance: dict[str, Any] | None = None
    params: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"method {self.name!r}: loss={self.loss!r} is not one of {list(LOSSES)}")

    def config_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"loss": self.loss, "balance": self.balance is not None, **self.params}
        for key, value in (self.balance or {}).items():
            out[f"balance_{key}"] = value
        return out


@dataclass(frozen=True)
class Budget:
    """What every method gets: the same steps, batch and schedule."""

    batch_size: int = 32
    epochs: int = 1
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"
    logging_steps: int = 4


#: The method name of the untrained reference, evaluated with every evaluation seed as a method of its own.
UNTRAINED = "untrained"


@dataclass(frozen=True)
class RunSpec:
    """One run: a method in a grid cell (``beta``, ``learning_rate`` and, when the grid has that axis,
    ``epochs``) with a seed; ``method=None`` is the untrained reference evaluated with ``seed``'s evaluation
    seed (no training; ``beta`` and ``learning_rate`` unused)."""

    method: Method | None
    beta: float
    learning_rate: float
    seed: int
    epochs: int | None = None

    @classmethod
    def untrained(cls, seed: int) -> RunSpec:
        return cls(None, float("nan"), float("nan"), seed)

    @property
    def trained(self) -> bool:
        return self.method is not None

    @property
    def key(self) -> str:
        if self.method is None:
            return f"{UNTRAINED}|seed={self.seed}"
        epochs = "" if self.epochs is None else f"|epochs={self.epochs}"
        return f"{self.method.name}|beta={self.beta:g}|lr={self.learning_rate:g}{epochs}|seed={self.seed}"

    def budget(self, budget: Budget) -> Budget:
        """``budget`` with this run's epochs, where the grid sets them."""
        return budget if self.epochs is None else replace(budget, epochs=self.epochs)


def curves(log_history: list[dict]) -> dict[str, list[float]]:
    rows = [r for r in log_history if "loss" in r and "step" in r]
    curves = {"step": [r["step"] for r in rows]}
    for key in CURVE_KEYS:
        curves[key] = [r.get(key, float("nan")) for r in rows]
    return curves


def train_policy(policy: Any, ref_model: Any, data: Any, tokenizer: Any, spec: RunSpec, budget: Budget,
                 before_train: Callable[[Any], None] | None = None, **config: Any) -> list[dict]:
    """Train ``policy`` in place with ``AdaDPOTrainer`` for ``spec`` under ``budget`` (no checkpoints, no
    reports, no progress bar, TRL's included); ``config`` adds or overrides ``AdaDPOConfig`` fields.
    ``before_train(trainer)`` runs between the trainer's construction (dataset preparation, precomputed reference
    log-probs) and its first step. Returns the log history."""
    from transformers import PrinterCallback

    from adadpo.trl import AdaDPOConfig, AdaDPOTrainer

    # TQDM_DISABLE: TRL's bar over the reference log-probs reads it (it has no option); restored on leaving
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, {"TQDM_DISABLE": "1"}):
        args = AdaDPOConfig(**{
            "output_dir": os.path.join(tmp, "out"), "beta": spec.beta, "learning_rate": spec.learning_rate,
            "seed": spec.seed, "per_device_train_batch_size": budget.batch_size, "num_train_epochs": budget.epochs,
            "warmup_steps": budget.warmup_ratio, "lr_scheduler_type": budget.scheduler,
            "logging_steps": budget.logging_steps, "save_strategy": "no", "report_to": "none", "disable_tqdm": True,
            "gradient_checkpointing": False, "dataset_num_proc": None, **spec.method.config_fields(), **config,
        })
        trainer = AdaDPOTrainer(policy, ref_model, args=args, train_dataset=data, processing_class=tokenizer)
        trainer.remove_callback(PrinterCallback)  # the sweep shows its own progress
        if before_train is not None:
            before_train(trainer)
        trainer.train()
        return trainer.state.log_history


def run_fields(spec: RunSpec, world_key: str, budget: Budget, history: list[dict]) -> dict[str, Any]:
    """The fields every run's row starts with: what was run, in which world, under which budget (the sweep's;
    ``epochs`` is the run's own), and its curves. The untrained reference's row has ``method: "untrained"``,
    no loss, ``beta`` and ``learning_rate`` None and 0 steps."""
    steps = max((r.get("step", 0) for r in history), default=0)
    m = spec.method
    return {
        "key": spec.key, "method": m.name if m else UNTRAINED, "loss": m.loss if m else None,
        "balance": m.balance if m else None, "params": m.params if m else {},
        "beta": spec.beta if m else None, "learning_rate": spec.learning_rate if m else None, "seed": spec.seed,
        "epochs": spec.budget(budget).epochs if m else 0,
        "world": world_key, "budget": asdict(budget), "steps": steps, "curves": curves(history),
    }


def start_run(world: Any, threads: int | None) -> tuple[Any, Any]:
    """What every run of either world starts with: its thread count, adadpo's logging quietened, the world's
    tokenizer and a fresh copy of its reference policy in train mode (the policy to train)."""
    if threads:
        torch.set_num_threads(threads)
    logging.getLogger("adadpo").setLevel(logging.WARNING)
    return world.load_tokenizer(), world.load_reference().train()
