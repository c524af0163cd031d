"""Where the real-model world's new truth disagrees with an old one, on the shipped world's own answers (issue 31).

    python benchmarks/truth_disagreement.py [--old 05892ef] [--snapshot DIR] [--output FILE] [--examples 3]

The old truth is ``src/adadpo/bench/worlds/smollm2/tasks.py`` as of git revision ``--old`` (loaded with ``git show``
into a temporary module); the new one is the working tree's. Both score the answers a world snapshot holds
(default: the shipped one, ``adadpo.bench.worlds.smollm2.data.SHIPPED``): the held-out reference answers, the
held-out pairs' texts and the training pairs' chosen and rejected answers. Per kind of prompt it prints the
number of answers, how many scores differ, the mean quality under each truth, and for the pairs how the chosen
answer stands against the rejected one under each (truly better / tied / worse) and how many of those orders
change; then a few disagreements per kind, the largest first. Markdown on stdout (or ``--output``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = "src/adadpo/bench/worlds/smollm2/tasks.py"


def old_truth(revision: str):
    """The tasks module of ``revision``, imported from a temporary file (it needs only the standard library)."""
    source = subprocess.run(["git", "show", f"{revision}:{TASKS}"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(f"old_tasks_{revision}", f.name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def snapshot_answers(snapshot: Path, tasks_module) -> tuple[list[tuple], list[tuple]]:
    """``answers``: ``(source, task, text)``; ``pairs``: ``(source, task, chosen, rejected)``, from ``snapshot``."""
    config = json.loads((snapshot / "world.json").read_text())["config"]
    ev = json.loads((snapshot / "eval.json").read_text())
    held = [tasks_module.Task(t["kind"], t["text"], tuple(t["params"])) for t in ev["tasks"]]
    train, held_again = tasks_module.make_tasks(config["n_train_prompts"], config["n_eval_prompts"], config["seed"],
                                                tuple(config["kinds"]))
    if [t.text for t in held_again] != [t.text for t in held]:
        raise SystemExit(f"snapshot={snapshot}: its held-out prompts are not make_tasks' (other word lists?)")
    by_text = {t.text: t for t in train}
    k = config["eval_samples"]
    answers = [("reference", held[i // k], text) for i, text in enumerate(ev["reference"]["texts"])]
    pairs = [("held-out pair", held[p["prompt"]], p["chosen_text"], p["rejected_text"]) for p in ev["pairs"]]
    with open(snapshot / "train_pairs.jsonl") as f:
        for line in f:
            r = json.loads(line)
            pairs.append(("training pair", by_text[r["prompt"][-1]["content"]], r["chosen"][0]["content"],
                          r["rejected"][0]["content"]))
    answers += [(src, t, text) for src, t, c, r in pairs for text in (c, r)]
    return answers, pairs


def _order(qc: float, qr: float) -> str:
    return "better" if qc > qr else "tied" if qc == qr else "worse"


def report(old, new, answers: list[tuple], pairs: list[tuple], examples: int, revision: str) -> str:
    rows, shown = [], []
    kinds = list(new.KINDS)
    by_kind = defaultdict(list)
    for src, task, text in answers:
        by_kind[task.kind].append((src, task, text, old.quality(task, text), new.quality(task, text)))
    pair_kind = defaultdict(list)
    for src, task, c, r in pairs:
        pair_kind[task.kind].append((_order(old.quality(task, c), old.quality(task, r)),
                                     _order(new.quality(task, c), new.quality(task, r))))
    total = Counter()
    for kind in kinds + ["all"]:
        scored = [s for k in kinds for s in by_kind[k]] if kind == "all" else by_kind[kind]
        orders = [o for k in kinds for o in pair_kind[k]] if kind == "all" else pair_kind[kind]
        differ = [s for s in scored if s[3] != s[4]]
        old_o, new_o = Counter(o for o, _ in orders), Counter(n for _, n in orders)
        rows.append(f"| {kind} | {len(scored)} | {len(differ)} ({len(differ) / max(1, len(scored)):.0%}) | "
                    f"{sum(s[3] for s in scored) / max(1, len(scored)):.3f} | "
                    f"{sum(s[4] for s in scored) / max(1, len(scored)):.3f} | {len(orders)} | "
                    f"{old_o['better']} / {old_o['tied']} / {old_o['worse']} | "
                    f"{new_o['better']} / {new_o['tied']} / {new_o['worse']} | {sum(o != n for o, n in orders)} |")
        if kind != "all":
            total["differ"] += len(differ)
            seen: set = set()
            ups = sorted((s for s in differ if s[4] > s[3]), key=lambda s: (s[3] - s[4], len(s[2])))
            downs = sorted((s for s in differ if s[4] < s[3]), key=lambda s: (s[4] - s[3], len(s[2])))
            for src, task, text, q_old, q_new in [s for pair in zip(ups, downs) for s in pair] + ups + downs:
                if (task.text, text) not in seen and len(seen) < examples:  # both directions, largest first
                    seen.add((task.text, text))
                    clip = " ".join(text.split())
                    clip = clip if len(clip) <= 160 else clip[:157] + "..."
                    shown.append(f"| {kind} | {task.text} | {clip.replace('|', '/')} | {q_old:.3g} | {q_new:.3g} |")
    head = [f"# The real-model world's truth: VERSION {new.VERSION} against VERSION {old.VERSION}", "",
            f"Made by `python benchmarks/truth_disagreement.py --old {revision}`. "
            f"Old truth: `{TASKS}` at `{revision}`; new truth: the working tree's. "
            "Answers: the shipped world's held-out reference answers, held-out pairs' texts and training pairs' "
            "chosen and rejected answers (a text in two places counts twice). Pair orders: chosen truly better / "
            "tied / worse than rejected. What version 4 reads differently is listed in the docstring of "
            "`adadpo.bench.worlds.smollm2.tasks`; its hand-judged tables are `tests/test_lmworld_truth.py`.", "",
            "| kind | answers | scores differ | mean q old | mean q new | pairs | order old | order new | "
            "orders changed |", "|---|---|---|---|---|---|---|---|---|"]
    ex = ["", f"Examples (up to {examples} per kind, rises and falls in turn, largest first):", "",
          "| kind | prompt | answer | old | new |", "|---|---|---|---|---|"]
    return "\n".join(head + rows + ex + shown) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="05892ef", help="git revision of the old truth")
    parser.add_argument("--snapshot", type=Path, default=None, help="a world snapshot directory (default: shipped)")
    parser.add_argument("--examples", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    from adadpo.bench.worlds.smollm2 import tasks as new
    from adadpo.bench.worlds.smollm2.data import SHIPPED

    snapshot = args.snapshot or next(p for p in sorted(SHIPPED.iterdir()) if (p / "world.json").exists())
    old = old_truth(args.old)
    answers, pairs = snapshot_answers(snapshot, new)
    text = report(old, new, answers, pairs, args.examples, args.old)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
