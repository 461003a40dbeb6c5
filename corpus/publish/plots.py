"""The figures of a run report: each function takes plain numbers and returns a PNG (bytes).

Pure drawing: nothing here reads a file (``report.py`` reads the tables, through ``schemas/``). It uses
matplotlib's object API (``Figure``), never ``pyplot``: no global state, no display, safe in any
process. The PNGs carry no timestamp or version text, so the same numbers give the same bytes.
Callers pass non-empty data; saying "not in this run" is the report's job.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 100
WIDTH = 7.0  # inches
COLOR = "#4c72b0"
ACCENT = "#c44e52"
MUTED = "#8c8c8c"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _label_bars(ax, bars, values: Sequence[float], horizontal: bool) -> None:
    """Write each bar's value at its end; counts get whole-number ticks."""
    if all(float(v).is_integer() for v in values):
        (ax.xaxis if horizontal else ax.yaxis).set_major_locator(MaxNLocator(nbins=4, integer=True))
    for bar, v in zip(bars, values):
        text = f"{v:,.0f}" if float(v).is_integer() else f"{v:,.3g}"
        if horizontal:
            ax.annotate(text, (bar.get_width(), bar.get_y() + bar.get_height() / 2), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=8)
        else:
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 2),
                        textcoords="offset points", ha="center", fontsize=8)


def bar_chart(counts: Mapping[str, float], title: str, xlabel: str = "", ylabel: str = "",
              horizontal: bool = False) -> bytes:
    """One bar per key, in the mapping's order, each labelled with its value."""
    labels, values = list(map(str, counts)), list(counts.values())
    height = max(2.5, 0.3 * len(labels) + 1) if horizontal else 3.5
    fig = Figure(figsize=(WIDTH, height))
    ax = fig.add_subplot()
    if horizontal:
        bars = ax.barh(labels, values, color=COLOR)
        ax.invert_yaxis()  # first key on top
    else:
        bars = ax.bar(labels, values, color=COLOR)
        if len(labels) > 8 or max(len(s) for s in labels) > 8:
            ax.tick_params(axis="x", labelrotation=45)
            for t in ax.get_xticklabels():
                t.set_ha("right")
    _label_bars(ax, bars, values, horizontal)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.margins(x=0.08) if horizontal else ax.margins(y=0.12)
    return _png(fig)


def panels(groups: Mapping[str, Mapping[str, float]], title: str, xlabel: str = "",
           marks: Mapping[str, tuple[float, str]] | None = None, horizontal: bool = False) -> bytes:
    """Small multiples: one bar chart per group (e.g. one per grading criterion, or per measure).

    ``marks``: group -> (position, label) of a dashed line (a threshold), drawn across the group's bars.
    """
    marks = marks or {}
    n = len(groups)
    cols = min(n, 2)
    rows = (n + cols - 1) // cols
    most = max((len(g) for g in groups.values()), default=1)  # bars in the fullest panel
    fig = Figure(figsize=(WIDTH, (max(1.4, 0.35 * most + 0.9) if horizontal else 2.4) * rows + 0.5))
    fig.suptitle(title)
    for i, (name, counts) in enumerate(groups.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        labels, values = list(map(str, counts)), list(counts.values())
        if horizontal:
            bars = ax.barh(labels, values, color=COLOR)
            ax.invert_yaxis()
            ax.margins(x=0.25)
        else:
            bars = ax.bar(labels, values, color=COLOR)
            ax.margins(y=0.2)
        _label_bars(ax, bars, values, horizontal)
        ax.set_title(name, fontsize=10)
        if name in marks:
            at, label = marks[name]
            (ax.axhline if horizontal else ax.axvline)(at, color=ACCENT, linestyle="--", linewidth=1.2, label=label)
            ax.legend(fontsize=7, loc="upper left")
        if xlabel and not horizontal:
            ax.set_xlabel(xlabel, fontsize=8)
    fig.tight_layout()
    return _png(fig)


def histogram(series: Mapping[str, Sequence[float]], title: str, xlabel: str, bins: int | Sequence[float] = 30,
              log_x: bool = False, threshold: tuple[float, str] | None = None) -> bytes:
    """Overlaid histograms, one per named series (e.g. extracted vs final corpus); an optional
    ``threshold`` (value, label) is a dashed vertical line."""
    import numpy as np

    fig = Figure(figsize=(WIDTH, 3.5))
    ax = fig.add_subplot()
    every = np.concatenate([np.asarray(v, dtype=float) for v in series.values()])
    if log_x:
        positive = every[every > 0]
        lo, hi = (positive.min(), positive.max()) if positive.size else (1.0, 10.0)
        edges = np.geomspace(lo, hi * 1.0001, (bins if isinstance(bins, int) else len(bins)) + 1) if hi > lo else [lo / 2, lo * 2]
        ax.set_xscale("log")
    elif isinstance(bins, int):
        lo, hi = float(every.min()), float(every.max())
        edges = np.linspace(lo, hi, bins + 1) if hi > lo else [lo - 0.5, lo + 0.5]
    else:
        edges = bins
    colors = [COLOR, ACCENT, MUTED, "#55a868", "#8172b2"]
    for i, (name, values) in enumerate(series.items()):
        values = np.asarray(values, dtype=float)
        if log_x:
            values = values[values > 0]
        ax.hist(values, bins=edges, alpha=0.6 if len(series) > 1 else 1.0, color=colors[i % len(colors)],
                label=f"{name} ({len(values):,})")
    if threshold is not None:
        ax.axvline(threshold[0], color="black", linestyle="--", linewidth=1.2, label=threshold[1])
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    ax.legend(fontsize=8)
    return _png(fig)
