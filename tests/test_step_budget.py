"""The host-side cost of one ``AdaDPOTrainer.training_step`` (issue 20): at most five adadpo types built and at
most two device reads of adadpo's own (the batch's counted tokens, one ``nonzero``; the loss's finiteness and the
metrics, one gather read with ``tolist``), for plain and balanced DPO and TRL ``loss_type``\ s.

Counted with :mod:`step_budget` on a tiny in-process Llama with a live reference model, on the second step (the
first one may set up caches). The model's own forward reads the device too (transformers' causal-mask check of the
padding, ``fast_all``: 2 reads per forward here, which stock ``DPOTrainer`` pays as well); those are measured on a
bare forward of the same batch and allowed for the two forwards of a step (policy and reference). On main before
issue 20: 9-10 types and 13 reads of adadpo's own (+4 of the model's) per step.
"""

from __future__ import annotations

import pytest
from datasets import Dataset
from step_budget import Constructions, DeviceReads
from tiny import TRAINER_ARGS, make_pairs, make_tokenizer

import torch

from adadpo.trl import AdaDPOConfig, AdaDPOTrainer, model_inputs

CASES = {
    "dpo plain": dict(loss="dpo"),
    "dpo balanced": dict(loss="dpo", balance=True),
    "trl sigmoid+ipo": dict(loss_type=["sigmoid", "ipo"], loss_weights=[1.0, 0.5]),
    "trl hinge balanced": dict(loss_type="hinge", balance=True),
}
# five types since issue 33: the loss's Coefficients record replaced a 6-tuple (10 instances per step, was 9)
MAX_TYPES, MAX_READS = 5, 2


def measure(model_dir, out, **kw) -> tuple[Constructions, DeviceReads, int]:
    """Types built and device reads of the second ``training_step`` on a fixed batch of 4 pairs, and the device
    reads of one bare forward of the model on that batch."""
    tokenizer = make_tokenizer()
    args = AdaDPOConfig(str(out), **{**TRAINER_ARGS, "max_steps": 2, **kw})
    trainer = AdaDPOTrainer(model=str(model_dir), args=args, train_dataset=Dataset.from_list(make_pairs(8)),
                            processing_class=tokenizer)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(), read by training_step
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(4)]))
    trainer.training_step(trainer.model, batch)
    with Constructions() as built, DeviceReads() as reads:
        trainer.training_step(trainer.model, batch)
    model_kwargs, _ = model_inputs(batch)
    with torch.no_grad(), DeviceReads() as forward:
        trainer.model(**model_kwargs)
    return built, reads, forward.total


@pytest.mark.parametrize("case", list(CASES))
def test_one_step_builds_few_types_and_reads_the_device_at_most_twice(model_dir, tmp_path, case):
    built, reads, forward = measure(model_dir, tmp_path, **CASES[case])
    print(f"{case}: {len(built.types)} types {dict(built.types)}; {reads.total} reads {dict(reads.ops)}, "
          f"{forward} in a bare forward")
    assert len(built.types) <= MAX_TYPES, dict(built.types)
    assert reads.total - 2 * forward <= MAX_READS, (dict(reads.ops), forward)
