"""The report's section on the study's statistics (:mod:`adadpo.bench.evidence`), as plain data for
``summary.json`` (:func:`collect`) and as Markdown (:func:`markdown`), with the figure of the length left in LC.

The per-seed interval is the primary one; the bootstrap over prompts and seeds and best versus best need the
per-comparison records and say "no per-comparison records" for rows written without them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adadpo.bench import evidence as ev
from adadpo.bench.run import UNTRAINED
from adadpo.bench.stats import Interval, cell_label

NO_RECORDS = "no per-comparison records"
#: Metrics measured against the untrained model with a per-seed interval (TQ also bootstrapped).
DELTAS = {"tq": "ΔTQ", "lc": "ΔLC", "wr": "ΔWR", "length": "Δ words"}
#: Why a best-versus-best line is empty when the runs have records.
UNSPLIT = "one held-out prompt: nothing to split"
SPLIT = "held-out prompts with an even index choose each form's best cell; those with an odd index report it"


def _iv(iv: Interval | None) -> dict[str, float] | None:
    return None if iv is None else {"mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "n": iv.n}


def _metric(rows: Sequence[dict], method: str, against: str, metric: str, d=None) -> dict[str, Any]:
    diffs = ev.row_diffs(rows, method, against, metric)
    iv, means = ev.per_seed(diffs)
    return {"per_seed": _iv(iv), "seed_means": {str(s): m for s, m in means.items()}, "signs": ev.signs(diffs),
            **({"bootstrap": None if d is None else _iv(ev.bootstrap(d))} if metric == "tq" else {})}


def collect(rows: Sequence[dict], recs: dict[str, list[dict]], comparisons: Sequence[tuple[str, str]],
            draws: int = ev.DRAWS) -> dict[str, Any]:
    """Everything :func:`markdown` prints, as plain data: per method against the untrained model and per
    comparison ``balanced - plain`` (per-seed interval, bootstrap for TQ, sign counts), best versus best,
    ΔTQ per kind, ``ended`` per cell and the length left in LC. ``rows`` include the untrained rows."""
    methods = list(dict.fromkeys(r["method"] for r in rows if r["method"] != UNTRAINED))
    untrained = any(r["method"] == UNTRAINED for r in rows)
    out: dict[str, Any] = {"records": bool(rows) and all(r.get("key") in recs for r in rows), "draws": draws,
                           "split": SPLIT, "methods": {}, "comparisons": [], "ended": {},
                           "lc_bias": ev.lc_bias([r for r in rows if r["method"] != UNTRAINED])}
    joint = ev.joint_lc(rows, recs)
    out["joint_lc"] = joint
    out["lc_bias_joint"] = ev.lc_bias([r for r in rows if r["method"] != UNTRAINED], joint) if joint else None
    for m in methods:
        if untrained:
            d = ev.prompt_diffs(ev.pairs_of(rows, m, UNTRAINED), recs)
            out["methods"][m] = {k: _metric(rows, m, UNTRAINED, k, d) for k in DELTAS}
        out["ended"][m] = {cell_label(c): e for c, e in ev.ended_cells(rows, m).items()}
    out["ended"][UNTRAINED] = {str(r["seed"]): {"ended": r.get("ended"), **{
        k: (r.get("cap_probe") or {}).get(k) for k in ("ended_at_cap", "ended_at_2cap")}}
        for r in rows if r["method"] == UNTRAINED}
    for plain, balanced in comparisons:
        d = ev.prompt_diffs(ev.pairs_of(rows, balanced, plain), recs)
        entry: dict[str, Any] = {"plain": plain, "balanced": balanced,
                                 **{k: _metric(rows, balanced, plain, k, d) for k in ("tq", "lc")},
                                 "best_vs_best": {}, "per_kind": None,
                                 # whether the held-out prompts split in halves (else best versus best is empty)
                                 "splits": ev.splits(recs, [r.get("key") for r in rows
                                                            if r["method"] in (plain, balanced)])}
        for metric in ("tq", "lc"):
            b = ev.best_vs_best(rows, recs, plain, balanced, metric, draws)
            entry["best_vs_best"][metric] = None if b is None else {
                "cells": {f: cell_label(c) for f, c in b["cells"].items()}, "seeds": b["seeds"],
                "delta": None if b["delta"] is None else {f: _iv(iv) for f, iv in b["delta"].items()},
                "diff": _iv(b["diff"]), "bootstrap": _iv(b["bootstrap"])}
        kinds = ev.per_kind(rows, recs, plain, balanced, draws) if untrained else None
        if kinds is not None:
            entry["per_kind"] = {k: {key: (_iv(v) if isinstance(v, Interval) else v) for key, v in e.items()}
                                 for k, e in kinds.items()}
        out["comparisons"].append(entry)
    return out


def fmt(iv: dict[str, float] | None, digits: int = 3) -> str:
    """``+m [+lo, +hi]``, the mean alone with one seed, ``-`` for nothing."""
    if not iv or iv.get("mean") is None or (isinstance(iv["mean"], float) and math.isnan(iv["mean"])):
        return "-"
    lo, hi = iv.get("lo"), iv.get("hi")
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return f"{iv['mean']:+.{digits}f} (one seed)"
    return f"{iv['mean']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def sign_text(s: dict[str, int]) -> str:
    """``a+ / b-`` of ``n`` cells (``, z at 0`` when some are exactly level)."""
    return f"{s['above']}+ / {s['below']}- of {s['cells']}" + (f", {s['zero']} at 0" if s["zero"] else "")


def _boot(entry: dict[str, Any]) -> str:
    return fmt(entry.get("bootstrap")) if entry.get("bootstrap") else NO_RECORDS


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def markdown(data: dict[str, Any], figure: str | None = None) -> str:
    """The report's section (see the module doc) from :func:`collect`'s data; ``figure``: the file name of
    :func:`plot_lc_bias`'s figure, shown under its table."""
    lines = ["## The study's statistics: intervals over seeds, bootstrap, sign counts", "",
             "Primary interval: per seed, the mean over the grid's cells of the paired difference, then a 95% "
             "t-interval over seeds (seeds are the independent draws; cells sharing a seed are not). Bootstrap: "
             f"{data['draws']} resamples of the seeds and of the held-out prompts (with replacement, one draw of "
             "prompts for every run), from the per-comparison records; percentile interval; TQ only. With a few seeds "
             "the bootstrap sees only a few distinct draws of them and runs narrower than the t-interval, which "
             "is why the per-seed interval is the primary one. Cells: how many cells have their seed-mean "
             "difference above / below zero.", ""]
    if data.get("missing"):
        lines += [f"The per-comparison records of {len(data['missing']['runs'])} runs are not in "
                  f"`{data['missing']['dir']}` (the report was written away from its sweep's directory): the "
                  "figures below that need them are left out.", ""]
    elif not data["records"]:
        lines += [f"These runs have {NO_RECORDS} (written before runs kept them): the bootstrap, best versus best "
                  "and ΔTQ per kind of prompt cannot be computed.", ""]
    if data["methods"]:
        lines += ["Against the untrained model of the same seed:", "",
                  "| method | ΔTQ per seed | ΔTQ bootstrap | ΔTQ cells | ΔLC per seed | ΔLC cells | ΔWR per seed "
                  "| Δ words per seed |", "|---|---|---|---|---|---|---|---|"]
        for m, e in data["methods"].items():
            lines.append(f"| {m} | {fmt(e['tq']['per_seed'])} | {_boot(e['tq'])} | {sign_text(e['tq']['signs'])} "
                         f"| {fmt(e['lc']['per_seed'])} | {sign_text(e['lc']['signs'])} | {fmt(e['wr']['per_seed'])} "
                         f"| {fmt(e['length']['per_seed'], 1)} |")
        lines.append("")
    if data["comparisons"]:
        lines += ["Balanced - plain, paired on cell and seed:", "",
                  "| comparison | TQ per seed | TQ bootstrap | TQ cells | LC per seed | LC cells |",
                  "|---|---|---|---|---|---|"]
        for c in data["comparisons"]:
            lines.append(f"| {c['balanced']} - {c['plain']} | {fmt(c['tq']['per_seed'])} | {_boot(c['tq'])} "
                         f"| {sign_text(c['tq']['signs'])} | {fmt(c['lc']['per_seed'])} | {sign_text(c['lc']['signs'])} |")
        lines += ["", f"**Best versus best** ({SPLIT}; the same split for every run, fixed by the prompt's index). "
                      "Δ: the chosen cell minus the untrained model on the reporting half.", "",
                  "| comparison | by | plain's best cell | balanced's best cell | plain Δ | balanced Δ "
                  "| balanced - plain per seed | bootstrap |", "|---|---|---|---|---|---|---|---|"]
        for c in data["comparisons"]:
            for metric, b in c["best_vs_best"].items():
                name = f"{c['balanced']} - {c['plain']}"
                if b is None:
                    why = NO_RECORDS if c.get("splits", True) else UNSPLIT
                    lines.append(f"| {name} | {metric.upper()} | {why} | | | | | |")
                    continue
                delta = b["delta"] or {}
                boot = fmt(b["bootstrap"]) if b["bootstrap"] else "(TQ only)" if metric == "lc" else "-"
                lines.append(f"| {name} | {metric.upper()} | {b['cells'][c['plain']]} | {b['cells'][c['balanced']]} "
                             f"| {fmt(delta.get(c['plain']))} | {fmt(delta.get(c['balanced']))} | {fmt(b['diff'])} "
                             f"| {boot} |")
        lines.append("")
        for c in data["comparisons"]:
            lines += [f"ΔTQ per kind of prompt, {c['plain']} and {c['balanced']} (per-seed intervals; "
                      "balanced - plain also bootstrapped over that kind's prompts and the seeds):", ""]
            if c["per_kind"] is None:
                lines += [f"{NO_RECORDS.capitalize()}.", ""]
                continue
            lines += [f"| kind | prompts | {c['plain']} ΔTQ | {c['balanced']} ΔTQ | balanced - plain per seed "
                      "| bootstrap |", "|---|---|---|---|---|---|"]
            for kind, e in c["per_kind"].items():
                lines.append(f"| {kind} | {e['prompts']} | {fmt(e[c['plain']])} | {fmt(e[c['balanced']])} "
                             f"| {fmt(e['diff'])} | {fmt(e['bootstrap'])} |")
            lines.append("")
    lines += _ended_lines(data["ended"])
    lines += _bias_lines(data["lc_bias"], figure, data.get("lc_bias_joint"))
    return "\n".join(lines) + "\n"


def _ended_lines(ended: dict[str, Any]) -> list[str]:
    lines = ["Answers that ended before the cap (mean share over the cell's runs); for runs below 95%, a probe of "
             "one answer to each of a sample of held-out prompts at twice the cap: the share ended within the cap "
             "and within twice it (low at both: the model no longer stops; high at twice the cap: it rambles).", "",
             "| cell | method | runs | ended | ended, runs (lowest-highest) | probed runs | ended at the cap "
             "| ended at twice the cap |", "|---|---|---|---|---|---|---|---|"]
    for seed, e in ended.get(UNTRAINED, {}).items():
        probed = e["ended_at_cap"] is not None
        lines.append(f"| seed {seed} | {UNTRAINED} | 1 | {_share(e['ended'])} | | {int(probed)} "
                     f"| {_share(e['ended_at_cap'])} | {_share(e['ended_at_2cap'])} |")
    for m, cells in ended.items():
        if m == UNTRAINED:
            continue
        for label, e in cells.items():
            spread = "-" if e.get("ended_min") is None else f"{e['ended_min']:.2f}-{e['ended_max']:.2f}"
            lines.append(f"| {label} | {m} | {e['runs']} | {_share(e['ended'])} | {spread} | {e['probed']} "
                         f"| {_share(e['ended_at_cap'])} | {_share(e['ended_at_2cap'])} |")
    return lines + [""]


def _line(bias: dict[str, Any]) -> str:
    return (f"LC - TQ = {bias['intercept']:+.4f} {bias['slope']:+.4f} x Δwords (slope SE {bias['slope_se']:.4f}, "
            f"Pearson r {bias['r']:+.2f}; mean |LC - TQ| {bias['mean_abs']:.4f})")


def less_length_left(own: dict[str, Any] | None, joint: dict[str, Any] | None) -> str | None:
    """Which LC estimator leaves less length in LC over the same runs: ``"own"`` (each run alone) or ``"joint"``
    (difficulty estimated over the grid's runs), by the smaller ``|slope|`` of LC - TQ against Δwords, ties broken
    by the smaller mean ``|LC - TQ|``; ``None`` unless both were measured."""
    if own is None or joint is None:
        return None
    key = (lambda b: (round(abs(b["slope"]), 6), b["mean_abs"]))
    return "joint" if key(joint) < key(own) else "own"


def _bias_lines(bias: dict[str, Any] | None, figure: str | None, joint: dict[str, Any] | None = None) -> list[str]:
    if bias is None:
        return []
    lines = ["**Length left in LC.** The judge at equal length is the truth, so LC - TQ is the LC estimator's error. "
             f"Against Δwords (the policy's mean words minus the reference answers'), over {bias['runs']} runs: "
             f"each run's own LC (one model against the reference, no difficulty term): {_line(bias)}."
             + ("" if joint is None else f" LC with the instruction difficulty estimated jointly over the grid's "
                f"runs, as AlpacaEval 2 does over its models (`adadpo.eval.length_controlled_winrates`, each run's length "
                "coefficient fitted on its own comparisons: `pool_length=0`): "
                f"{_line(joint)}."), "",
             *([] if (better := less_length_left(bias, joint)) is None else [
                 f"Less length left in LC: **{'the joint' if better == 'joint' else 'each run' + chr(39) + 's own'} "
                 "LC** (the smaller slope against Δwords over these runs).", ""]),
             "| method | runs | Δwords | LC - TQ, own LC |" + ("" if joint is None else " LC - TQ, joint LC |"),
             "|---|---|---|---|" + ("" if joint is None else "---|")]
    for m, e in bias["methods"].items():
        extra = "" if joint is None or m not in joint["methods"] else f" {joint['methods'][m]['lc_minus_tq']:+.4f} |"
        lines.append(f"| {m} | {e['runs']} | {e['words']:+.1f} | {e['lc_minus_tq']:+.4f} |" + extra)
    lines.append("")
    if figure:
        lines += [f"![LC - TQ against Δwords, one point per run]({figure})", ""]
    return lines


def plot_lc_bias(groups: dict[str, Sequence[dict]], path: str | Path, title: str = "",
                 joint: dict[str, float] | None = None) -> None:
    """``LC - TQ`` against ``length - ref_length``, one point per run, one colour per group (a method, or a
    family), with each group's least-squares line. ``joint`` (``{run key: LC}``, :func:`adadpo.bench.evidence.joint_lc`):
    a second panel, the same runs scored with that estimator, on the same axes."""
    import numpy as np

    from adadpo.plotting import figure, legend_outside, save

    panels = [("each run's own LC", None)] + ([("LC with difficulty estimated jointly", joint)] if joint else [])
    fig, axes = figure(1, len(panels), figsize=(5.2 * len(panels) + 1.2, 4.0), sharey=True, squeeze=False)
    for ax, (label, lcs) in zip(axes[0], panels):
        for name, rows in groups.items():
            rows = [r for r in rows if lcs is None or r.get("key") in lcs]
            x = np.array([r["length"] - r["ref_length"] for r in rows])
            y = np.array([(r["lc"] if lcs is None else lcs[r["key"]]) - r["tq"] for r in rows])
            dots = ax.scatter(x, y, s=14, alpha=0.7, label=name)
            if len(x) >= 3 and np.ptp(x) > 0:
                slope, intercept = np.polyfit(x, y, 1)
                xs = np.linspace(x.min(), x.max(), 2)
                ax.plot(xs, slope * xs + intercept, color=dots.get_facecolor()[0], lw=1)
        ax.axhline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("Δwords: the policy's mean words minus the reference answers'")
        if len(panels) > 1:
            ax.set_title(label, fontsize=9)
    axes[0][0].set_ylabel("LC - TQ (the LC estimator's error)")
    if title:
        fig.suptitle(title, fontsize=10)
    legend_outside(fig, axes[0][0])
    save(fig, path)
