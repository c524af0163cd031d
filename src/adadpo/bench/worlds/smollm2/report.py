"""Before/after answers of a real-model sweep, side by side: for a few held-out prompts, the reference's answer
and each method's (lowest seed, first cell), with their true quality and word counts."""

from __future__ import annotations

import textwrap

from adadpo.bench.worlds.smollm2.tasks import words


def _first_runs(rows: list[dict], methods: list[str]) -> dict[str, dict]:
    out = {}
    for m in methods:
        mine = [r for r in rows if r["method"] == m and r.get("examples")]
        if mine:
            out[m] = min(mine, key=lambda r: (r["seed"], r["beta"], r["learning_rate"]))
    return out


def examples_text(rows: list[dict], methods: list[str], n: int = 3, width: int = 100) -> str:
    """Plain text for a terminal: per prompt, the reference's answer and each method's, wrapped."""
    runs = _first_runs(rows, methods)
    if not runs:
        return ""
    first = next(iter(runs.values()))
    lines = []
    for i, ex in enumerate(first["examples"][:n]):
        lines.append(f"[{i + 1}] {ex['prompt']}")
        entries = [("reference", ex["reference"], ex["ref_quality"])]
        entries += [(m, r["examples"][i]["answer"], r["examples"][i]["quality"]) for m, r in runs.items()]
        for who, answer, q in entries:
            head = f"  {who} (q={q:.2f}, {len(words(answer))} words): "
            body = textwrap.fill(" ".join(answer.split()) or "(empty)", width=width, initial_indent=head,
                                 subsequent_indent=" " * 6)
            lines.append(body)
        lines.append("")
    return "\n".join(lines).rstrip()


def examples_markdown(rows: list[dict], methods: list[str], n: int = 6) -> str:
    """A Markdown section: one table per held-out prompt."""
    runs = _first_runs(rows, methods)
    if not runs:
        return ""
    first = next(iter(runs.values()))
    lines = ["## Answers before and after training", "",
             f"Held-out prompts; the reference's answer and each method's first answer (seed {first['seed']}, "
             f"β={first['beta']:g}, learning rate {first['learning_rate']:g}); q is the true quality.", ""]
    for i, ex in enumerate(first["examples"][:n]):
        lines += [f"**{ex['prompt']}**", "", "| who | q | words | answer |", "|---|---|---|---|"]
        entries = [("reference", ex["reference"], ex["ref_quality"])]
        entries += [(m, r["examples"][i]["answer"], r["examples"][i]["quality"]) for m, r in runs.items()]
        for who, answer, q in entries:
            cell = " ".join(answer.split()).replace("|", "\\|") or "(empty)"
            lines.append(f"| {who} | {q:.2f} | {len(words(answer))} | {cell} |")
        lines.append("")
    return "\n".join(lines)
