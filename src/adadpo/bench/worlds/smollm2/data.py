"""The real-model world: its settings, and the cached reference samples, preference pairs and held-out set.

``build_world(config, cache_dir)``:

1. prepares the policy (:func:`adadpo.bench.worlds.smollm2.model.prepare_model`): SmolLM2-135M-Instruct by default;
2. makes disjoint training and held-out tasks (:mod:`adadpo.bench.worlds.smollm2.tasks`);
3. samples ``samples_per_prompt`` answers per training prompt from the reference model and keeps the judge's
   best and worst as chosen and rejected (on-policy pairs, as in SimPO and AdaDPO), in TRL's conversational
   format, saved as a ``datasets`` dataset on disk (so TRL's cached reference log-probs are reused by every
   run of the world);
4. samples as many answers per held-out prompt: the first ``eval_samples`` are the reference answers each
   trained policy is judged against; the held-out pairs are *truly* better and worse answers (by the truth
   program, not the judge): the best against the worst, then the second best against the second worst, while
   their true quality differs (:func:`truth_pairs`), so held-out reward accuracy reads against a known order.

Everything lands in ``cache_dir/lmworld-<config.key()>``, built in a temporary directory and renamed into
place. The judge is the benchmark's (:func:`adadpo.bench.judge.judge_prob`) with answers' word counts as
lengths and the program of :func:`adadpo.bench.worlds.smollm2.tasks.quality` as true quality.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from adadpo.bench.cache import SavedReference, build_once, default_cache_dir
from adadpo.bench.judge import best_and_worst
from adadpo.bench.worlds.smollm2.tasks import KINDS, Task, make_tasks, quality, words
from adadpo.bench.worlds.smollm2.tasks import VERSION as TASKS_VERSION

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class LMWorldConfig:
    """Everything that defines the world and its data (with the task program's version: the cache key).

    ``model``: ``smollm2-gguf`` (SmolLM2-135M-Instruct from its PyPI wheel), a Hub id or a local directory.
    Judge: ``P(a beats b) = sigmoid(tau (q_a - q_b) + eta (words_a - words_b) / length_scale)``.
    Sampling: temperature ``temperature``, at most ``max_new_tokens`` new tokens, ``samples_per_prompt``
    per prompt; the first ``eval_samples`` of a held-out prompt's samples are the reference's answers.
    """

    model: str = "smollm2-gguf"
    system: str = "You are a helpful assistant. Keep your answers short."
    kinds: tuple[str, ...] = KINDS
    n_train_prompts: int = 384
    n_eval_prompts: int = 96
    samples_per_prompt: int = 8
    eval_samples: int = 4
    eval_pairs_per_prompt: int = 2
    max_new_tokens: int = 256
    temperature: float = 0.7
    tau: float = 6.0
    eta: float = 1.0
    length_scale: float = 20.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown or not self.kinds:
            raise ValueError(f"kinds={list(self.kinds)}: expected a non-empty subset of {list(KINDS)}")
        if self.samples_per_prompt < 2:
            raise ValueError(f"samples_per_prompt={self.samples_per_prompt}: need >= 2 to pick a best and a worst")
        if not 1 <= self.eval_samples <= self.samples_per_prompt:
            raise ValueError(f"eval_samples={self.eval_samples}: need 1 <= eval_samples <= samples_per_prompt "
                             f"({self.samples_per_prompt})")
        if self.eta < 0 or self.tau <= 0 or self.length_scale <= 0 or self.temperature <= 0:
            raise ValueError(f"need tau > 0, eta >= 0, length_scale > 0, temperature > 0; got tau={self.tau}, "
                             f"eta={self.eta}, length_scale={self.length_scale}, temperature={self.temperature}")
        if not 1 <= self.eval_pairs_per_prompt <= self.samples_per_prompt // 2:
            raise ValueError(f"eval_pairs_per_prompt={self.eval_pairs_per_prompt}: need 1 <= eval_pairs_per_prompt "
                             f"<= samples_per_prompt // 2 ({self.samples_per_prompt // 2})")
        for name in ("n_train_prompts", "n_eval_prompts", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: need >= 1")

    @property
    def eval_comparisons(self) -> int:
        """Judged comparisons per evaluation: each held-out prompt's ``eval_samples`` answers."""
        return self.n_eval_prompts * self.eval_samples

    def key(self) -> str:
        """Short hash of the settings: the cache directory's name."""
        return hashlib.sha256(json.dumps({**asdict(self), "version": TASKS_VERSION}, sort_keys=True).encode()
                              ).hexdigest()[:12]


@dataclass
class World(SavedReference):
    """A built world: where the reference model is, the training pairs and the held-out set."""

    config: LMWorldConfig
    path: Path
    model_path: str
    train_pairs: list[dict]
    eval_tasks: list[Task]
    eval_reference: dict  # tokens, texts, ended: eval_samples answers per held-out prompt, prompt-major
    eval_pairs: list[dict]  # prompt index, chosen/rejected tokens, texts and true quality, reference log-probs
    stats: dict = field(default_factory=dict)

    @property
    def train_dataset_path(self) -> Path:
        return self.path / "train_dataset"

    @property
    def reference_path(self) -> str:
        """The reference model: a local directory, or a hub id when the world was built from one."""
        return self.model_path

    def held_out(self, prompts: int) -> World:
        """This world evaluated on its first ``prompts`` held-out prompts only: their tasks, their
        ``eval_samples`` reference answers each and the held-out pairs of those prompts (new lists of the same
        task, answer and pair objects). The training side is unchanged."""
        n = len(self.eval_tasks)
        if not 1 <= prompts <= n:
            raise ValueError(f"eval_prompts={prompts}: the world has {n} held-out prompts (expected 1 to {n})")
        k = self.config.eval_samples
        reference = {name: answers[: prompts * k] for name, answers in self.eval_reference.items()}
        return replace(self, eval_tasks=self.eval_tasks[:prompts], eval_reference=reference,
                       eval_pairs=[p for p in self.eval_pairs if p["prompt"] < prompts])

    def prompt_text(self, tokenizer, task: Task) -> str:
        from adadpo.bench.worlds.smollm2.policy import chat_prompt

        return chat_prompt(tokenizer, self.config.system, task.text)


def _best_worst(config: LMWorldConfig, task: Task, texts: list[str], rng: np.random.Generator) -> tuple[int, int]:
    q = np.array([quality(task, t) for t in texts])
    length = np.array([len(words(t)) for t in texts])
    return best_and_worst(config, q, length, rng)


def _stats(config: LMWorldConfig, tasks: list[Task], texts: list[str], pairs: list[dict]) -> dict:
    k = config.samples_per_prompt
    q = np.array([quality(tasks[i // k], t) for i, t in enumerate(texts)])
    n = np.array([len(words(t)) for t in texts], dtype=float)
    by_kind = {}
    for kind in config.kinds:
        idx = [i for i in range(len(texts)) if tasks[i // k].kind == kind]
        if idx:
            by_kind[kind] = {"quality": float(q[idx].mean()), "words": float(n[idx].mean())}
    qw = np.array([p["q_chosen"] for p in pairs])
    ql = np.array([p["q_rejected"] for p in pairs])
    nw = np.array([p["words_chosen"] for p in pairs])
    nl = np.array([p["words_rejected"] for p in pairs])
    groups = {}
    for name, mask in (("better", qw > ql), ("tied", qw == ql), ("worse", qw < ql)):
        groups[name] = {"pairs": int(mask.sum()), "share": float(mask.mean()),
                        "chosen_longer": float((nw[mask] > nl[mask]).mean()) if mask.any() else 0.0,
                        "words_diff": float((nw[mask] - nl[mask]).mean()) if mask.any() else 0.0}
    return {
        "samples": len(texts), "quality": float(q.mean()), "words": float(n.mean()), "words_std": float(n.std()),
        "corr_quality_words": float(np.corrcoef(q, n)[0, 1]) if q.std() > 0 and n.std() > 0 else 0.0,
        "pairs": len(pairs), "chosen_better": float((qw > ql).mean()), "chosen_worse": float((qw < ql).mean()),
        "chosen_longer": float((nw > nl).mean()), "q_chosen": float(qw.mean()), "q_rejected": float(ql.mean()),
        "words_chosen": float(nw.mean()), "words_rejected": float(nl.mean()), "by_kind": by_kind,
        "truth_groups": groups,
    }


def truth_pairs(q: list[float], texts: list[str], n_pairs: int) -> list[tuple[int, int]]:
    """Up to ``n_pairs`` disjoint ``(better, worse)`` index pairs of one prompt's samples by true quality: the
    best against the worst, the second best against the second worst, ..., while the better one is strictly
    better (ties in quality keep sample order, so the choice is deterministic)."""
    order = sorted(range(len(q)), key=lambda i: (-q[i], i))
    out = []
    for j in range(n_pairs):
        hi, lo = order[j], order[len(order) - 1 - j]
        if hi == lo or q[hi] <= q[lo] or texts[hi] == texts[lo]:
            break
        out.append((hi, lo))
    return out


def sampling_settings(config: LMWorldConfig) -> dict:
    """What the world's samples depend on: two worlds that agree on these sampled the same answers, whatever
    their truth program and judge (so one's samples can build the other: :func:`build_world` ``samples_from``)."""
    keys = ("model", "system", "kinds", "n_train_prompts", "n_eval_prompts", "samples_per_prompt",
            "max_new_tokens", "temperature", "seed")
    return {k: getattr(config, k) for k in keys} | {"kinds": list(config.kinds)}


def _save_samples(path: Path, config: LMWorldConfig, train, held) -> None:
    """Every sampled answer of the world (training and held-out prompts, prompt-major), gzipped JSON."""
    with gzip.open(path, "wt") as f:
        json.dump({"sampling": sampling_settings(config), "train": asdict(train), "held_out": asdict(held)}, f)


def load_samples(world_dir: str | os.PathLike, config: LMWorldConfig):
    """The training and held-out :class:`~adadpo.bench.worlds.smollm2.policy.Samples` kept in ``world_dir``
    (a built world or a snapshot), after checking they were sampled with ``config``'s sampling settings."""
    from adadpo.bench.worlds.smollm2.policy import Samples

    path = Path(world_dir) / SAMPLES_FILE
    if not path.exists():
        raise FileNotFoundError(f"samples_from={str(world_dir)!r}: no {SAMPLES_FILE} there (a world built before "
                                "its samples were kept cannot give them)")
    with gzip.open(path, "rt") as f:
        data = json.load(f)
    want = sampling_settings(config)
    if data["sampling"] != want:
        diff = sorted(k for k in want if data["sampling"].get(k) != want[k])
        raise ValueError(f"samples_from={str(world_dir)!r}: sampled with other settings ({', '.join(diff)}), "
                         "so its answers are not this world's")
    return Samples(**data["train"]), Samples(**data["held_out"])


def _build(config: LMWorldConfig, out: Path, model_path: str, progress: Progress | None,
           journal_dir: Path | None = None, samples_from: Path | None = None) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from adadpo.bench.worlds.smollm2.policy import chat_prompt, messages, response_logps, sample

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    train_tasks, eval_tasks = make_tasks(config.n_train_prompts, config.n_eval_prompts, config.seed, config.kinds)
    k = config.samples_per_prompt
    gen = np.random.default_rng(config.seed + 2)

    def stage(name: str):
        return (lambda i, n: progress(name, i, n)) if progress else None

    if samples_from is not None:
        train, held = load_samples(samples_from, config)
    else:
        with torch.random.fork_rng():
            train = sample(model, tokenizer, [chat_prompt(tokenizer, config.system, t.text) for t in train_tasks],
                           n=k, max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                           seed=config.seed + 3, progress=stage("sampling training answers"),
                           journal=journal_dir / "train.jsonl" if journal_dir else None)
            held = sample(model, tokenizer, [chat_prompt(tokenizer, config.system, t.text) for t in eval_tasks],
                          n=k, max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                          seed=config.seed + 4, progress=stage("sampling held-out answers"),
                          journal=journal_dir / "held_out.jsonl" if journal_dir else None)
    _save_samples(out / SAMPLES_FILE, config, train, held)

    rows = []
    for i, task in enumerate(train_tasks):
        texts = train.texts[i * k : (i + 1) * k]
        best, worst = _best_worst(config, task, texts, gen)
        if texts[best] == texts[worst]:
            continue
        rows.append({"prompt": messages(config.system, task.text),
                     "chosen": [{"role": "assistant", "content": texts[best]}],
                     "rejected": [{"role": "assistant", "content": texts[worst]}],
                     "kind": task.kind, "q_chosen": quality(task, texts[best]), "q_rejected": quality(task, texts[worst]),
                     "words_chosen": len(words(texts[best])), "words_rejected": len(words(texts[worst]))})
    _save_dataset(rows, out)

    e = config.eval_samples
    ref = {"tokens": [], "texts": [], "ended": []}
    pairs = []
    for i, task in enumerate(eval_tasks):
        span = range(i * k, (i + 1) * k)
        for j in list(span)[:e]:
            ref["tokens"].append(held.tokens[j])
            ref["texts"].append(held.texts[j])
            ref["ended"].append(held.ended[j])
        texts = [held.texts[j] for j in span]
        q = [quality(task, t) for t in texts]
        for best, worst in truth_pairs(q, texts, config.eval_pairs_per_prompt):
            pairs.append({"prompt": i, "chosen": held.tokens[i * k + best], "rejected": held.tokens[i * k + worst],
                          "chosen_text": texts[best], "rejected_text": texts[worst],
                          "q_chosen": q[best], "q_rejected": q[worst]})
    if progress:
        progress("scoring held-out pairs", 0, 1)
    prompts = [chat_prompt(tokenizer, config.system, eval_tasks[p["prompt"]].text) for p in pairs]
    for side in ("chosen", "rejected"):
        logps = response_logps(model, tokenizer, prompts, [p[side] for p in pairs])
        for p, lp in zip(pairs, logps.tolist()):
            p[f"ref_{side}_logps"] = lp
    if progress:
        progress("scoring held-out pairs", 1, 1)

    with open(out / "train_pairs.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    all_tasks = train_tasks + eval_tasks
    all_texts = train.texts + held.texts
    (out / "eval.json").write_text(json.dumps({
        "tasks": [asdict(t) for t in eval_tasks], "reference": ref, "pairs": pairs,
    }))
    stats = _stats(config, all_tasks, all_texts, rows)
    (out / "world.json").write_text(json.dumps({"config": asdict(config), "model_path": model_path, "stats": stats},
                                               indent=2))


def _save_dataset(rows: list[dict], out: Path) -> None:
    """The training pairs in TRL's conversational format, as a ``datasets`` dataset on disk."""
    from datasets import Dataset

    Dataset.from_list([{c: r[c] for c in ("prompt", "chosen", "rejected")} for r in rows]).save_to_disk(
        out / "train_dataset")


#: Worlds shipped with adadpo, one directory per key: the files a build writes (the model's samples, the
#: pairs, the held-out set), so the committed benchmark's world is the same on every machine (a rebuild on
#: another CPU samples an equivalent but different world: one rounding difference changes a sampled token).
SHIPPED = Path(__file__).parent / "snapshots"
#: Every answer the world sampled (:func:`load_samples`); worlds built before it was kept lack it.
SAMPLES_FILE = "samples.json.gz"
SNAPSHOT_FILES = ("world.json", "eval.json", "train_pairs.jsonl", SAMPLES_FILE)


def save_snapshot(world: World, directory: str | os.PathLike = SHIPPED) -> Path:
    """Write ``world``'s files into ``directory/<key>`` (without the machine's model path); returns it."""
    dest = Path(directory) / world.config.key()
    dest.mkdir(parents=True, exist_ok=True)
    for name in SNAPSHOT_FILES[1:]:
        if (world.path / name).exists():
            shutil.copyfile(world.path / name, dest / name)
    meta = json.loads((world.path / "world.json").read_text())
    (dest / "world.json").write_text(json.dumps({**meta, "model_path": world.config.model}, indent=2))
    return dest


def _from_snapshot(snapshot: Path, out: Path, model_path: str) -> None:
    """A build from a shipped snapshot: its files, this machine's model path, the dataset made from the pairs."""
    for name in SNAPSHOT_FILES[1:]:
        if (snapshot / name).exists():  # the samples: only in snapshots made since they were kept
            shutil.copyfile(snapshot / name, out / name)
    meta = json.loads((snapshot / "world.json").read_text())
    (out / "world.json").write_text(json.dumps({**meta, "model_path": model_path}, indent=2))
    with open(snapshot / "train_pairs.jsonl") as f:
        _save_dataset([json.loads(line) for line in f], out)


def build_world(config: LMWorldConfig, cache_dir: str | os.PathLike | None = None,
                progress: Progress | None = None, samples_from: str | os.PathLike | None = None) -> World:
    """Load the world for ``config`` from ``cache_dir`` (default ``$ADADPO_CACHE`` or ``~/.cache/adadpo``),
    building it first if absent: from the shipped snapshot of this key (:data:`SHIPPED`) when there is one
    (seconds), else from the samples kept in ``samples_from`` (a built world or snapshot with the same sampling
    settings: a new truth program or judge without sampling again), else by sampling (SmolLM2 on 2 CPU cores:
    about 35 minutes alone at 48 new tokens, 54 at 256 while other jobs ran; a killed build resumes its sampling from
    ``cache_dir/.lmworld-<key>.samples``)."""
    from adadpo.bench.worlds.smollm2.model import prepare_model

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / f"lmworld-{config.key()}"
    if not (path / "world.json").exists():
        if progress:
            progress("preparing the model", 0, 1)
        model_path = prepare_model(config.model, root)
        if progress:
            progress("preparing the model", 1, 1)
        snapshot = SHIPPED / config.key()
        if (snapshot / "world.json").exists():
            build_once(path, "world.json", lambda tmp: _from_snapshot(snapshot, tmp, model_path))
        else:
            # samples are journalled beside the world, so a killed build resumes its sampling (the longest part)
            journal = root / f".{path.name}.samples"
            journal.mkdir(parents=True, exist_ok=True)
            source = Path(samples_from) if samples_from is not None else None
            build_once(path, "world.json", lambda tmp: _build(config, tmp, model_path, progress, journal, source))
            shutil.rmtree(journal, ignore_errors=True)
    meta = json.loads((path / "world.json").read_text())
    data = json.loads((path / "eval.json").read_text())
    with open(path / "train_pairs.jsonl") as f:
        train_pairs = [json.loads(line) for line in f]
    return World(
        config=config, path=path, model_path=meta["model_path"], train_pairs=train_pairs,
        eval_tasks=[Task(t["kind"], t["text"], tuple(t["params"])) for t in data["tasks"]],
        eval_reference=data["reference"], eval_pairs=data["pairs"], stats=meta["stats"],
    )
