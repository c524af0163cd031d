"""Generated tests for the traceback tail, by class: every kind of model that is no causal LM, a tokenizer
without an EOS token, sequences beyond the model's positions, every optional package a key needs, every
integration that would fail once training started. Each ends in one line naming the key and the way out, before a
step is trained (before: errors deep inside transformers, an IndexError, an ImportError, an AssertionError)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny import cli_config, make_tokenizer, train_cli, write_jsonl

from adadpo.cli import preflight


def _line(world: Path, tmp_path: Path, capsys, **overrides) -> tuple[int, str]:
    code, err = train_cli(cli_config(world, tmp_path / "out", **overrides), tmp_path, capsys)
    lines = [line for line in err.strip().splitlines() if line.startswith("adadpo train")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert not (tmp_path / "out").exists()
    return code, lines[0]


def _bert(decoder: bool):
    from transformers import BertConfig

    return BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, is_decoder=decoder)


def _t5():
    from transformers import T5Config

    return T5Config(vocab_size=64, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8, decoder_start_token_id=0)


def _llama():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=1)


#: (class name, config factory, what the line says): each model kind that cannot be trained as a causal LM.
KINDS = [("BertModel", lambda: _bert(False), "an encoder-only model (bert"),
         ("BertForMaskedLM", lambda: _bert(False), "an encoder-only model (bert"),
         ("BertLMHeadModel", lambda: _bert(False), "an encoder-only model (bert"),
         ("T5ForConditionalGeneration", _t5, "an encoder-decoder model (t5)"),
         ("T5EncoderModel", _t5, "a model of type 't5' with no causal-LM class"),
         ("LlamaModel", _llama, "its weights are a LlamaModel, without the language-model head"),
         ("LlamaForSequenceClassification", _llama, "its weights are a LlamaForSequenceClassification")]


@pytest.mark.parametrize(("cls", "config", "said"), KINDS, ids=[k[0] for k in KINDS])
def test_a_model_that_is_no_causal_lm_is_one_line(world, tmp_path, capsys, cls, config, said):
    import transformers

    model = getattr(transformers, cls)(config())
    model.save_pretrained(tmp_path / "model")
    make_tokenizer().save_pretrained(tmp_path / "model")
    _, line = _line(world, tmp_path, capsys, model_name_or_path=str(tmp_path / "model"))
    assert f"model_name_or_path={str(tmp_path / 'model')!r} is {said}" in line, line


def test_a_tokenizer_without_eos_is_one_line(world, tmp_path, capsys):
    tokenizer = make_tokenizer()
    tokenizer.eos_token = None
    tokenizer.save_pretrained(tmp_path / "tok")
    _, line = _line(world, tmp_path, capsys, tokenizer_name_or_path=str(tmp_path / "tok"))
    assert "the tokenizer has no EOS token (eos_token)" in line, line


@pytest.mark.parametrize("kind", ["learned positions (gpt2)", "rotary positions (llama)"])
def test_sequences_beyond_the_models_positions_are_one_line(world, tmp_path, capsys, kind):
    from tiny import make_model
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = make_tokenizer()
    if kind.startswith("learned"):  # before: IndexError in the position embedding
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2, n_positions=24,
                                           eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    else:
        model = make_model(tokenizer)
        model.config.max_position_embeddings = 24
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    long = " ".join(["the sky is blue"] * 10)
    write_jsonl(tmp_path / "data" / "train.jsonl", [{"prompt": long, "chosen": " yes .", "rejected": " no ."}] * 8)
    _, line = _line(world, tmp_path, capsys, model_name_or_path=str(tmp_path / "model"),
                    dataset_name=str(tmp_path / "data"), max_length=64)
    assert "max_length=64 lets 8 train pair(s) reach" in line and "beyond the 24 positions" in line, line


CASES = [(key, module, extra) for key, _, module, extra in preflight.PACKAGES]
VALUES = {"attn_implementation": "flash_attention_2"}


@pytest.mark.parametrize(("key", "module", "extra"), CASES, ids=[c[0] for c in CASES])
def test_a_key_whose_package_is_missing_names_the_extra(world, tmp_path, capsys, monkeypatch, key, module, extra):
    monkeypatch.setattr(preflight, "_has", lambda name: name != module)
    _, line = _line(world, tmp_path, capsys, **{key: VALUES.get(key, True)})
    assert line.endswith(f"install the {extra!r} extra: pip install \"adadpo[{extra}]\""), line


@pytest.mark.parametrize("name", sorted(preflight.REPORTERS))
def test_a_report_to_whose_package_is_missing_is_one_line(world, tmp_path, capsys, monkeypatch, name):
    module = preflight.REPORTERS[name]
    monkeypatch.setattr(preflight, "_has", lambda m: m != module)
    _, line = _line(world, tmp_path, capsys, report_to=[name])  # before: transformers' RuntimeError at the start
    assert repr(module) in line or f"report_to={name!r} needs the {module} package" in line, line
    assert "install" in line, line


def test_integrations_that_would_fail_once_training_started(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(preflight, "_has", lambda m: True)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    _, line = _line(world, tmp_path, capsys, report_to=["wandb"])
    assert "wandb is not logged in here" in line and "WANDB_MODE=offline" in line, line
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, line = _line(world, tmp_path, capsys, push_to_hub=True, hub_model_id="me/model")
    assert "push_to_hub=True but the Hub is offline here" in line, line
    _, line = _line(world, tmp_path, capsys, callbacks=["transformers:EarlyStoppingCallback"])
    assert "EarlyStoppingCallback stops on an evaluation metric and needs load_best_model_at_end: true, " \
           "metric_for_best_model (e.g. eval_loss), eval_strategy: steps" in line, line
