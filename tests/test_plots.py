"""The report's and ``adadpo diagnose``'s figures say what they show and keep their legends off the data:
every figure has a title, every axes an x label, and every legend lies outside every axes (display coordinates,
after layout), inside the figure. The curve statistics (median over cells, interquartile band) are checked
against hand-computed values."""

from __future__ import annotations

import argparse
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from adadpo.bench import figures as plots
from adadpo.cli.diagnose import imbalance_figure
from adadpo.plotting import pyplot


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def assert_readable(fig, labels: set[str]) -> None:
    """``fig`` titled, its axes labelled, one legend listing ``labels``, no legend over any axes."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    suptitle = fig._suptitle.get_text() if fig._suptitle else ""
    assert suptitle or all(ax.get_title() for ax in axes), "figure without a title"
    assert all(ax.get_xlabel() for ax in axes), [ax.get_title() for ax in axes if not ax.get_xlabel()]
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    if not labels:
        assert not legends
        return
    assert len(legends) == 1
    legend = legends[0]
    assert labels <= {t.get_text() for t in legend.get_texts()}
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:  # the whole plotting area, so no line, point, band or bar can be under the legend
        assert not _overlaps(box, ax.get_window_extent(renderer)), f"legend covers axes {ax.get_title()!r}"
    titles = [ax.title for ax in axes] + ([fig._suptitle] if fig._suptitle else [])
    for title in titles:
        assert not _overlaps(box, title.get_window_extent(renderer)), f"legend covers the title {title.get_text()!r}"
        extent = title.get_window_extent(renderer)
        assert fig.bbox.x0 <= extent.x0 and extent.x1 <= fig.bbox.x1, f"title cut off: {title.get_text()!r}"
    assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1), "legend cut off"


@pytest.fixture
def figures(monkeypatch):
    """The figures the report's plot functions build, kept open instead of saved."""
    kept = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: kept.append(fig))
    yield kept
    for fig in kept:
        pyplot().close(fig)


def _rows(levels: dict[str, list[float]], seeds=(0, 1)) -> list[dict]:
    """Runs of each method in ``len(levels[m])`` cells; in cell i every curve is the constant ``levels[m][i]``
    shifted by ``+-0.5`` between the two seeds (so each cell's seed mean is ``levels[m][i]``)."""
    rows = []
    for m, per_cell in levels.items():
        for i, level in enumerate(per_cell):
            for s in seeds:
                y = level + (0.5 if s else -0.5)
                curve = {"step": [1, 2, 3], **{key: [y, y, y] for key, _ in plots.CURVES}}
                rows.append({"method": m, "beta": 0.1, "learning_rate": 1e-4 * (i + 1), "seed": s, "lc": 0.5 + y / 100,
                             "wr": 0.55, "tq": 0.5, "kl": 1.0 + i, "curves": curve})
    return rows


def test_curves_median_over_cells_and_interquartile_band(figures):
    rows = _rows({"DPO": [1.0, 2.0, 10.0], "AdaDPO": [0.0, 0.0, 3.0]})
    what = plots.plot_curves(rows, ["DPO", "AdaDPO"], "unused.png")
    assert what == ("line: median over the 3 cells (β x lr) of the mean over seeds; "
                    "band: 25th to 75th percentile over cells")
    (fig,) = figures
    assert_readable(fig, {"DPO", "AdaDPO"})
    assert what in fig._suptitle.get_text()
    ax = fig.axes[0]
    np.testing.assert_allclose([line.get_ydata() for line in ax.lines], [[2.0] * 3, [0.0] * 3])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]  # DPO: 25th..75th percentile of (1, 2, 10)
    assert band.min() == pytest.approx(1.5) and band.max() == pytest.approx(6.0)


def test_curves_of_one_cell_band_over_seeds_and_many_methods_without_bands(figures):
    what = plots.plot_curves(_rows({"DPO": [1.0]}), ["DPO"], "unused.png")
    assert what == "line: mean over seeds; band: min to max over seeds"
    band = figures[0].axes[0].collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.5) and band.max() == pytest.approx(1.5)

    methods = {f"variant {i}": [float(i), i + 1.0] for i in range(10)}  # an ablation: ten lines, no bands
    what = plots.plot_curves(_rows(methods), list(methods), "unused.png", band=False)
    assert what == "line: median over the 2 cells (β x lr) of the mean over seeds"
    assert_readable(figures[1], set(methods))
    assert not figures[1].axes[0].collections


def test_scatter_heatmap_and_bar_figures_are_titled_with_legends_off_the_data(figures):
    rows = _rows({"DPO": [1.0, 2.0, 3.0], "AdaDPO": [1.0, 1.5, 2.0]})
    plots.plot_tracking(rows, "unused.png")
    plots.plot_frontier(rows, "unused.png")
    plots.plot_heatmaps(rows, "DPO", "AdaDPO", "unused.png")
    caption = plots.plot_bars([r for r in rows if r["learning_rate"] == 1e-4], ["DPO", "AdaDPO"], "unused.png")
    tracking, frontier, heatmaps, bars = figures
    for fig in (tracking, frontier):
        assert_readable(fig, {"DPO", "AdaDPO"})
    assert_readable(heatmaps, set())
    assert_readable(bars, {"DPO", "AdaDPO", "0.5: even with the reference"})
    assert caption == "Win rates per method: mean over 2 seed(s); error bars: 95% t-interval of the mean over seeds"
    title = ("Win rates per method in one cell\n"
             "bars: mean over 2 seed(s); error bars: 95% t-interval of the mean over seeds")
    assert bars._suptitle.get_text() == title
    # the error bars are the intervals' half-widths: seeds at level -+0.5, lc = 0.5 + y / 100
    half = plots.interval([0.5 + 0.5 / 100, 0.5 + 1.5 / 100]).half
    err = bars.axes[0].containers[0].lines[2][0].get_segments()[0][:, 1]  # DPO's LC bar
    assert err.max() - err.min() == pytest.approx(2 * half)


def test_diagnose_histogram_legend_leaves_every_kappa_line_visible():
    log_rho = torch.linspace(-3.0, 3.0, 200, dtype=torch.float64)
    kappas = {2.0: 0.58, 10.0: 0.066, 100.0: 0.0}
    stats = SimpleNamespace(log_rho=log_rho, clip_fractions=kappas, num_pairs=200, rejected_dominant=0.5)
    args = argparse.Namespace(loss="dpo", balance_level="token", balance_use_reference=False,
                              dataset_name="data/pairs/", dataset_train_split="train")
    fig = imbalance_figure(stats, args)
    try:
        assert_readable(fig, {"0: balanced", "±log 10: clip binds on 6.6%"})
        ax = fig.axes[0]
        drawn = sorted(line.get_xdata()[0] for line in ax.lines)
        assert drawn == pytest.approx(sorted([0.0] + [s * math.log(k) for k in kappas for s in (1, -1)]))
        assert "200 pairs of pairs [train]" in ax.get_title()
    finally:
        pyplot().close(fig)
