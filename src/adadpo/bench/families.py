"""Several grids side by side, each measured against the untrained model: one row per loss family.

Each grid is the output directory of an ``adadpo sweep`` with ``untrained: true`` and one plain-vs-balanced
comparison (``summary.json`` with ``vs_untrained``, ``comparisons`` and, for the real-model world, the study's
statistics in ``evidence``: :mod:`adadpo.bench.evidence_report`). Per family, the primary table reads

- ``ΔTQ`` of each form, ``TQ(run) - TQ(untrained, same seed)``: per seed the mean over cells, then a 95%
  t-interval over seeds;
- ``balanced - plain`` on TQ (per-seed interval, bootstrap over prompts and seeds from the per-comparison
  records, sign counts over cells) and on LC (per-seed interval, sign counts);
- ``Δ words`` of each form, and the plain form's gate (best cell: ΔTQ interval above 0 and held-out reward
  accuracy on truly-better pairs above what length alone gets on them).

Below it: best versus best, ΔTQ per kind of prompt, ``ended`` per family, the length left in LC (table and
figure), and the earlier interval pooled over cells x seeds (kept for comparison; not the primary one).

``python -m adadpo.bench.families OUT_DIR GRID_DIR...`` writes ``OUT_DIR/families.md`` (the tables),
``OUT_DIR/families.png`` (the primary intervals as a forest plot) and ``OUT_DIR/families_lc_bias.png``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adadpo.bench.evidence_report import NO_RECORDS, UNSPLIT, fmt, less_length_left, plot_lc_bias, sign_text
from adadpo.bench.paired import GATE_ACCURACY
from adadpo.plotting import figure, save


@dataclass(frozen=True)
class Family:
    """One grid's plain method, its balanced form and the grid's ``summary.json``."""

    grid: str
    plain: str
    balanced: str
    summary: dict[str, Any]
    path: Path | None = None  # the grid's directory

    def pooled(self, method: str, metric: str) -> dict[str, float]:
        """``{"mean", "lo", "hi", "n"}`` of ``metric(run) - metric(untrained, same seed)`` over ``method``'s runs."""
        return self.summary["vs_untrained"]["pooled"][method][metric]

    def diff(self, metric: str) -> dict[str, Any]:
        """The summary's ``balanced - plain`` comparison on ``metric`` (paired on cell and seed)."""
        return next(c for c in self.summary["comparisons"]
                    if (c["base"], c["cand"], c["metric"]) == (self.plain, self.balanced, metric))

    @property
    def evidence(self) -> dict[str, Any] | None:
        """The grid's study statistics (``summary.json``'s ``evidence``), ``None`` for a summary without them."""
        return self.summary.get("evidence")

    def study(self, method: str | None, metric: str) -> dict[str, Any] | None:
        """The evidence entry of ``method`` against the untrained model on ``metric``, or with ``method=None``
        of ``balanced - plain`` (``per_seed``, ``signs``, ``bootstrap`` for TQ)."""
        e = self.evidence
        if e is None:
            return None
        if method is not None:
            return e["methods"].get(method, {}).get(metric)
        c = self.comparison()
        return None if c is None else c.get(metric)

    def comparison(self) -> dict[str, Any] | None:
        """The evidence entry of ``balanced - plain`` (best versus best and per kind included), if any."""
        e = self.evidence
        return None if e is None else next(
            (c for c in e["comparisons"] if (c["plain"], c["balanced"]) == (self.plain, self.balanced)), None)


def load(result_dirs: Sequence[str | Path]) -> list[Family]:
    """The families of ``result_dirs``, in the given order; a clear error for a directory that is not a finished
    plain-vs-balanced grid measured against the untrained model."""
    families = []
    for d in result_dirs:
        path = Path(d) / "summary.json"
        if not path.is_file():
            raise ValueError(f"{d}: no summary.json (expected the output directory of a finished `adadpo sweep`)")
        s = json.loads(path.read_text())
        if "vs_untrained" not in s:
            raise ValueError(f"{d}: summary.json has no 'vs_untrained' section (expected a sweep run with "
                             "`untrained: true`, so that every method is paired with the untrained model)")
        pairs = list(dict.fromkeys((c["base"], c["cand"]) for c in s["comparisons"]))
        if len(pairs) != 1:
            raise ValueError(f"{d}: expected exactly one plain-vs-balanced comparison, found {len(pairs)}: {pairs}")
        families.append(Family(Path(d).name, *pairs[0], s, Path(d)))
    return families


def _interval(mean: float | None, lo: float | None, hi: float | None) -> str:
    """``+m [+lo, +hi]``; a bound that summary.json holds as null (one run: no interval) gives the mean alone."""
    if mean is None:
        return "n/a"
    if lo is None or hi is None:
        return f"{mean:+.3f} (no interval: one run)"
    return f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _ci(iv: dict[str, float]) -> str:
    return _interval(iv["mean"], iv["lo"], iv["hi"])


def _diff_ci(c: dict[str, Any]) -> str:
    return _interval(c["pooled_diff"], c["pooled_lo"], c["pooled_hi"])


def _gate(f: Family) -> str:
    g = f.summary["vs_untrained"]["gates"].get(f.plain)
    if g is None:
        return "n/a"
    verdict = "passes" if g["passed"] else "does not pass"
    rule = g.get("bar_rule", "fixed")
    bar = (f"fixed bar {GATE_ACCURACY}" if rule == "fixed" else f"length alone {g['bar']:.3f} ({rule} tokens wins)")
    return (f"{g['label']}: {_interval(g['d_tq'], g['lo'], g['hi'])}, acc {g['reward_accuracy']:.3f} vs {bar} "
            f"({verdict})")


def families_table(result_dirs: Sequence[str | Path]) -> str:
    """The primary Markdown table: one row per grid (see the module docstring for the columns)."""
    return _table(load(result_dirs))


def _study(entry: dict[str, Any] | None, key: str = "per_seed", digits: int = 3) -> str:
    if entry is None:
        return MISSING
    if key == "bootstrap" and entry.get("bootstrap") is None:
        return NO_RECORDS
    return fmt(entry.get(key), digits)


#: What a cell says for a grid whose summary predates the study's statistics.
MISSING = "n/a (no study statistics in summary.json)"


def _table(families: list[Family]) -> str:
    lines = ["| grid | plain / balanced | runs each | ΔTQ plain | ΔTQ balanced | balanced - plain, TQ "
             "| TQ, bootstrap | TQ, cells | balanced - plain, LC | LC, cells | Δ words plain / balanced "
             "| gate: plain's best cell, ΔTQ, reward acc vs bar |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in families:
        tq, lc = f.study(None, "tq"), f.study(None, "lc")
        words = [f.study(m, "length") for m in (f.plain, f.balanced)]
        lines.append(
            f"| {f.grid} | {f.plain} / {f.balanced} | {f.pooled(f.plain, 'tq')['n']} "
            f"| {_study(f.study(f.plain, 'tq'))} | {_study(f.study(f.balanced, 'tq'))} | {_study(tq)} "
            f"| {_study(tq, 'bootstrap')} | {sign_text(tq['signs']) if tq else MISSING} | {_study(lc)} "
            f"| {sign_text(lc['signs']) if lc else MISSING} "
            f"| {' / '.join(_words(w['per_seed']['mean']) if w else '-' for w in words)} | {_gate(f)} |")
    return "\n".join(lines)


def pooled_table(families: list[Family]) -> str:
    """The earlier table: every interval pooled over cells x seeds as if they were independent draws."""
    lines = ["| grid | plain / balanced | runs each | ΔTQ plain | ΔTQ balanced | balanced - plain, TQ "
             "| balanced - plain, LC | balanced ahead on TQ (cells; W/T/L) | Δ words plain / balanced "
             "| plain's best cell: ΔTQ, reward acc (gate) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for f in families:
        tq = f.diff("tq")
        ahead = round(tq["share_higher"] * tq["cells"])
        lines.append(
            f"| {f.grid} | {f.plain} / {f.balanced} | {f.pooled(f.plain, 'tq')['n']} "
            f"| {_ci(f.pooled(f.plain, 'tq'))} | {_ci(f.pooled(f.balanced, 'tq'))} | {_diff_ci(tq)} "
            f"| {_diff_ci(f.diff('lc'))} | {ahead} of {tq['cells']} ({tq['wins']}/{tq['ties']}/{tq['losses']}) "
            f"| {_words(f.pooled(f.plain, 'length')['mean'])} / {_words(f.pooled(f.balanced, 'length')['mean'])} "
            f"| {_gate(f)} |")
    return "\n".join(lines)


def best_vs_best_table(families: list[Family]) -> str:
    """Each form's best cell chosen on the even held-out prompts, reported on the odd ones (by TQ and by LC)."""
    lines = ["| grid | by | plain's best cell | balanced's best cell | plain Δ | balanced Δ | balanced - plain "
             "| bootstrap |", "|---|---|---|---|---|---|---|---|"]
    for f in families:
        c = f.comparison()
        for metric in ("tq", "lc"):
            b = None if c is None else c["best_vs_best"].get(metric)
            if b is None:
                why = MISSING if c is None else NO_RECORDS if c.get("splits", True) else UNSPLIT
                lines.append(f"| {f.grid} | {metric.upper()} | {why} | | | | | |")
                continue
            delta = b["delta"] or {}
            boot = fmt(b["bootstrap"]) if b["bootstrap"] else "(TQ only)"
            lines.append(f"| {f.grid} | {metric.upper()} | {b['cells'][f.plain]} | {b['cells'][f.balanced]} "
                         f"| {fmt(delta.get(f.plain))} | {fmt(delta.get(f.balanced))} | {fmt(b['diff'])} | {boot} |")
    return "\n".join(lines)


def per_kind_table(families: list[Family]) -> str:
    """ΔTQ per kind of prompt: per family, each form over the untrained model and balanced - plain (per-seed
    intervals), one column per kind."""
    found = [(f, f.comparison()["per_kind"]) for f in families if f.comparison() and f.comparison()["per_kind"]]
    if not found:
        return f"{NO_RECORDS.capitalize()} in any grid: no ΔTQ per kind of prompt."
    kinds = list(dict.fromkeys(k for _, per in found for k in per))
    lines = ["| grid | form | " + " | ".join(f"{k} ({found[0][1].get(k, {}).get('prompts', '-')})" for k in kinds)
             + " |", "|---|---|" + "---|" * len(kinds)]
    for f, per in found:
        for label, key in ((f.plain, f.plain), (f.balanced, f.balanced), ("balanced - plain", "diff")):
            lines.append(f"| {f.grid} | {label} | " + " | ".join(fmt(per[k][key]) if k in per else "-" for k in kinds)
                         + " |")
    have = {g.grid for g, _ in found}
    missing = [f.grid for f in families if f.grid not in have]
    if missing:
        lines += ["", f"{NO_RECORDS.capitalize()}: {', '.join(missing)}."]
    return "\n".join(lines)


def _span(cells: dict[str, Any], key: str) -> str:
    vals = [e[key] for e in cells.values() if e.get(key) is not None]
    return "-" if not vals else f"{sum(vals) / len(vals):.2f} ({min(vals):.2f}-{max(vals):.2f})"


def ended_table(families: list[Family]) -> str:
    """Per family: the share of answers that ended before the cap (mean over cells, and the range of the cells'
    means), the untrained model's, and the probes at twice the cap."""
    lines = ["| grid | untrained | plain: ended (cells) | balanced: ended (cells) | probed runs plain / balanced "
             "| plain: ended at the cap / twice the cap | balanced: at the cap / twice the cap |",
             "|---|---|---|---|---|---|---|"]
    for f in families:
        e = f.evidence
        if e is None:
            lines.append(f"| {f.grid} | {MISSING} | | | | | |")
            continue
        base = [v["ended"] for v in e["ended"].get("untrained", {}).values() if v["ended"] is not None]
        cells = {m: e["ended"].get(m, {}) for m in (f.plain, f.balanced)}
        probed = [sum(c["probed"] for c in cells[m].values()) for m in (f.plain, f.balanced)]
        lines.append(f"| {f.grid} | {sum(base) / len(base):.2f} | " if base else f"| {f.grid} | - | ")
        lines[-1] += (f"{_span(cells[f.plain], 'ended')} | {_span(cells[f.balanced], 'ended')} | "
                      f"{probed[0]} / {probed[1]} | "
                      + " | ".join(f"{_span(cells[m], 'ended_at_cap')} / {_span(cells[m], 'ended_at_2cap')}"
                                   for m in (f.plain, f.balanced)) + " |")
    return "\n".join(lines)


def bias_table(families: list[Family]) -> str:
    """Per family and LC estimator (each run's own, and the joint one over the grid's runs), ``LC - TQ`` against
    ``Δwords`` over its runs: the line's slope (SE), intercept, Pearson r and mean ``|LC - TQ|``, each form's mean
    Δwords and LC - TQ, and which estimator leaves less length in LC."""
    lines = ["| grid | LC | runs | slope per word (SE) | intercept | r | mean abs(LC - TQ) "
             "| plain: Δwords, LC - TQ | balanced: Δwords, LC - TQ | less length left |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for f in families:
        own = None if f.evidence is None else f.evidence.get("lc_bias")
        if own is None:
            lines.append(f"| {f.grid} | | {MISSING if f.evidence is None else '-'} | | | | | | | |")
            continue
        joint = f.evidence.get("lc_bias_joint")
        better = less_length_left(own, joint)
        for name, b in (("own", own), ("joint", joint)):
            if b is None:
                continue
            forms = [b["methods"].get(m) for m in (f.plain, f.balanced)]
            lines.append(f"| {f.grid} | {name} | {b['runs']} | {b['slope']:+.4f} ({b['slope_se']:.4f}) "
                         f"| {b['intercept']:+.4f} | {b['r']:+.2f} | {b.get('mean_abs', math.nan):.4f} | "
                         + " | ".join(f"{x['words']:+.1f}, {x['lc_minus_tq']:+.4f}" if x else "-" for x in forms)
                         + f" | {'**yes**' if better == name else ''} |")
    return "\n".join(lines)


def _words(x: float) -> str:
    text = f"{x:+.1f}"
    return "+0.0" if text == "-0.0" else text


def _err(mean: float, lo: float | None, hi: float | None) -> list[list[float]]:
    """Error-bar lengths below and above ``mean``; none for a bound that summary.json holds as null (one run)."""
    missing = lo is None or hi is None
    return [[0.0 if missing else mean - lo], [0.0 if missing else hi - mean]]


def _primary(f: Family, method: str | None, metric: str) -> dict[str, Any]:
    """``{"mean", "lo", "hi"}``: the per-seed interval where the summary has it, else the pooled one."""
    entry = f.study(method, metric)
    if entry is not None:
        return entry["per_seed"]
    if method is not None:
        return f.pooled(method, metric)
    c = f.diff(metric)
    return {"mean": c["pooled_diff"], "lo": c["pooled_lo"], "hi": c["pooled_hi"]}


def plot_families(result_dirs: Sequence[str | Path], path: str | Path) -> str:
    """Forest plot: per family, each form's ΔTQ over the untrained model (left) and balanced - plain on TQ and LC
    (right), with the per-seed 95% intervals (pooled ones for a summary without them); returns the caption."""
    return _plot(load(result_dirs), path)


def _plot(families: list[Family], path: str | Path) -> str:
    fig, (left, right) = figure(1, 2, figsize=(9.0, 0.55 * len(families) + 1.8), sharey=True)
    ys = range(len(families))
    for y, f in zip(ys, families):
        for dy, method, style, label in ((-0.15, f.plain, "o", "plain form"), (0.15, f.balanced, "s", "balanced form")):
            iv = _primary(f, method, "tq")
            left.errorbar(iv["mean"], y + dy, xerr=_err(iv["mean"], iv["lo"], iv["hi"]), fmt=style, capsize=3,
                          color="tab:blue" if style == "o" else "tab:orange", label=label if y == 0 else None)
        for dy, metric, style, color in ((-0.15, "tq", "D", "tab:green"), (0.15, "lc", "^", "tab:purple")):
            iv = _primary(f, None, metric)
            right.errorbar(iv["mean"], y + dy, xerr=_err(iv["mean"], iv["lo"], iv["hi"]), fmt=style, capsize=3,
                           color=color, label=f"balanced - plain, {metric.upper()}" if y == 0 else None)
    for ax in (left, right):
        ax.axvline(0.0, color="grey", lw=0.8, ls="--")
        ax.grid(axis="x", alpha=0.3)
    left.set_yticks(list(ys), [f"{f.plain} / {f.balanced}" for f in families])
    left.invert_yaxis()
    left.set_xlabel("ΔTQ over the untrained model (same evaluation seed)")
    right.set_xlabel("balanced - plain (paired on cell and seed)")
    handles = [h for ax in (left, right) for h in ax.get_legend_handles_labels()[0]]
    labels = [lab for ax in (left, right) for lab in ax.get_legend_handles_labels()[1]]
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8)
    per_seed = all(f.evidence is not None for f in families)
    caption = ("Each family against the untrained model and balanced against plain: per seed the mean over cells, "
               "95% t-intervals over seeds" if per_seed else
               "Each family against the untrained model and balanced against plain: mean over all runs, 95% "
               "t-intervals pooled over cells and seeds")
    fig.suptitle(caption, fontsize=9)
    save(fig, path)
    return caption


def _runs(f: Family) -> list[dict]:
    from adadpo.bench.sweep import read_results

    if f.path is None:
        return []
    return [r for r in read_results(f.path / "results.jsonl")
            if r.get("method") in (f.plain, f.balanced) and all(k in r for k in ("lc", "tq", "length", "ref_length"))]


def write(output_dir: str | Path, result_dirs: Sequence[str | Path]) -> Path:
    """``families.md`` (the tables, with the figures), ``families.png`` and ``families_lc_bias.png`` in
    ``output_dir``."""
    out = Path(output_dir)
    families = load(result_dirs)  # each summary.json read once, for the tables and the figures
    caption = _plot(families, out / "families.png")
    groups = {f"{f.plain} / {f.balanced}": _runs(f) for f in families}
    bias_figure = ""
    if any(groups.values()):
        joint = {k: v for f in families if f.evidence for k, v in (f.evidence.get("joint_lc") or {}).items()
                 if f.path is not None}  # each grid's own joint fit (run keys name their method: no clashes)
        plot_lc_bias({k: v for k, v in groups.items() if v}, out / "families_lc_bias.png",
                     "LC - TQ against Δwords, one point per run", joint=joint or None)
        bias_figure = "\n\n![LC - TQ against Δwords, one point per run, per family](families_lc_bias.png)"
    text = (f"{_table(families)}\n\nPrimary intervals: per seed the mean over the grid's cells, then a 95% "
            "t-interval over seeds; bootstrap: resampling the held-out prompts and the seeds (TQ, from the "
            "per-comparison records); cells: how many cells have the seed-mean difference above / below zero.\n\n"
            f"![{caption}](families.png)\n\n"
            "## Best versus best\n\nEach form's best cell chosen on the held-out prompts with an even index and "
            "reported on those with an odd index (Δ: over the untrained model on that half).\n\n"
            f"{best_vs_best_table(families)}\n\n"
            "## ΔTQ per kind of prompt\n\nPer-seed intervals; in parentheses, each kind's held-out prompts.\n\n"
            f"{per_kind_table(families)}\n\n"
            "## Answers that end\n\nShare of answers that ended before the cap: mean over cells (range over "
            "cells); probes of runs below 95% at twice the cap.\n\n"
            f"{ended_table(families)}\n\n"
            "## Length left in LC\n\nIn this world the judge at equal length is the truth, so LC - TQ is the "
            "LC estimator's error; against Δwords (the policy's mean words minus the reference answers').\n\n"
            f"{bias_table(families)}{bias_figure}\n\n"
            "## Pooled over cells x seeds (the earlier interval, not the primary one)\n\n"
            f"{pooled_table(families)}\n\n"
            "Generated by `python -m adadpo.bench.families` from each grid's summary.json (and results.jsonl for "
            "the length figure).\n")
    path = out / "families.md"
    path.write_text(text)
    return path


__all__ = ["Family", "families_table", "load", "plot_families", "write"]


if __name__ == "__main__":  # python -m adadpo.bench.families OUT_DIR GRID_DIR...
    import sys

    if len(sys.argv) < 3:
        sys.exit("usage: python -m adadpo.bench.families OUT_DIR GRID_DIR [GRID_DIR ...]")
    try:
        print(write(sys.argv[1], sys.argv[2:]))
    except ValueError as err:
        sys.exit(f"python -m adadpo.bench.families: error: {err}")
