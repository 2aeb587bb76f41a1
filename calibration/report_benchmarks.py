"""The calibration report's per-benchmark section: each benchmark's own agreement beside its
leave-one-benchmark-out figure (record field ``per_benchmark``, :mod:`calibration.per_benchmark`).

Every value comes from the record; nothing is recomputed. Rendered by the templates of
:mod:`calibration.report`.
"""

from __future__ import annotations

from typing import Any

from slicelab.calibration.per_benchmark import MIN_HELDOUT
from slicelab.calibration.report_content import Cell, axis_title, number

#: Header of the per-benchmark table.
PER_BENCHMARK_HEAD = ["benchmark", "axis", "n held-out\n(scored on the axis)", "labeler\nselected for the axis",
                      "own κ [95% CI]\ntrained on the full pool", "own accuracy",
                      "LOBO κ\ntrained without this benchmark", "LOBO accuracy", "own − LOBO\nκ", "reading"]
#: Labelers that leave-one-benchmark-out never measures (they call the LLM judge).
NO_LOBO = ("judge", "judge_sc", "cascade")
#: Own κ at least this much above LOBO κ reads as "better with its own gold items".
HELPS = 0.1
#: A benchmark with too few held-out items, in words.
TOO_FEW = "too few held-out items to judge"


def per_benchmark_of(record: dict) -> dict[str, Any] | None:
    """The record's ``per_benchmark`` (None in records made before it was recorded)."""
    pb = record.get("per_benchmark")
    return pb if isinstance(pb, dict) else None


def per_benchmark_table(record: dict) -> tuple[list[str], list[list[Cell]]] | None:
    """Rows = benchmark × axis: held-out n (items scored on the axis), the selected labeler, its own κ [CI] and
    accuracy on the benchmark's held-out items, its leave-one-benchmark-out κ and accuracy, the κ difference,
    and a reading
    (:data:`TOO_FEW` below :data:`calibration.per_benchmark.MIN_HELDOUT` items). None without ``per_benchmark``."""
    pb = per_benchmark_of(record)
    if pb is None:
        return None
    axes = record.get("axes", {})
    rows = []
    for bench, entry in pb.items():
        n_heldout = entry.get("n_heldout", 0)
        for axis, a in (entry.get("axes") or {}).items():
            n = a.get("n")
            shown_n = str(n_heldout) if n in (None, n_heldout) else f"{n_heldout} ({n})"
            rows.append([Cell(str(bench), num=False), Cell(axis_title(axis, axes.get(axis) or {}), num=False),
                         Cell(shown_n), Cell(str(a.get("labeler", "?")), num=False), _own_cell(a),
                         Cell(number(a["accuracy"])) if a.get("accuracy") is not None
                         else Cell("—", "no held-out item scored on this axis"),
                         _lobo_cell(record, a, "lobo_kappa"), _lobo_cell(record, a, "lobo_accuracy"), _diff_cell(a),
                         Cell(_reading(n_heldout, a), num=False)])
    return PER_BENCHMARK_HEAD, rows


def _own_cell(a: dict) -> Cell:
    """Own κ with its interval, or "—" with the reason."""
    kappa, lo, hi = a.get("kappa"), a.get("kappa_ci_low"), a.get("kappa_ci_high")
    if kappa is None:
        return Cell("—", a.get("kappa_undefined") or "Cohen's kappa undefined on these items")
    if lo is None or hi is None:
        return Cell(f"{kappa:.2f} [—]", "interval undefined")
    return Cell(f"{kappa:.2f} [{lo:.2f}, {hi:.2f}]")


def _lobo_cell(record: dict, a: dict, key: str) -> Cell:
    """A leave-one-benchmark-out figure (``key``: ``lobo_kappa`` or ``lobo_accuracy``), or "—" with why there is none."""
    if a.get(key) is not None:
        return Cell(number(a[key]))
    if not isinstance(record.get("leave_one_benchmark_out"), dict):
        return Cell("—", "leave-one-benchmark-out was not computed for this record")
    if a.get("labeler") in NO_LOBO:
        return Cell("—", "leave-one-benchmark-out measures only the labelers without an LLM")
    if a.get("lobo_n"):
        return Cell("—", "Cohen's kappa undefined on these predictions")
    return Cell("—", "no leave-one-benchmark-out figure for this benchmark")


def _diff_cell(a: dict) -> Cell:
    if a.get("kappa") is None or a.get("lobo_kappa") is None:
        return Cell("—", "needs both kappas")
    return Cell(f"{a['kappa'] - a['lobo_kappa']:+.2f}")


def _reading(n_heldout: int, a: dict) -> str:
    """The row in words: too few items, or how own κ compares with LOBO κ (a difference of :data:`HELPS` or more)."""
    if n_heldout < MIN_HELDOUT:
        return f"{TOO_FEW} (n < {MIN_HELDOUT})"
    if (a.get("n") or 0) < MIN_HELDOUT:
        return f"too few items scored on this axis to judge (n < {MIN_HELDOUT})"
    if a.get("kappa") is None:
        return "κ undefined (one class on these items): compare accuracies"
    if a.get("lobo_kappa") is None:
        return ""
    diff = a["kappa"] - a["lobo_kappa"]
    if diff >= HELPS:
        return "better with its own gold items"
    return "worse with its own gold items" if diff <= -HELPS else "about the same without its own gold items"


def per_benchmark_text(record: dict) -> tuple[str, list[str]]:
    """The section's explanation, and plain lines: benchmarks with too few held-out items, records without it."""
    pb = per_benchmark_of(record)
    if pb is None:
        return ("This record predates per-benchmark agreement: calibrate again to see each benchmark's own "
                "agreement beside its leave-one-benchmark-out figure."), []
    intro = ("Own κ: the selected labeler of each axis, trained on the full exemplar pool (which holds the "
             "benchmark's own pool items), measured on that benchmark's held-out items only. LOBO κ: the same "
             "labeler trained on the other benchmarks only (leave-one-benchmark-out). Own κ well above "
             "LOBO κ means the benchmark's gold items made its labels better; own κ near LOBO κ means they did "
             f"not add much. With fewer than {MIN_HELDOUT} held-out items a benchmark's κ is too uncertain "
             "to judge. Where a benchmark's gold labels use one class on an axis, κ is undefined there: compare "
             "the accuracies. Operation axes: primary operation.")
    few = [f"{b} ({e.get('n_heldout', 0)} held-out)" for b, e in pb.items() if e.get("n_heldout", 0) < MIN_HELDOUT]
    lines = []
    if few:
        lines.append(f"Too few held-out items to judge: {', '.join(few)}. Add gold items for "
                     f"{'these benchmarks' if len(few) > 1 else 'this benchmark'} before trusting its own κ.")
    return intro, lines
