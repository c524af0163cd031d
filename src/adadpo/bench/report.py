"""The Markdown report and ``summary.json`` of a sweep's runs (rows of ``results.jsonl``), with its figures.

The paper's headline statistics, per comparison ``base`` vs ``cand`` (e.g. DPO vs AdaDPO), over the grid's
cells (``beta`` x learning rate), each cell averaged over seeds:

* share of cells where ``cand`` has the higher ``LC`` (paper: 81%), and where it enlarges ``LC - WR``
  (paper: 88%); the same for ``TQ``, which only this world can measure;
* per cell, a 95% t-interval of the seed-paired difference (same seed = same data order and init);
  a cell counts as a win or a loss only when the interval excludes zero, otherwise as a tie;
* the global best ``LC``, ``WR`` and ``TQ`` per method (best cell, with its interval over seeds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adadpo.bench import evidence_report, paired, records
from adadpo.bench.figures import plot_bars, plot_curves, plot_frontier, plot_heatmaps, plot_tracking
from adadpo.bench.run import UNTRAINED
from adadpo.bench.stats import KL_BUDGETS, METRICS, Cell, Interval, best_cell, best_within_kl, by_cell, cell_label
from adadpo.bench.stats import cell_of, cell_order, compare, interval, tracking, value

#: What each column means, for the reports and the demo's printed table.
DEFINITIONS = {
    "lc": "length-controlled win rate against the reference (AlpacaEval 2's GLM on the biased judge's outcomes)",
    "wr": "win rate against the reference's answers under the length-biased judge (0.5: level with the reference)",
    "tq": "win rate against the reference under the true-quality judge (no length bias): what LC tries to estimate",
    "lc_minus_wr": "LC minus WR: how much of the win rate the length control removes (more negative: more length "
                   "gaming)",
    "length": "mean answer length in words",
    "quality": "mean true quality of the answers themselves (0 to 1), not compared with the reference as TQ is",
    "kl": "KL(policy || reference) on the policy's own answers, in nats",
    "reward_accuracy": "share of held-out pairs whose chosen answer gains more log-likelihood than the rejected",
    "delta_chosen": "change of the held-out chosen answers' log-likelihood from the reference (< 0: displaced)",
    "delta_rejected": "the same for the rejected answers",
}
HEADLINE = ("lc", "lc_minus_wr", "wr", "tq")


def json_ready(data: Any) -> Any:
    """``data`` with every non-finite float (an interval over one seed, say) as ``None``: strict JSON's ``null``."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: json_ready(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_ready(v) for v in data]
    return data


def summary(rows: list[dict], comparisons: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Everything the report shows, as plain data (written to ``summary.json``)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out: dict[str, Any] = {"runs": len(rows), "methods": methods, "comparisons": [], "best": {}, "cells": {}}
    for base, cand in comparisons:
        for metric in HEADLINE:
            c = compare(rows, base, cand, metric)
            out["comparisons"].append({
                "base": base, "cand": cand, "metric": metric, "cells": len(c.cells), "share_higher": c.share_higher,
                "wins": c.wins, "ties": c.ties, "losses": c.losses,
                "pooled_diff": c.pooled.mean, "pooled_lo": c.pooled.lo, "pooled_hi": c.pooled.hi,
            })
    for m in methods:
        out["best"][m] = {}
        for metric in ("lc", "wr", "tq"):
            found = best_cell(rows, m, metric)
            if found:
                cell, iv = found
                out["best"][m][metric] = {"beta": cell[0], "learning_rate": cell[1], "mean": iv.mean, "lo": iv.lo,
                                          "hi": iv.hi, **({"epochs": cell[2]} if len(cell) > 2 else {})}
        per_metric = {k: by_cell(rows, m, k) for k in METRICS}
        out["cells"][m] = {
            _cell_key(cell): {k: interval(list(per_metric[k][cell].values())).mean for k in METRICS}
            for cell in per_metric["lc"]
        }
    out["tracking"] = tracking(rows)
    return out


# ------------------------------------------------------------------------------------------------ Markdown


def _cell_key(cell: Cell) -> str:
    return f"beta={cell[0]:g},lr={cell[1]:g}" + (f",epochs={cell[2]}" if len(cell) > 2 else "")


def _axes(rows: list[dict]) -> str:
    """The grid's axes: β x learning rate, and epochs where the grid varies them."""
    return "β x learning rate" + (" x epochs" if len({r.get("epochs") for r in rows}) > 1 else "")


def columns_text(keys: Sequence[str]) -> str:
    """One sentence per column in ``keys``: its label and what it measures."""
    return " ".join(f"{METRICS[k]}: {DEFINITIONS[k]}." for k in keys if k in DEFINITIONS)


def ci_text(iv: Interval, digits: int = 3) -> str:
    """``[lo, hi]`` of a 95% interval, saying so when the seeds agree to the digits printed (``[x, x]``), or that
    there is no interval (one value)."""
    if iv.n < 2 or math.isnan(iv.lo):
        return f"(n={iv.n}: no interval)"
    lo, hi = f"{iv.lo:+.{digits}f}", f"{iv.hi:+.{digits}f}"
    return f"[{lo}, {hi}]" + (f" (the seeds agree to {digits} decimals)" if lo == hi else "")


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.0f}%"


def _kl_budget_table(rows: list[dict], methods: list[str]) -> list[str]:
    """The report's section: per method, the best TQ and LC among cells within each KL budget."""
    lines = ["## Best cell within a KL budget", "",
              "Methods that move the policy less can look worse at equal hyperparameters and better per nat of "
              "KL(policy || reference). Best seed-mean TQ and LC among cells whose seed-mean KL stays within "
              "the budget (the cell and its KL in parentheses; `-` when no cell stays within it).", "",
              "| method | " + " | ".join(f"{METRICS[k]}, KL <= {b:g}" for k in ("tq", "lc") for b in KL_BUDGETS) + " |",
              "|---|" + "---|" * (2 * len(KL_BUDGETS))]
    for m in methods:
        parts = []
        for k in ("tq", "lc"):
            for b in KL_BUDGETS:
                found = best_within_kl(rows, m, k, b)
                parts.append(f"{found[1]:.3f} ({cell_label(found[0])}; {found[2]:.2f})" if found else "-")
        lines.append(f"| {m} | " + " | ".join(parts) + " |")
    lines.append("")
    return lines


def markdown(rows: list[dict], comparisons: Sequence[tuple[str, str]], *, title: str, preamble: str = "",
             plots: Sequence[tuple[str, str]] = (), appendix: str = "", against_untrained: str = "") -> str:
    """The report: headline statistics (after ``against_untrained``, the section of
    :func:`adadpo.bench.paired.markdown`, where there is one), best cells, per-cell table, LC vs TQ, plots,
    then ``appendix``. ``rows`` are the trained runs."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    cells = sorted({cell_of(r) for r in rows}, key=cell_order)
    lines = [f"# {title}", ""]
    if preamble:
        lines += [preamble.strip(), ""]
    lines += [f"{len(rows)} runs: {len(methods)} methods x {len(cells)} cells ({_axes(rows)}) x {len(seeds)} seeds "
              f"({', '.join(map(str, seeds))}). Intervals are 95% t-intervals over seeds; a cell is a win or a "
              "loss only when the seed-paired interval excludes zero.", ""]
    if against_untrained:
        lines += [against_untrained.strip(), ""]
    overview = ("lc", "wr", "tq", "lc_minus_wr", "length", "quality", "kl", "delta_chosen")
    keys = ("lc", "wr", "tq", "length", "quality", "kl", "reward_accuracy", "delta_chosen", "delta_rejected")
    lines += ["Columns. " + columns_text(dict.fromkeys(overview + keys)), ""]
    lines += ["## All methods (mean over every cell and seed)", "",
              "| method | " + " | ".join(METRICS[k] for k in overview) + " |", "|---|" + "---|" * len(overview)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(f"{np.mean([value(r, k) for r in rows if r['method'] == m]):.3f}"
                                            for k in overview) + " |")
    lines.append("")
    for base, cand in comparisons:
        lines += [f"## {cand} vs {base}", "",
                  f"| metric | cells where {cand} is higher | seed-separated win / tie / loss | mean difference (all runs) |",
                  "|---|---|---|---|"]
        for metric in HEADLINE:
            c = compare(rows, base, cand, metric)
            label = "LC - WR (enlarged)" if metric == "lc_minus_wr" else METRICS[metric]
            lines.append(f"| {label} | {_pct(c.share_higher)} ({round(c.share_higher * len(c.cells))}/{len(c.cells)}) "
                         f"| {c.wins} / {c.ties} / {c.losses} | {c.pooled.mean:+.3f} {ci_text(c.pooled)} |")
        lines.append("")
    if len(cells) > 1:  # with one cell, the best cell (within a KL budget or not) is that cell: nothing to add
        lines += ["## Best cell per method", "", "| method | best LC | best WR | best TQ |", "|---|---|---|---|"]
        for m in methods:
            parts = []
            for metric in ("lc", "wr", "tq"):
                found = best_cell(rows, m, metric)
                parts.append(f"{found[1].fmt()} ({cell_label(found[0])})" if found else "n/a")
            lines.append(f"| {m} | " + " | ".join(parts) + " |")
        lines.append("")
        lines += _kl_budget_table(rows, methods)
    ref = rows[0]
    lines += ["## Every cell (mean ± half-width over seeds)", "",
              f"Reference policy: length {ref['ref_length']:.2f}, quality {ref['ref_quality']:.3f}. "
              "`d logp` = change of the held-out chosen/rejected log-likelihood from the reference.", "",
              "| cell | method | " + " | ".join(METRICS[k] for k in keys) + " |", "|---|---|" + "---|" * len(keys)]
    for cell in cells:
        for m in methods:
            vals = []
            for k in keys:
                per_seed = by_cell(rows, m, k).get(cell)
                vals.append(interval(list(per_seed.values())).fmt() if per_seed else "")
            lines.append(f"| {cell_label(cell)} | {m} | " + " | ".join(vals) + " |")
    lines.append("")
    t = tracking(rows)
    if t:
        lines += ["## Does LC track the truth?", "",
                  f"Over all {len(rows)} runs, Pearson correlation with TQ (the true-quality win rate): "
                  f"LC {t['r_lc_tq']:.3f}, WR {t['r_wr_tq']:.3f}; mean absolute gap to TQ: LC {t['mae_lc_tq']:.3f}, "
                  f"WR {t['mae_wr_tq']:.3f}.", ""]
    for caption, path in plots:
        lines += [f"![{caption}]({path})", ""]
    if appendix:
        lines += [appendix.strip(), ""]
    return "\n".join(lines)


def _file(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def write_report(rows: list[dict], comparisons: Sequence[tuple[str, str]], output_dir: str | Path, *, title: str,
                 preamble: str = "", order: Sequence[str] = (), appendix: str = "",
                 records_dir: str | Path | None = None) -> Path:
    """Write the plots, ``summary.json`` and ``report.md`` into ``output_dir``; returns the report's path.

    ``order``: method names in the order tables and legends should list them (default: first seen).
    ``records_dir``: the sweep directory whose ``results.jsonl`` the rows come from, where their per-comparison
    records are (default: ``output_dir``). Runs that measure whether their answers ended (the real-model world)
    get the study's statistics (:mod:`adadpo.bench.evidence_report`), from the records where there are any.
    """
    import json

    rank = {m: i for i, m in enumerate(order)}
    every = sorted(rows, key=lambda r: rank.get(r["method"], len(rank)))  # stable: keeps run order within a method
    rows = [r for r in every if r["method"] != UNTRAINED]

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cells = {cell_of(r) for r in rows}
    plots: list[tuple[str, str]] = []
    many = len(comparisons) > 2  # an ablation: one figure of each kind, not one per comparison
    if len(cells) == 1:
        plots.append((plot_bars(rows, methods, out / "winrates.png"), "winrates.png"))
    elif not many:
        for base, cand in comparisons:
            name = _file(f"heatmaps_{base}_vs_{cand}.png")
            plot_heatmaps(rows, base, cand, out / name)
            plots.append((f"{cand} vs {base} over the grid", name))
    groups = [methods] if many or not comparisons else [[base, cand] for base, cand in comparisons]
    for group in groups:
        name = _file("curves_all.png" if many else f"curves_{'_vs_'.join(group)}.png")
        what = plot_curves(rows, group, out / name, band=not many)
        plots.append((f"training curves, {' vs '.join(group)} ({what})", name))
    if len(rows) >= 3:
        plot_tracking(rows, out / "lc_vs_tq.png")
        plots.append(("LC and WR against the true-quality win rate", "lc_vs_tq.png"))
        plot_frontier(rows, out / "frontier.png")
        plots.append(("TQ and LC against the KL from the reference", "frontier.png"))
    data = summary(rows, comparisons)
    if len(every) > len(rows):
        data["vs_untrained"] = paired.summary(every, methods)
    section = paired.markdown(every, methods, list(comparisons))
    if any("ended" in r or r.get("records") for r in every):
        missing: list[str] = []
        where = Path(records_dir or out)
        study = evidence_report.collect(every, records.attach(where, every, missing), comparisons)
        study["missing"] = {"dir": str(where), "runs": missing} if missing else None
        data["evidence"] = study
        figure = None
        if study["lc_bias"] is not None:
            figure = "lc_bias.png"
            evidence_report.plot_lc_bias({m: [r for r in rows if r["method"] == m] for m in methods}, out / figure,
                                         joint=study["joint_lc"] or None)
        section = evidence_report.markdown(study, figure) + "\n" + section  # the primary intervals first
    (out / "summary.json").write_text(json.dumps(json_ready(data), indent=2, allow_nan=False))
    path = out / "report.md"
    path.write_text(markdown(rows, comparisons, title=title, preamble=preamble, plots=plots, appendix=appendix,
                             against_untrained=section))
    return path


def _share(c: dict) -> str:
    return f"{_pct(c['share_higher'])} (W/T/L {c['wins']}/{c['ties']}/{c['losses']})" if c["cells"] else "n/a"


def _best(s: dict, method: str, metric: str) -> str:
    found = s["best"].get(method, {}).get(metric)
    return "n/a" if found is None else f"{found['mean']:.3f}"


def headline_table(result_dirs: Sequence[str | Path]) -> str:
    """One Markdown row per comparison over several sweeps' ``summary.json``: the paper's headline numbers.

    Per comparison: the cells, the share of cells where the candidate is higher on LC, LC - WR, TQ and WR
    (with the seed-separated win/tie/loss counts), the mean seed-paired LC and TQ differences over all runs
    with their 95% intervals, and the best cell's LC and TQ of base and candidate.
    """
    import json

    lines = ["| sweep | comparison | cells | LC higher | LC - WR enlarged | TQ higher | WR higher | mean LC diff "
             "| mean TQ diff | best LC (base / cand) | best TQ (base / cand) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in result_dirs:
        path = Path(d) / "summary.json"
        if not path.is_file():
            raise ValueError(f"{d}: no summary.json (expected the output directory of `adadpo sweep` or `adadpo demo`)")
        s = json.loads(path.read_text())
        by = {(c["base"], c["cand"], c["metric"]): c for c in s["comparisons"]}
        for base, cand in dict.fromkeys((b, c) for b, c, _ in by):
            share = {m: _share(by[(base, cand, m)]) for m in HEADLINE}
            lc, tq = by[(base, cand, "lc")], by[(base, cand, "tq")]
            lines.append(f"| {Path(d).name} | {cand} vs {base} | {lc['cells']} | {share['lc']} | {share['lc_minus_wr']} "
                         f"| {share['tq']} | {share['wr']} "
                         f"| {lc['pooled_diff']:+.3f} [{lc['pooled_lo']:+.3f}, {lc['pooled_hi']:+.3f}] "
                         f"| {tq['pooled_diff']:+.3f} [{tq['pooled_lo']:+.3f}, {tq['pooled_hi']:+.3f}] "
                         f"| {_best(s, base, 'lc')} / {_best(s, cand, 'lc')} | {_best(s, base, 'tq')} / {_best(s, cand, 'tq')} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m adadpo.bench.report DIR...: the headline table of several sweeps
    import sys

    try:
        print(headline_table(sys.argv[1:]))
    except ValueError as err:
        sys.exit(f"python -m adadpo.bench.report: error: {err}")
