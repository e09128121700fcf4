"""The dashboard's panels drawn with matplotlib, laid out as in Grafana (24 columns),
from data already fetched (knn_devtools.dashboard_data). No I/O but the figure."""

from __future__ import annotations

import math
from collections.abc import Sequence

# A bare Figure, not pyplot: no global state and no display backend to choose.
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from knn_devtools.dashboard_data import PanelData

_YLABEL = {"percent": "%", "ms": "ms", "percentunit": "ratio", "reqps": "req/s", "short": ""}
# Revision labels carry the index name: the version is what tells lines apart.
# Not ef_search: knn_index_info's is the artifact's build-time default, not the
# revision's serving efSearch (the dashboard hides it too).
_TABLE_COLUMNS = ("index", "version", "metric", "dimension", "m", "ef_construction")


def _timeseries(ax: Axes, data: PanelData, t0: float) -> None:
    for line in data.lines:
        minutes = [(t - t0) / 60 for t in line.times]
        values = [v if math.isfinite(v) else math.nan for v in line.values]
        ax.plot(minutes, values, label=line.label, linewidth=1.2)
    ax.set_xlabel("minutes into the run")
    ax.set_ylabel(_YLABEL.get(data.panel.unit, ""))
    ax.grid(alpha=0.3)
    if data.lines:
        # Drawn inside the axes and kept out of the layout: a long legend must not
        # squeeze the plot to nothing.
        ax.legend(fontsize=6, loc="best").set_in_layout(False)
    else:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")


def _table(ax: Axes, data: PanelData) -> None:
    ax.axis("off")
    merged: dict[str, dict[str, str]] = {}
    for row in data.rows:  # one row per version: the queries' columns merged, as Grafana does
        merged.setdefault(row.get("version", ""), {}).update(row)
    values = [t.column for t in data.panel.targets]
    columns = [c for c in _TABLE_COLUMNS if any(c in r for r in merged.values())] + values
    cells = [[_cell(r.get(c, "")) for c in columns] for _, r in sorted(merged.items())]
    if not cells:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
        return
    table = ax.table(cellText=cells, colLabels=columns, loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)


def _cell(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4f}" if not number.is_integer() else f"{number:.0f}"


def draw(panels: Sequence[PanelData], t0: float, title: str) -> Figure:
    rows: list[list[PanelData]] = [[]]
    width = 0
    for p in panels:
        if width + p.panel.width > 24:
            rows.append([])
            width = 0
        rows[-1].append(p)
        width += p.panel.width
    # Grafana's grid units: a row is as tall as its tallest panel.
    heights = [max(p.panel.height for p in row) for row in rows]
    fig = Figure(figsize=(16, 0.55 * sum(heights)), layout="constrained")
    fig.suptitle(title)
    grid = fig.add_gridspec(len(rows), 24, height_ratios=heights)
    for r, row in enumerate(rows):
        x = 0
        for p in row:
            ax = fig.add_subplot(grid[r, x : x + p.panel.width])
            ax.set_title(p.panel.title, fontsize=10)
            if p.panel.kind == "table":
                _table(ax, p)
            else:
                _timeseries(ax, p, t0)
            x += p.panel.width
    return fig
