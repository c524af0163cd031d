"""Matplotlib figures for files: the Agg backend, a constrained layout, legends kept off the data.

Shared by the sweep report's figures (:mod:`adadpo.bench.figures`) and the histogram of ``adadpo diagnose``;
needs matplotlib (the ``trainer`` extra).
"""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(*args, **kwargs):
    """``plt.subplots(*args, **kwargs)`` with the constrained layout, which keeps titles, labels and outside
    legends from overlapping each other and the axes."""
    return pyplot().subplots(*args, layout="constrained", **kwargs)


def legend_outside(fig, ax, where: str = "right upper", **kwargs):
    """One legend for the whole figure from ``ax``'s labelled artists, placed outside every axes (``where`` as
    in matplotlib's ``loc="outside <where>"``; needs a figure from :func:`figure`), so it hides no line or
    point."""
    handles, labels = ax.get_legend_handles_labels()
    return fig.legend(handles, labels, loc=f"outside {where}", fontsize=8, **kwargs)


def save(fig, path: str | Path, dpi: int = 110) -> None:
    """Write ``fig`` to ``path`` and release it."""
    try:
        fig.savefig(path, dpi=dpi)
    finally:
        pyplot().close(fig)
