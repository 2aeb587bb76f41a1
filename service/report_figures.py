"""Figures of the slices, compare and diagnose reports, and the PNG encoding every report uses.

Drawn with ``matplotlib.figure.Figure`` on the Agg canvas (no pyplot, no GUI backend) and
embedded as base64 PNG data URIs, so a report stays one self-contained file.
"""

from __future__ import annotations

import base64
import io
from typing import Any

#: Slices drawn in a figure or listed in a table (largest first).
MAX_ROWS = 30


def png_data_uri(fig) -> str:
    """A ``matplotlib.figure.Figure`` as a base64 PNG data URI (100 dpi; the figure is cleared afterwards)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    finally:
        fig.clear()
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def heatmap(rows: list[dict[str, Any]], runs: list[str]) -> str | None:
    """Pass rate per capability slice (rows, largest first, at most :data:`MAX_ROWS`) and run (columns),
    values written in, as a PNG data URI; None without rows.

    Each row needs ``label``, ``n``, ``run`` and ``pass_rate`` (None: an empty cell).
    """
    import numpy as np
    from matplotlib.figure import Figure

    sizes: dict[str, int] = {}
    for r in rows:
        sizes[r["label"]] = max(sizes.get(r["label"], 0), int(r["n"]))
    labels = sorted(sizes, key=lambda s: -sizes[s])[:MAX_ROWS]
    if not labels:
        return None
    grid = np.full((len(labels), len(runs)), np.nan)
    for r in rows:
        if r["label"] in labels and r.get("pass_rate") is not None:
            grid[labels.index(r["label"]), runs.index(r["run"])] = r["pass_rate"]
    fig = Figure(figsize=(3 + 1.6 * len(runs), 1.2 + 0.32 * len(labels)))
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(runs)), [r[-28:] for r in runs], rotation=20, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), [f"{s[:72]} (n={sizes[s]})" for s in labels], fontsize=7)
    for i in range(len(labels)):
        for j in range(len(runs)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="pass rate", shrink=0.6)
    ax.set_title("Pass rate per capability slice", fontsize=9)
    return png_data_uri(fig)


def deltas(rows: list[dict[str, Any]]) -> str | None:
    """Change candidate − baseline per tested slice with its 95% interval (significant drops in red,
    gains in green) as a PNG data URI; None when no slice was tested.

    Each row: a comparison slice row (``label, n, tested, delta, delta_ci_low, delta_ci_high,
    significant_drop, significant_gain``).
    """
    from matplotlib.figure import Figure

    rows = [r for r in rows if r["tested"]][:MAX_ROWS]
    if not rows:
        return None
    fig = Figure(figsize=(7.5, 1.2 + 0.3 * len(rows)))
    ax = fig.add_subplot()
    for i, r in enumerate(rows):
        color = "#b00020" if r["significant_drop"] else ("#1b7f3b" if r["significant_gain"] else "#777")
        ax.errorbar(r["delta"], i, xerr=[[r["delta"] - r["delta_ci_low"]], [r["delta_ci_high"] - r["delta"]]],
                    fmt="o", color=color, capsize=3, markersize=4)
    ax.axvline(0, color="#333", lw=0.8)
    ax.set_yticks(range(len(rows)), [f"{r['label'][:72]} (n={r['n']})" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("pass rate change, candidate − baseline (Agresti–Min 95% CI)", fontsize=8)
    ax.set_title("Per-slice change (red: significant drop after Benjamini–Hochberg)", fontsize=9)
    return png_data_uri(fig)
