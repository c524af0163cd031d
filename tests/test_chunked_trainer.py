"""AdaDPOTrainer's log-prob backends: the token-chunked LM head against full logits and TRL's fused head.

Same batch, same weights: the loss, every parameter gradient and the logged metrics must agree between
``logps_backend="chunked"`` (the default), ``"full"`` (the model's own logits) and ``"trl_fused"``.
"""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import PARAMS
from tiny import TRAINER_ARGS, make_model
from transformers import AutoModelForCausalLM

import adadpo
from adadpo.trl import AdaDPOConfig, AdaDPOTrainer, model_inputs
from adadpo.trl.chunked_head import chunked_head_problem

COMMON = {**TRAINER_ARGS, "max_steps": 1}
METRICS = ("entropy", "logits/chosen", "logits/rejected", "mean_token_accuracy", "logps/chosen", "logps/rejected")

#: The shared fixtures' settings (tests/conftest.py).
MODEL_SEED = 3
PAIRS = (16, 5)


def _trainer(model, tokenizer, dataset, tmp_path, backend: str, **kw) -> AdaDPOTrainer:
    extra = kw.pop("extra", {})
    args = AdaDPOConfig(str(tmp_path / backend), logps_backend=backend, **{**COMMON, **kw})
    return AdaDPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, **extra)


def _loss_and_grads(trainer: AdaDPOTrainer, n: int = 4) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict]:
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(n)])
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.log({})  # TRL's log: the step's metrics into log_history
    return loss.detach(), grads, trainer.state.log_history[-1]


def _backends(trainer: AdaDPOTrainer) -> set[str]:
    """The log-prob backends the trainer chose for its policy and (if any) reference model."""
    return {trainer.logps_backend_for(m).name for m in (trainer.model, trainer.ref_model) if m is not None}


def _assert_same(a: tuple, b: tuple, rtol: float = 1e-5) -> None:
    """Same loss (relative ``rtol``), same gradients (max error <= ``rtol`` x the largest entry), same metrics."""
    (loss_a, grads_a, logged_a), (loss_b, grads_b, logged_b) = a, b
    torch.testing.assert_close(loss_a, loss_b, rtol=rtol, atol=1e-7)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        error, scale = (grads_a[name] - grads_b[name]).abs().max().item(), grads_b[name].abs().max().item()
        assert error <= rtol * scale + 1e-12, f"{name}: max error {error:.3g}, largest entry {scale:.3g}"
    assert logged_a.keys() == logged_b.keys()
    for key in METRICS:
        assert logged_a[key] == pytest.approx(logged_b[key], rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize("loss", list(adadpo.LOSSES))
@pytest.mark.parametrize("balance", [False, True])
def test_chunked_equals_full_logits_for_every_loss(model_dir, tokenizer, dataset, tmp_path, loss, balance):
    """Loss, gradients of every parameter and TRL's metrics: chunked == full logits == TRL's fused head."""
    results = {}
    for backend in ("chunked", "full", "trl_fused"):
        trainer = _trainer(str(model_dir), tokenizer, dataset, tmp_path, backend, loss=loss, balance=balance,
                           **PARAMS.get(loss, {}))
        assert _backends(trainer) == {backend}  # policy (and reference): no silent fallback
        results[backend] = _loss_and_grads(trainer)
    assert results["chunked"][0].item() != 0.0
    _assert_same(results["chunked"], results["full"])
    _assert_same(results["chunked"], results["trl_fused"])


def test_precomputed_reference_is_chunked_and_equals_the_full_path(model_dir, tokenizer, dataset, tmp_path):
    columns = {}
    for backend in ("chunked", "full"):
        trainer = _trainer(str(model_dir), tokenizer, dataset, tmp_path, backend, loss="dpo",
                           precompute_ref_log_probs=True)
        assert trainer.ref_model is None
        assert _backends(trainer) == {backend}  # the precompute pass used this backend
        columns[backend] = [torch.tensor(trainer.train_dataset[c]) for c in ("ref_chosen_logps", "ref_rejected_logps")]
    for a, b in zip(columns["chunked"], columns["full"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert columns["chunked"][0].abs().min() > 0


@pytest.mark.parametrize("balance", [False, True])
def test_precomputed_and_live_reference_give_the_same_chunked_step(model_dir, tokenizer, dataset, tmp_path, balance):
    kw = {"loss": "ipo", "balance": balance, "balance_use_reference": balance}
    live = _loss_and_grads(_trainer(str(model_dir), tokenizer, dataset, tmp_path / "live", "chunked", **kw))
    pre = _loss_and_grads(_trainer(str(model_dir), tokenizer, dataset, tmp_path / "pre", "chunked",
                                   precompute_ref_log_probs=True, **kw))
    _assert_same(live, pre)


def test_lora_chunked_equals_full_and_uses_the_base_model_as_reference(model_dir, tokenizer, dataset, tmp_path):
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM",
                      init_lora_weights=False)  # random B: the adapter changes the policy from the first step
    results, refs = {}, {}
    for backend in ("chunked", "full"):
        trainer = _trainer(str(model_dir), tokenizer, dataset, tmp_path, backend, loss="dpo", balance=True,
                           extra={"peft_config": lora})
        assert trainer.ref_model is None and _backends(trainer) == {backend}
        results[backend] = _loss_and_grads(trainer)
        assert all("lora_" in name for name in results[backend][1])  # only the adapter trains
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        kwargs, labels = model_inputs(batch)
        ref = trainer.reference_logps(kwargs, labels)
        refs[backend] = torch.cat(ref)
    _assert_same(results["chunked"], results["full"])
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        logits = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = adadpo.sequence_logps(logits, labels).logps
    torch.testing.assert_close(refs["chunked"], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(refs["full"], expected, rtol=1e-5, atol=1e-5)
    reference_chosen = expected.chunk(2)[0].mean().item()
    assert abs(results["chunked"][2]["logps/chosen"] - reference_chosen) > 1e-4  # the adapter changed the policy


def test_chunked_training_matches_full_logits_over_steps(model_dir, tokenizer, dataset, tmp_path):
    """Five optimizer steps: same losses and same final weights with both backends."""
    trainers = {b: _trainer(str(model_dir), tokenizer, dataset, tmp_path, b, loss="simpo", balance=True, max_steps=5)
                for b in ("chunked", "full")}
    for trainer in trainers.values():
        trainer.train()
    losses = {b: [h["loss"] for h in t.state.log_history if "loss" in h] for b, t in trainers.items()}
    assert len(losses["chunked"]) == 5 and losses["chunked"] == pytest.approx(losses["full"], rel=1e-5)
    for (name, p), (_, q) in zip(trainers["chunked"].model.named_parameters(), trainers["full"].model.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_installed_head_keeps_the_forward_signature_and_generation(tokenizer):
    import inspect

    from trl.trainer.utils import add_fused_lm_head

    from adadpo.trl.chunked_head import install_chunked_head

    model = make_model(tokenizer, seed=2)
    ids = tokenizer(["the sky is"], return_tensors="pt")
    before = model.generate(**ids, max_new_tokens=4, do_sample=False)
    signature = list(inspect.signature(model.forward).parameters)
    add_fused_lm_head(model)
    install_chunked_head(model)
    install_chunked_head(model)  # idempotent
    assert list(inspect.signature(model.forward).parameters) == signature
    assert torch.equal(model.generate(**ids, max_new_tokens=4, do_sample=False), before)
    labels = ids["input_ids"].clone()
    out = model(**ids, labels=labels, adadpo_chunked=True)
    expected = adadpo.sequence_logps(model(**ids).logits, labels)
    torch.testing.assert_close(out.tokens.per_sequence().logps, expected.logps)


@pytest.mark.parametrize("backend", ["chunked", "full"])
def test_gradient_checkpointing_gives_the_same_step(model_dir, tokenizer, dataset, tmp_path, backend):
    plain = _loss_and_grads(_trainer(str(model_dir), tokenizer, dataset, tmp_path / "a", backend, loss="dpo",
                                     balance=True))
    checkpointed = _loss_and_grads(_trainer(str(model_dir), tokenizer, dataset, tmp_path / "b", backend, loss="dpo",
                                            balance=True, gradient_checkpointing=True))
    _assert_same(plain, checkpointed)


class _CustomHead(torch.nn.Linear):
    """An output layer that is a Linear subclass (as quantised or parallel layers are): not served by chunked."""


def test_unsupported_head_falls_back_to_trl_with_one_message(tokenizer, dataset, tmp_path, caplog):
    model = make_model(tokenizer, seed=1)
    model.lm_head.__class__ = _CustomHead
    with caplog.at_level(logging.WARNING, logger="adadpo"):
        trainer = _trainer(model, tokenizer, dataset, tmp_path, "chunked", loss="simpo", max_steps=2)
        trainer.train()
    messages = [r.getMessage() for r in caplog.records if "logps_backend='chunked'" in r.getMessage()]
    expected = (
        "logps_backend='chunked' cannot serve LlamaForCausalLM: its output layer is _CustomHead, not a plain "
        "torch.nn.Linear. Its log-probs come from TRL's fused LM head (logps_backend='trl_fused') instead."
    )
    assert messages == [expected]
    assert _backends(trainer) == {"trl_fused"}
    assert "entropy" in trainer.state.log_history[0]


def test_chunked_head_problem_names_the_reason(tokenizer):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    assert chunked_head_problem(make_model(tokenizer)) is None
    gemma = Gemma2ForCausalLM(Gemma2Config(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=4))
    assert chunked_head_problem(gemma) == "its config transforms the logits after the LM head (final_logit_softcapping=30.0)"
    scaled = make_model(tokenizer)
    scaled.config.logit_scale = 0.5
    assert chunked_head_problem(scaled) == "its config transforms the logits after the LM head (logit_scale=0.5)"
    scaled.config.logit_scale = 1.0
    assert chunked_head_problem(scaled) is None
    assert chunked_head_problem(torch.nn.Linear(2, 2)) == "its output layer is NoneType, not a plain torch.nn.Linear"


def test_moe_router_aux_loss_is_the_same_with_the_chunked_head(tokenizer, dataset, tmp_path):
    from transformers import MixtralConfig, MixtralForCausalLM

    def mixtral():
        torch.manual_seed(0)
        config = MixtralConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                               num_attention_heads=2, num_key_value_heads=1, num_local_experts=4,
                               num_experts_per_tok=2, output_router_logits=True, router_aux_loss_coef=0.5,
                               pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        return MixtralForCausalLM(config)

    results = {}
    for backend in ("chunked", "full"):
        trainer = _trainer(mixtral(), tokenizer, dataset, tmp_path, backend, loss="simpo", balance=True)
        assert trainer.aux_loss_enabled and _backends(trainer) == {backend}
        results[backend] = _loss_and_grads(trainer)
    _assert_same(results["chunked"], results["full"])
    assert results["chunked"][2]["aux_loss"] == pytest.approx(results["full"][2]["aux_loss"], rel=1e-6)
    assert results["chunked"][2]["aux_loss"] > 0
