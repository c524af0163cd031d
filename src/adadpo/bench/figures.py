"""The figures of a sweep's report: heat maps over the grid, training curves, judge against truth, the KL frontier
and the one-cell bars."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from adadpo.bench.stats import METRICS, Cell, by_cell, cell_of, interval, value
from adadpo.plotting import figure as _figure
from adadpo.plotting import legend_outside
from adadpo.plotting import save as _save

CURVES = (("rewards/margins", "reward margin"), ("logps/chosen", "chosen log-likelihood"),
          ("balance/log_rho", "log rho (imbalance)"))



def _scatter_by_method(ax, rows: list[dict], x: str, y: str) -> None:
    for m in dict.fromkeys(r["method"] for r in rows):
        ax.scatter(*zip(*[(r[x], r[y]) for r in rows if r["method"] == m]), s=14, label=m, alpha=0.7)


def plot_heatmaps(rows: list[dict], base: str, cand: str, path: str | Path) -> None:
    """LC, WR, TQ over the grid: ``base``, ``cand`` and ``cand - base`` (seed means). Rows of the heatmap: β,
    or epochs where the grid varies epochs at one β (cells averaged over the axis not shown)."""
    lrs = sorted({r["learning_rate"] for r in rows})
    by_epochs = len({r["beta"] for r in rows}) == 1 and len({r.get("epochs") for r in rows}) > 1
    row_axis, row_label = (2, "epochs") if by_epochs else (0, "β")
    ys = sorted({cell_of(r)[row_axis] for r in rows})
    metrics = ("lc", "wr", "tq")
    fig, axes = _figure(len(metrics), 3, figsize=(11, 3.1 * len(metrics) + 0.4), squeeze=False)
    for i, metric in enumerate(metrics):
        grids = []
        for m in (base, cand):
            seed_means: dict[tuple, list[float]] = defaultdict(list)
            for cell, per_seed in by_cell(rows, m, metric).items():
                seed_means[(cell[row_axis], cell[1])].append(float(np.mean(list(per_seed.values()))))
            grids.append(np.array([[np.mean(seed_means[(y, lr)]) if (y, lr) in seed_means else np.nan
                                    for lr in lrs] for y in ys]))
        grids.append(grids[1] - grids[0])
        vmin, vmax = np.nanmin(grids[:2]), np.nanmax(grids[:2])
        lim = np.nanmax(np.abs(grids[2])) or 1e-3
        for j, (grid, name) in enumerate(zip(grids, (base, cand, f"{cand} - {base}"))):
            ax = axes[i, j]
            kw = {"cmap": "RdBu", "vmin": -lim, "vmax": lim} if j == 2 else {"cmap": "viridis", "vmin": vmin, "vmax": vmax}
            im = ax.imshow(grid, origin="lower", aspect="auto", **kw)
            for (bi, li), v in np.ndenumerate(grid):
                ax.text(li, bi, f"{v:+.3f}" if j == 2 else f"{v:.3f}", ha="center", va="center", fontsize=8,
                        color="black" if j == 2 else "white")
            ax.set_xticks(range(len(lrs)), [f"{x:.0e}".replace("e-0", "e-") for x in lrs])  # 3e-5, 1e-4
            ax.set_yticks(range(len(ys)), [f"{x:g}" for x in ys])
            ax.set_xlabel("learning rate")
            ax.set_ylabel(row_label)
            ax.set_title(f"{METRICS[metric]}: {name}")
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{cand} vs {base}: mean over seeds in each cell ({row_label} x learning rate); right: the difference")
    _save(fig, path)


def cell_curves(rows: list[dict], method: str, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One method's training curve ``key`` per cell: ``(steps [S], seed means [C, S], every run [R, S])``, cut to
    the shortest run (S steps); ``C`` cells (β, learning rate) and ``R`` runs. Empty arrays if no run logged it."""
    runs: dict[Cell, list[list[float]]] = defaultdict(list)
    step_lists = []
    for r in rows:
        curves = r.get("curves") or {}
        if r["method"] == method and curves.get(key):
            runs[cell_of(r)].append(curves[key])
            step_lists.append(curves["step"])
    if not runs:
        return np.zeros(0), np.zeros((0, 0)), np.zeros((0, 0))
    steps = min(step_lists, key=len)
    n = min(len(steps), *(len(c) for cell in runs.values() for c in cell))
    every = [np.asarray(c[:n], dtype=float) for cell in runs.values() for c in cell]
    means = [np.nanmean([np.asarray(c[:n], dtype=float) for c in cell], 0) for cell in runs.values()]
    return np.asarray(steps[:n], dtype=float), np.array(means), np.array(every)


def plot_curves(rows: list[dict], methods: Sequence[str], path: str | Path, band: bool = True) -> str:
    """Training curves (margin, chosen log-likelihood, log rho) per method; returns what lines and bands show.

    Over several cells: the line is the median over cells of the seed-mean curve, the band (``band``) its
    interquartile range over cells, so one diverging cell neither moves the line nor widens the band to the
    whole plot. In a single cell: the line is the mean over seeds, the band min to max over seeds.
    """
    cells = {cell_of(r) for r in rows if r["method"] in methods}
    if len(cells) > 1:
        what = f"line: median over the {len(cells)} cells (β x lr) of the mean over seeds"
        what += "; band: 25th to 75th percentile over cells" if band else ""
    else:
        what = "line: mean over seeds" + ("; band: min to max over seeds" if band else "")
    fig, axes = _figure(1, len(CURVES), figsize=(4.2 * len(CURVES) + 1.6, 3.6))
    for ax, (key, label) in zip(axes, CURVES):
        for m in methods:
            steps, means, every = cell_curves(rows, m, key)
            if not len(steps):
                continue
            if len(cells) > 1:
                line, lo, hi = (np.nanpercentile(means, q, 0) for q in (50, 25, 75))
            else:
                line, lo, hi = np.nanmean(every, 0), np.nanmin(every, 0), np.nanmax(every, 0)
            (drawn,) = ax.plot(steps, line, label=m)
            if band and len(every) > 1:
                ax.fill_between(steps, lo, hi, color=drawn.get_color(), alpha=0.15, lw=0)
        ax.set_xlabel("step")
        ax.set_title(label)
    legend_outside(fig, axes[0])
    fig.suptitle(f"Training curves on the training batches ({what})", fontsize=10)
    _save(fig, path)
    return what


def plot_tracking(rows: list[dict], path: str | Path) -> None:
    """LC and WR against TQ, one point per run."""
    fig, axes = _figure(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, metric in zip(axes, ("wr", "lc")):
        _scatter_by_method(ax, rows, "tq", metric)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set_xlabel("TQ (true-quality win rate)")
        ax.set_title(f"{METRICS[metric]} vs TQ")
    axes[0].set_ylabel("judge win rate")
    legend_outside(fig, axes[0])
    lo = min(min(r["tq"], r["wr"], r["lc"]) for r in rows) - 0.02
    hi = max(max(r["tq"], r["wr"], r["lc"]) for r in rows) + 0.02
    for ax in axes:
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    fig.suptitle(f"Judge win rates against the truth: one point per run ({len(rows)} runs); dashed: y = x",
                 fontsize=10)
    _save(fig, path)


def plot_frontier(rows: list[dict], path: str | Path) -> None:
    """TQ and LC against KL(policy || reference), one point per run: what each method buys per nat moved."""
    fig, axes = _figure(1, 2, figsize=(10, 4), sharex=True)
    for ax, metric in zip(axes, ("tq", "lc")):
        _scatter_by_method(ax, rows, "kl", metric)
        ax.set_xlabel("KL(policy || reference), nats")
        ax.set_ylabel(METRICS[metric])
        ax.set_title(f"{METRICS[metric]} vs KL")
    legend_outside(fig, axes[0])
    fig.suptitle(f"What each method buys per nat moved: one point per run ({len(rows)} runs)", fontsize=10)
    _save(fig, path)


def plot_bars(rows: list[dict], methods: Sequence[str], path: str | Path) -> str:
    """One cell's LC, WR, TQ per method, with 95% intervals over seeds (the demo's plot); returns the caption."""
    metrics = ("lc", "wr", "tq")
    fig, ax = _figure(figsize=(6.4, 4.2))
    width = 0.8 / len(methods)
    seeds = min(sum(r["method"] == m for r in rows) for m in methods)
    for i, m in enumerate(methods):
        ivs = [interval([value(r, k) for r in rows if r["method"] == m]) for k in metrics]
        err = [0 if math.isnan(iv.half) else iv.half for iv in ivs]
        ax.bar(np.arange(len(metrics)) + i * width, [iv.mean for iv in ivs], width, yerr=err, capsize=3, label=m)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="0.5: even with the reference")
    ax.set_xticks(np.arange(len(metrics)) + width * (len(methods) - 1) / 2, [METRICS[k] for k in metrics])
    ax.set_xlabel("metric (LC: length-controlled, WR: raw, TQ: true quality)")
    ax.set_ylabel("win rate vs reference")
    legend_outside(fig, ax, "lower center", ncols=len(methods) + 1)
    bars = "error bars: 95% t-interval of the mean over seeds" if seeds > 1 else "one seed: no error bars"
    fig.suptitle(f"Win rates per method in one cell\nbars: mean over {seeds} seed(s); {bars}", fontsize=10)
    _save(fig, path)
    return f"Win rates per method: mean over {seeds} seed(s); {bars}"
