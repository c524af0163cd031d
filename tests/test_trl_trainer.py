"""AdaDPOTrainer against stock trl.DPOTrainer and the core losses, on a tiny model built in-process."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from datasets import Dataset
from tiny import TRAINER_ARGS, make_model, make_pairs
from transformers import AutoModelForCausalLM, TrainerCallback
from trl import DPOConfig, DPOTrainer

import adadpo
from adadpo.core.registry import example_params
from adadpo.trl import AdaDPOConfig, AdaDPOTrainer, NonFiniteLossError, batch_pair_logps, model_inputs

COMMON = TRAINER_ARGS


def _record_losses(trainer) -> list[float]:
    """Wrap ``compute_loss`` so every training step's loss value is recorded exactly."""
    losses: list[float] = []
    compute = trainer.compute_loss

    def recording(*args, **kwargs):
        loss = compute(*args, **kwargs)
        losses.append(loss.item())
        return loss

    trainer.compute_loss = recording
    return losses


def _trainer(model_dir, tokenizer, dataset, tmp_path, **kw) -> AdaDPOTrainer:
    args = AdaDPOConfig(str(tmp_path / "out"), **{**COMMON, **kw})
    return AdaDPOTrainer(model=str(model_dir), args=args, train_dataset=dataset, processing_class=tokenizer)


def test_plain_dpo_matches_stock_dpotrainer_over_20_steps(model_dir, tokenizer, dataset, tmp_path):
    stock = DPOTrainer(
        model=str(model_dir),
        args=DPOConfig(str(tmp_path / "stock"), max_steps=20, **COMMON),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    ours = _trainer(model_dir, tokenizer, dataset, tmp_path, max_steps=20, loss="dpo")
    stock_losses, our_losses = _record_losses(stock), _record_losses(ours)
    stock.train()
    ours.train()
    assert len(our_losses) == len(stock_losses) == 20
    assert our_losses == pytest.approx(stock_losses, rel=1e-6, abs=1e-7)
    assert our_losses[-1] < our_losses[0] - 1e-3  # it trained
    for (name, p), (_, q) in zip(ours.model.named_parameters(), stock.model.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                "logps/rejected", "entropy", "logits/chosen", "mean_token_accuracy"):
        ours_v = [h[key] for h in ours.state.log_history if key in h]
        stock_v = [h[key] for h in stock.state.log_history if key in h]
        assert ours_v == pytest.approx(stock_v, rel=1e-4, abs=1e-6), key


def _batch(trainer, n: int = 4) -> dict:
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


def _logged(trainer) -> dict:
    """The metrics of the steps since the last log, through TRL's own ``log``."""
    trainer.log({})
    return trainer.state.log_history[-1]


@pytest.mark.parametrize("loss", list(adadpo.LOSSES))
@pytest.mark.parametrize("balance", [False, True])
def test_training_step_loss_is_the_core_loss(model_dir, tokenizer, dataset, tmp_path, loss, balance):
    """The trainer's loss on a batch equals preference_loss on log-probs from a full-logits forward."""
    params = example_params(loss)  # rdpo: its required length_alpha
    trainer = _trainer(model_dir, tokenizer, dataset, tmp_path, loss=loss, balance=balance, max_steps=1, **params)
    assert (trainer.ref_model is None) == (not adadpo.LOSSES[loss].needs_reference)
    batch = _batch(trainer)
    trainer.model.train()
    got = trainer.compute_loss(trainer.model, batch)

    def sums(model):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return adadpo.sequence_logps(logits, batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100))

    ref = None
    if adadpo.LOSSES[loss].needs_reference:
        with torch.no_grad():
            ref = sums(AutoModelForCausalLM.from_pretrained(model_dir)).logps
    expected = adadpo.preference_loss(loss, sums(trainer.model).pairs(ref), beta=0.1,
                                      balance=adadpo.Balance() if balance else None, **params)
    torch.testing.assert_close(got, expected.loss, rtol=1e-5, atol=1e-6)
    logged = _logged(trainer)
    for key, value in expected.metrics.items():
        assert logged[key] == pytest.approx(value.item(), rel=1e-4, abs=1e-5), key
    assert ("balance/coef_chosen" in logged) == balance


def test_reference_free_losses_load_no_reference_model(model_dir, tokenizer, dataset, tmp_path, monkeypatch):
    import trl.trainer.dpo_trainer as dpo_module

    calls: list[str] = []
    load = dpo_module.create_model_from_path
    monkeypatch.setattr(dpo_module, "create_model_from_path", lambda path, **kw: calls.append(path) or load(path, **kw))
    trainer = _trainer(model_dir, tokenizer, dataset, tmp_path, loss="simpo", max_steps=2)
    assert calls == [str(model_dir)] and trainer.ref_model is None
    trainer.train()
    calls.clear()
    trainer = _trainer(model_dir, tokenizer, dataset, tmp_path, loss="dpo", max_steps=1)
    assert calls == [str(model_dir), str(model_dir)] and trainer.ref_model is not None


def test_precomputed_reference_gives_the_live_reference_losses(model_dir, tokenizer, dataset, tmp_path):
    live = _trainer(model_dir, tokenizer, dataset, tmp_path / "a", loss="ipo", balance=True,
                    balance_use_reference=True, max_steps=6)
    pre = _trainer(model_dir, tokenizer, dataset, tmp_path / "b", loss="ipo", balance=True,
                   balance_use_reference=True, max_steps=6, precompute_ref_log_probs=True)
    assert pre.ref_model is None and "ref_chosen_logps" in pre.train_dataset.column_names
    live_losses, pre_losses = _record_losses(live), _record_losses(pre)
    live.train()
    pre.train()
    assert pre_losses == pytest.approx(live_losses, rel=1e-5)


def test_lora_uses_the_base_model_as_reference(model_dir, tokenizer, dataset, tmp_path):
    from peft import LoraConfig

    args = AdaDPOConfig(str(tmp_path / "out"), loss="dpo", balance=True, max_steps=4, **{**COMMON, "learning_rate": 5e-2})
    trainer = AdaDPOTrainer(
        model=str(model_dir), args=args, train_dataset=dataset, processing_class=tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    assert trainer.ref_model is None
    trainer.train()
    batch = _batch(trainer)
    kwargs, labels = model_inputs(batch)
    ref = trainer.reference_logps(kwargs, labels)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        logits = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = adadpo.sequence_logps(logits, labels).logps
    torch.testing.assert_close(torch.cat(ref), expected, rtol=1e-5, atol=1e-5)
    policy = batch_pair_logps(trainer.model, batch)
    policy = torch.cat([policy.chosen_logps, policy.rejected_logps])
    assert (policy - expected).abs().max() > 1e-4  # the adapter moved the policy away from the reference


class _PoisonAtStep(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                model.get_output_embeddings().weight[0, 0] = math.nan


def test_non_finite_loss_stops_training_with_step_and_batch_statistics(model_dir, tokenizer, dataset, tmp_path):
    trainer = _trainer(model_dir, tokenizer, dataset, tmp_path, loss="dpo", balance=True, max_steps=6)
    trainer.add_callback(_PoisonAtStep(2))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 3") as err:
        trainer.train()
    message = str(err.value)
    assert "chosen_logps" in message and "non-finite of 4" in message and "learning_rate" in message


# ---------------------------------------------------------------------------------------------- errors


def test_missing_column_names_it(model_dir, tokenizer, tmp_path):
    bad = Dataset.from_list([{"prompt": "the sky ?", "chosen": " blue .", "worse": " red ."}])
    with pytest.raises(ValueError, match=r"no 'rejected' column \(it has \['prompt', 'chosen', 'worse'\]\)"):
        _trainer(model_dir, tokenizer, bad, tmp_path, loss="simpo")


def test_empty_response_names_rows(model_dir, tokenizer, tmp_path):
    rows = make_pairs(6)
    rows[2]["chosen"] = "  "
    rows[4]["chosen"] = ""
    with pytest.raises(ValueError, match=r"2 empty 'chosen' response\(s\) \(rows 2, 4\)"):
        _trainer(model_dir, tokenizer, Dataset.from_list(rows), tmp_path, loss="simpo")
    conv = make_pairs(3, conversational=True)
    conv[1]["rejected"] = [{"role": "assistant", "content": ""}]
    with pytest.raises(ValueError, match=r"1 empty 'rejected' response\(s\) \(rows 1\)"):
        _trainer(model_dir, tokenizer, Dataset.from_list(conv), tmp_path, loss="simpo")


def test_long_prompts_are_counted_and_reported(model_dir, tokenizer, tmp_path, caplog):
    rows = make_pairs(10)
    for i in (0, 3, 7):
        rows[i]["prompt"] = " ".join(["sky"] * 40)
    with caplog.at_level(logging.WARNING, logger="adadpo"):
        trainer = _trainer(model_dir, tokenizer, Dataset.from_list(rows), tmp_path, loss="simpo", max_length=24)
    assert len(trainer.train_dataset) == 7
    assert "3 of 10 train pairs have a prompt of max_length=24 tokens or more; they were dropped" in caplog.text
    too_long = [{**r, "prompt": " ".join(["sky"] * 40)} for r in rows]
    with pytest.raises(ValueError, match=r"every prompt of the train dataset \(10 pairs\) is at least max_length=24"):
        _trainer(model_dir, tokenizer, Dataset.from_list(too_long), tmp_path, loss="simpo", max_length=24)


def test_reference_loss_without_any_reference_source(tokenizer, dataset, tmp_path):
    model = make_model(tokenizer)  # built from a config: no path to load a reference copy from
    args = AdaDPOConfig(str(tmp_path / "out"), loss="dpo", **COMMON)
    with pytest.raises(ValueError, match=r"loss='dpo' needs reference log-probs, but no ref_model was given"):
        AdaDPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    precompute = AdaDPOConfig(str(tmp_path / "out"), loss="dpo", precompute_ref_log_probs=True, max_steps=1, **COMMON)
    AdaDPOTrainer(model=model, args=precompute, train_dataset=dataset, processing_class=tokenizer).train()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(loss="kto"), r"loss='kto' is not one of its choices: dpo, rdpo"),
        (dict(loss="simpo", loss_type=["ipo"]), r"loss='simpo' and loss_type=\['ipo'\] name different losses"),
        (dict(loss="dpo", gamma=0.5), r"gamma=0.5 does not apply to loss='dpo'"),
        (dict(loss="rdpo"), r"loss='rdpo' needs length_alpha"),
        (dict(loss="simpo", balance=True, balance_use_reference=True), r"balance_use_reference=True \(Balance\(use_reference=True\)\) needs a reference model"),
        (dict(loss="dpo", balance_clip=0.5), r"balance_clip=0.5 is out of range: expected a number in \[1, inf\]"),
        (dict(loss="dpo", balance_level="word"), r"balance_level='word' is not one of its choices: token, sequence"),
        (dict(loss="orpo", label_smoothing=0.1), r"label_smoothing=0.1 does not apply to loss='orpo'"),
        (dict(loss="cpo", precompute_ref_log_probs=True), r"precompute_ref_log_probs=True, but loss='cpo' is reference-free"),
        (dict(loss="dpo", beta=-1.0), r"beta=-1.0 is out of range: expected a number in \[1e-09, 1e\+09\]"),
        (dict(logps_backend="liger"), r"logps_backend='liger' is not one of its choices: chunked, trl_fused, full"),
        (dict(logps_chunk_size=0), r"logps_chunk_size=0 is out of range: expected an integer >= 1"),
    ],
)
def test_config_errors_name_the_field(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        AdaDPOConfig(str(tmp_path), **{**COMMON, **kwargs})


def test_stock_config_and_reference_free_ref_model_are_rejected(model_dir, tokenizer, dataset, tmp_path):
    with pytest.raises(TypeError, match="args must be an adadpo.trl.AdaDPOConfig"):
        AdaDPOTrainer(model=str(model_dir), args=DPOConfig(str(tmp_path), **COMMON), train_dataset=dataset,
                      processing_class=tokenizer)
    args = AdaDPOConfig(str(tmp_path), loss="orpo", **COMMON)
    with pytest.raises(ValueError, match="ref_model was given, but loss='orpo' is reference-free"):
        AdaDPOTrainer(model=str(model_dir), ref_model=make_model(tokenizer), args=args, train_dataset=dataset,
                      processing_class=tokenizer)
