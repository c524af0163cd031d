"""Shared helpers of the benchmark scripts: tiny models built in-process, interleaved timing, fresh-process
peak memory, tables.

Nothing here downloads anything: the tokenizer is word-level over a fixed word list and the models are tiny
Llamas built from a config (``HF_HUB_OFFLINE=1`` is set on import).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["the", "a", "sky", "sea", "tree", "cat", "dog", "is", "are", "was", "blue", "green", "red", "big", "small", "good", "bad", "yes", "no", "it", "this", "that", "and", "or", "what", "color", "why", "how", "answer", "question", "please", "tell", "me", "about", "very", "quite", "not", "really", "sure", "think", "so"]

#: Trainer settings shared by the trainer benchmarks (no saving, no logging work, fp32, no checkpointing).
TRAINER_ARGS: dict[str, Any] = {
    "per_device_train_batch_size": 8,
    "learning_rate": 1e-4,
    "seed": 0,
    "report_to": "none",
    "save_strategy": "no",
    "logging_steps": 10_000,
    "disable_tqdm": True,
    "bf16": False,
    "gradient_checkpointing": False,
    "dataloader_num_workers": 0,
}


# ------------------------------------------------------------------------------------------ models, data


def make_tokenizer() -> Any:
    """A word-level fast tokenizer over :data:`WORDS` with pad and eos tokens (left padding)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials + WORDS + list("?.,!"))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", padding_side="left"
    )


def make_model(tokenizer: Any, *, hidden: int = 64, layers: int = 2, vocab: int | None = None, seed: int = 0) -> Any:
    """A Llama causal LM (``hidden`` wide, ``layers`` deep) with ``vocab`` output rows (default: the tokenizer's).

    A vocabulary larger than the tokenizer's is legitimate for timing: the extra rows are never a label.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab or len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 32),
        num_key_value_heads=1,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def save_model(directory: Path, **kwargs: Any) -> Path:
    """Save :func:`make_model` and its tokenizer to ``directory`` (loadable with ``from_pretrained``)."""
    tokenizer = make_tokenizer()
    make_model(tokenizer, **kwargs).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def make_pairs(n: int, seed: int = 0, words: tuple[int, int] = (4, 12)) -> list[dict[str, str]]:
    """``n`` preference pairs of random words; responses have ``words`` (min, max) words."""
    rng = random.Random(seed)

    def sentence(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    return [
        {"prompt": sentence(rng.randint(3, 8)) + " ?", "chosen": " " + sentence(rng.randint(*words)) + " .",
         "rejected": " " + sentence(rng.randint(*words)) + " ."}
        for _ in range(n)
    ]


# ------------------------------------------------------------------------------------------------ timing


#: Model configurations of the trainer benchmarks: ``tiny`` (the step is mostly Python and small kernels) and
#: ``head`` (V = 32000: the LM head dominates).
CONFIGS = {"tiny": {"hidden": 64, "layers": 2, "vocab": None}, "head": {"hidden": 256, "layers": 2, "vocab": 32000}}


def step_benchmark_args(doc: str, steps: int) -> Any:
    """Parse the shared options of the trainer-step benchmarks and pin the torch threads."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json-dir", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    set_threads(args.threads)
    return args


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)


def alternating(names: Sequence[str], repeat: int) -> list[str]:
    """``names`` in order on even repeats and reversed on odd ones, so no method always runs first."""
    return list(names) if repeat % 2 == 0 else list(reversed(names))


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def trainer_step_fn(trainer: Any, batch: dict[str, Any]) -> Callable[[], None]:
    """One training step of ``trainer`` on the fixed ``batch``: forward, loss, backward (``training_step``).

    The optimizer step and data loading are left out: they are the same for every method compared, and
    leaving them out makes the ratios stricter. Gradients are cleared first (not timed separately).
    """
    model = trainer.model
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(), read by training_step

    def step() -> None:
        model.zero_grad(set_to_none=True)
        trainer.training_step(model, batch)

    return step


def fixed_batch(trainer: Any, n: int) -> dict[str, Any]:
    """The first ``n`` pairs of ``trainer``'s train dataset, collated and moved like a real training batch."""
    rows = [trainer.train_dataset[i] for i in range(n)]
    return trainer._prepare_inputs(trainer.data_collator(rows))


# ------------------------------------------------------------------------------------------------ memory


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field} line (Linux only)")
    return int(match.group(1))


def release_free_memory() -> None:
    """Collect garbage and return freed heap memory to the OS (glibc ``malloc_trim``), so RSS is live memory."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def peak_rss_of(fn: Callable[[], Any]) -> tuple[int, float]:
    """``(peak RSS during fn minus RSS just before it, in bytes; wall seconds)``.

    The high-water mark is reset to the current RSS first (``/proc/self/clear_refs`` = 5), so only ``fn``'s
    own peak counts, not import or warm-up transients.
    """
    release_free_memory()
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    seconds = timed(fn)
    peak = _status_kib("VmHWM")
    return (peak - before) * 1024, seconds


#: glibc serves allocations of at least this many bytes with their own mmap and unmaps them when freed. Fixed
#: (glibc otherwise raises it as blocks are freed, up to 32 MiB) so that freed tensors leave RSS at once and
#: the high-water RSS measures live memory, not what the heap happened to retain. The same for every method.
MMAP_THRESHOLD = 1 << 20


def run_worker(script: Path, args: Sequence[str], timeout: float = 900) -> dict[str, Any]:
    """Run ``python script --worker ...args`` in a fresh process; it prints one JSON line last."""
    cmd = [sys.executable, str(script), "--worker", *args]
    env = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), **os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ output


def machine() -> str:
    """One line: CPU model, cores, torch version, threads used."""
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch thread(s)")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-markdown table (also readable in a terminal)."""
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else f"{c}" for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write_result(name: str, payload: dict[str, Any], directory: Path | None) -> None:
    """Save one benchmark's figures as ``directory/name.json`` (for ``run_all.py``), if a directory is given."""
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{name}.json").write_text(json.dumps(payload, indent=1))


def run_step_benchmark(name: str, doc: str, steps: int, measure: Callable[[str, int, int], dict[str, dict[str, float]]],
                       title: str, headers: Sequence[str], cells: Callable[[dict[str, float]], list[str]]) -> None:
    """The ``main`` of a per-config step benchmark: parse the options, ``measure(config, repeats, steps)`` for
    each config, print ``title`` (formatted with ``args``), the machine and a table whose rows are
    ``[config, method, *cells(result)]``, and save the figures for ``run_all.py``."""
    args = step_benchmark_args(doc, steps=steps)
    payload: dict[str, Any] = {"machine": machine(), "results": {},
                               "settings": {k: v for k, v in vars(args).items() if k != "json_dir"}}
    rows = []
    for config in args.configs:
        payload["results"][config] = res = measure(config, args.repeats, args.steps)
        rows += [[config, method, *cells(v)] for method, v in res.items()]
    print(f"\n{title.format(args=args)}\n{payload['machine']}\n")
    print(table(headers, rows))
    write_result(name, payload, args.json_dir)
