"""Every method measured against the untrained reference, evaluated with the same evaluation seed.

A sweep with ``untrained: true`` has one ``method: "untrained"`` row per seed: the reference policy itself,
judged against the reference's answers with the seed's evaluation sampling, exactly as a trained run is.
For a trained run in cell ``c`` with seed ``s``, the paired difference is
``d(metric) = metric(run) - metric(untrained, s)``; its 95% t-interval over seeds says whether training
improved on not training at all. (0.5 is not the null for a win rate: the untrained model's own TQ against
the reference's answers moves with the evaluation seed.)

The gate (:func:`gate`): the best cell of a plain method by mean ``d TQ`` must have an interval above zero
and a held-out reward accuracy (on truly-better pairs) above what length alone gets on the same pairs: the
better of "fewer tokens wins" and "more tokens wins" (each row's ``length_only``). Rows written before runs
recorded that bar are held to the old fixed bar, 0.6, and the gate says so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from adadpo.bench.run import UNTRAINED
from adadpo.bench.stats import Cell, Interval, by_cell, cell_label, cell_of, cell_order, compare, interval, value

#: Metrics reported as paired differences from the untrained model, with their labels.
DELTAS = {"tq": "ΔTQ", "lc": "ΔLC", "wr": "ΔWR", "quality": "Δ true quality", "length": "Δ words"}
#: Metrics reported as they are (they are already relative to the reference).
ABSOLUTE = {"reward_accuracy": "reward acc (truly better)", "kl": "KL"}
GATE_ACCURACY = 0.6


def untrained_rows(rows: list[dict]) -> dict[int, dict]:
    """``{seed: row}`` of the untrained reference's evaluations."""
    return {r["seed"]: r for r in rows if r["method"] == UNTRAINED}


def paired(rows: list[dict], method: str, metric: str) -> dict[Cell, Interval]:
    """Per cell of ``method``: the interval over seeds of ``metric(run) - metric(untrained, same seed)``;
    seeds without an untrained row are left out."""
    base = untrained_rows(rows)
    out = {}
    for cell, per_seed in by_cell(rows, method, metric).items():
        diffs = [v - value(base[s], metric) for s, v in sorted(per_seed.items()) if s in base]
        if diffs:
            out[cell] = interval(diffs)
    return out


def pooled(rows: list[dict], method: str, metric: str) -> Interval:
    """The paired differences of every run of ``method`` (all cells, all seeds) in one interval."""
    base = untrained_rows(rows)
    return interval([value(r, metric) - value(base[r["seed"]], metric)
                     for r in rows if r["method"] == method and r["seed"] in base])


def length_bar(rows: list[dict]) -> dict[str, Any]:
    """The reward accuracy length alone gets on the held-out pairs of ``rows``: ``{"bar", "rule", "fewer",
    "more"}`` with ``bar`` the better of the two length-only rankers and ``rule`` which one; ``rule="fixed"``
    and ``bar`` :data:`GATE_ACCURACY` when no row recorded it (rows of an older version)."""
    found = [r["length_only"] for r in rows if r.get("length_only")]
    if not found:
        return {"bar": GATE_ACCURACY, "rule": "fixed", "fewer": None, "more": None}
    fewer, more = (float(np.mean([f[k] for f in found])) for k in ("fewer", "more"))
    return {"bar": max(fewer, more), "rule": "fewer" if fewer >= more else "more", "fewer": fewer, "more": more}


def gate(rows: list[dict], method: str) -> dict[str, Any] | None:
    """``method``'s best cell by mean ``d TQ``: its interval, its mean held-out reward accuracy on truly-better
    pairs, the length-only bar of those pairs (:func:`length_bar`), and whether the cell clears the gate
    (interval above 0 and accuracy above the bar)."""
    cells = paired(rows, method, "tq")
    if not cells:
        return None
    cell = max(cells, key=lambda c: cells[c].mean)
    iv = cells[cell]
    acc = float(np.mean(list(by_cell(rows, method, "reward_accuracy")[cell].values())))
    bar = length_bar([r for r in rows if r["method"] == method and cell_of(r) == cell])
    return {"method": method, "cell": cell, "label": cell_label(cell), "d_tq": iv.mean, "lo": iv.lo, "hi": iv.hi,
            "seeds": iv.n, "reward_accuracy": acc, "bar": bar["bar"], "bar_rule": bar["rule"],
            "length_fewer": bar["fewer"], "length_more": bar["more"],
            "passed": bool(iv.n >= 2 and iv.lo > 0 and acc > bar["bar"])}


def bar_text(g: dict[str, Any]) -> str:
    """How a gate's bar reads: the better length-only ranker with both rankers' accuracies, or the old fixed bar."""
    if g.get("bar_rule", "fixed") == "fixed":
        return f"the old fixed bar {GATE_ACCURACY} (these rows recorded no length-only bar)"
    return (f"length alone {g['bar']:.3f} (fewer tokens wins {g['length_fewer']:.3f}, more tokens wins "
            f"{g['length_more']:.3f})")


def _fmt(iv: Interval, digits: int = 3) -> str:
    if iv.n == 0:
        return ""
    if iv.n < 2 or math.isnan(iv.lo):
        return f"{iv.mean:+.{digits}f}"
    return f"{iv.mean:+.{digits}f} [{iv.lo:+.{digits}f}, {iv.hi:+.{digits}f}]"


def summary(rows: list[dict], methods: list[str]) -> dict[str, Any]:
    """Plain data for ``summary.json``: the untrained rows' own values, each method's pooled and per-cell
    paired differences, and the gate of each plain method."""
    base = untrained_rows(rows)
    out: dict[str, Any] = {
        "untrained": {str(s): {k: r[k] for k in (*DELTAS, "eval_comparisons") if k in r}
                      for s, r in sorted(base.items())},
        "pooled": {}, "cells": defaultdict(dict), "gates": {},
    }
    for m in methods:
        out["pooled"][m] = {k: {"mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "n": iv.n}
                            for k in DELTAS for iv in [pooled(rows, m, k)]}
        for k in DELTAS:
            for cell, iv in paired(rows, m, k).items():
                out["cells"][m].setdefault(cell_label(cell), {})[k] = {"mean": iv.mean, "lo": iv.lo, "hi": iv.hi}
        g = gate(rows, m)
        if g and not any(r["method"] == m and r.get("balance") is not None for r in rows):
            out["gates"][m] = {k: v for k, v in g.items() if k != "cell"}
    out["cells"] = dict(out["cells"])
    return out


def markdown(rows: list[dict], methods: list[str], comparisons: list[tuple[str, str]]) -> str:
    """The report's section on the untrained model: its own values per seed, every method's pooled and
    per-cell paired differences with intervals, the gate, and AdaX vs X beside them."""
    base = untrained_rows(rows)
    if not base:
        return ""
    seeds = sorted(base)
    lines = ["## Against the untrained model (paired on the evaluation seed)", "",
             "Each trained run minus the untrained reference evaluated with the same seed (same held-out prompts, "
             "same reference answers, same sampling seed); mean over seeds with a 95% t-interval. An interval "
             "above zero means training improved on not training at all.", "",
             "| untrained, seed | " + " | ".join(k.upper() if k in ("tq", "lc", "wr") else
                                                  {"quality": "true quality", "length": "words"}[k]
                                                  for k in DELTAS) + " | judged comparisons |",
             "|---|" + "---|" * (len(DELTAS) + 1)]
    for s in seeds:
        r = base[s]
        lines.append(f"| {s} | " + " | ".join(f"{value(r, k):.3f}" for k in DELTAS)
                     + f" | {r.get('eval_comparisons', '')} |")
    lines += ["", "All runs of each method pooled (every cell and seed as if independent draws; where the report has "
                  "the study's statistics, their interval over seeds is the primary one):", "",
              "| method | " + " | ".join(DELTAS.values()) + " |", "|---|" + "---|" * len(DELTAS)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(_fmt(pooled(rows, m, k)) for k in DELTAS) + " |")
    lines += ["", "Per cell:", "",
              "| cell | method | " + " | ".join(DELTAS.values()) + " | " + " | ".join(ABSOLUTE.values()) + " |",
              "|---|---|" + "---|" * (len(DELTAS) + len(ABSOLUTE))]
    cells = sorted({cell_of(r) for r in rows if r["method"] != UNTRAINED}, key=cell_order)
    for cell in cells:
        for m in methods:
            deltas = [paired(rows, m, k).get(cell) for k in DELTAS]
            if not any(deltas):
                continue
            absolute = [by_cell(rows, m, k).get(cell) for k in ABSOLUTE]
            lines.append(f"| {cell_label(cell)} | {m} | " + " | ".join(_fmt(d) if d else "" for d in deltas)
                         + " | " + " | ".join(interval(list(a.values())).fmt() if a else "" for a in absolute) + " |")
    plain = [m for m in methods if not any(r["method"] == m and r.get("balance") is not None for r in rows)]
    gates = [g for g in (gate(rows, m) for m in plain) if g]
    if gates:
        lines += ["", "**Gate** (the plain method's best cell must improve on the untrained model: ΔTQ interval "
                      "above 0, and held-out reward accuracy on truly-better pairs above what ranking the same pairs "
                      "by length alone gets, the better of fewer tokens wins and more tokens wins):", ""]
        for g in gates:
            spread = (f"[{g['lo']:+.3f}, {g['hi']:+.3f}] over {g['seeds']} seeds" if g["seeds"] >= 2
                      else f"over {g['seeds']} seed (no interval yet)")
            lines.append(f"- {g['method']}, {g['label']}: ΔTQ {g['d_tq']:+.3f} {spread}, reward accuracy "
                         f"{g['reward_accuracy']:.3f} against {bar_text(g)}: "
                         f"**{'passed' if g['passed'] else 'not passed'}**")
    if comparisons:
        lines += ["", "Balanced vs plain on the same cell and seed (ΔTQ of each, and their difference):", "",
                  "| comparison | ΔTQ plain | ΔTQ balanced | balanced - plain, TQ | balanced - plain, LC |",
                  "|---|---|---|---|---|"]
        for b, c in comparisons:
            lines.append(f"| {c} vs {b} | {_fmt(pooled(rows, b, 'tq'))} | {_fmt(pooled(rows, c, 'tq'))} | "
                         f"{_fmt(compare(rows, b, c, 'tq').pooled)} | {_fmt(compare(rows, b, c, 'lc').pooled)} |")
        for b, c in comparisons:
            lines += ["", *head_to_head(rows, b, c)]
    return "\n".join(lines) + "\n"


def head_to_head(rows: list[dict], plain: str, balanced: str) -> list[str]:
    """Markdown lines: per cell, how many seeds each method has, each one's ΔTQ over the untrained model,
    ``balanced - plain`` on TQ and LC paired on cell and seed, and both methods' mean answer length; then all
    runs pooled and how many cells have the balanced form ahead on TQ by the mean."""
    d_plain, d_bal = paired(rows, plain, "tq"), paired(rows, balanced, "tq")
    tq, lc = compare(rows, plain, balanced, "tq"), compare(rows, plain, balanced, "lc")
    n_plain, n_bal = by_cell(rows, plain, "tq"), by_cell(rows, balanced, "tq")
    words = {m: by_cell(rows, m, "length") for m in (plain, balanced)}

    def fmt(iv: Interval | None) -> str:
        return "" if iv is None else _fmt(iv) + (" (1 seed)" if iv.n == 1 else "")

    def mean_words(m: str, cell: Any) -> str:
        w = list(words[m].get(cell, {}).values())
        return f"{np.mean(w):.1f}" if w else "-"

    lines = [f"{balanced} vs {plain} per cell ({balanced} - {plain} paired on cell and seed):", "",
             f"| cell | seeds {plain}/{balanced} | {plain} ΔTQ | {balanced} ΔTQ | {balanced} - {plain}, TQ | "
             f"{balanced} - {plain}, LC | words {plain} / {balanced} |", "|---|---|---|---|---|---|---|"]
    for cell in sorted(set(d_plain) | set(d_bal), key=cell_order):
        lines.append(f"| {cell_label(cell)} | {len(n_plain.get(cell, {}))}/{len(n_bal.get(cell, {}))} | "
                     f"{fmt(d_plain.get(cell))} | {fmt(d_bal.get(cell))} | {fmt(tq.cells.get(cell))} | "
                     f"{fmt(lc.cells.get(cell))} | {mean_words(plain, cell)} / {mean_words(balanced, cell)} |")
    lines.append(f"| all runs | | {fmt(pooled(rows, plain, 'tq'))} | {fmt(pooled(rows, balanced, 'tq'))} | "
                 f"{fmt(tq.pooled)} | {fmt(lc.pooled)} | |")
    ahead = sum(iv.mean > 0 for iv in tq.cells.values())
    lines += ["", f"{balanced} ahead of {plain} on TQ by the mean in {ahead} of {len(tq.cells)} cells with both."]
    return lines
