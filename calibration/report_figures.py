"""Figures of the calibration report: per-axis confusion matrices and judge accuracy vs coverage.

Drawn with ``matplotlib.figure.Figure`` on the Agg canvas (no pyplot, so no global figure
registry and no GUI backend) and returned as base64 PNG data URIs; each figure is cleared after
it is encoded (:func:`service.report_figures.png_data_uri`).
"""

from __future__ import annotations

from slicelab.service.report_figures import png_data_uri


def confusion_png(axis: str, confusion: dict) -> str | None:
    """Heatmap of a confusion matrix (rows = gold, columns = judge, counts written in) as a PNG data URI."""
    from matplotlib.figure import Figure

    labels, matrix = confusion.get("labels") or [], confusion.get("matrix") or []
    if not labels:
        return None
    k = len(labels)
    fig = Figure(figsize=(max(4.2, 0.52 * k + 2.6), max(3.4, 0.45 * k + 2.0)))
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(1, max(max(r) for r in matrix)))
    top = max(1, max(max(r) for r in matrix))
    for i, row in enumerate(matrix):
        for j, c in enumerate(row):
            ax.text(j, i, str(c), ha="center", va="center", fontsize=8 if k > 8 else 9,
                    color="white" if c > top / 2 else ("#9ca3af" if c == 0 else "#111827"))
    ax.set_xticks(range(k), labels, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("judge label")
    ax.set_ylabel("gold label")
    ax.set_title(f"{axis}: rows = gold, columns = judge", fontsize=10)
    return png_data_uri(fig)


def coverage_png(record: dict) -> str | None:
    """Judge accuracy vs coverage (confidence thresholds), one line per axis, as a PNG data URI."""
    from matplotlib.figure import Figure

    curves = {a: [(p["coverage"], p["accuracy"]) for p in m.get("coverage") or []
                  if p.get("coverage") is not None and p.get("accuracy") is not None]
              for a, m in record.get("axes", {}).items()}
    if not any(curves.values()):
        return None
    fig = Figure(figsize=(7.2, 4.2))
    ax = fig.add_subplot()
    markers = "osD^vP*X"
    for i, (axis, pts) in enumerate(curves.items()):
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker=markers[i % len(markers)], label=axis, alpha=0.85)
    ax.set_xlim(-0.03, 1.05)
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel("coverage (share of items with confidence ≥ threshold)")
    ax.set_ylabel("judge accuracy on covered items")
    ax.set_title("accuracy vs coverage", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return png_data_uri(fig)
