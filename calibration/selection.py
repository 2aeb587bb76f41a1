"""Which labeler a labeling run uses per axis: the calibrated choice, only where it passed the gate.

A calibration record selects, per axis, the labeler with the best lower bound of
Cohen's kappa and gates it. A labeling run uses that labeler on an axis only when
the axis passed the gate for it; on every other axis the LLM judge labels, and
the row records the judge's own verdict (``gate_<axis> = fail`` when it did not
pass either). A labeler that failed the gate never labels anything, however
small or large the gold set behind the record.
"""

from __future__ import annotations

from typing import Any

#: The labeler that labels an axis whose calibrated choice failed the gate.
FALLBACK = "judge"


def gated_selection(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per axis, the labeler a run uses, its verdict and its measured Cohen's kappa.

    Args:
        record: a calibration record (:func:`calibration.run.run_calibration`) with
            ``axes``, ``selection``, ``verdicts`` and ``judge_verdicts``.

    Returns:
        axis → ``{"labeler", "selected", "gate", "kappa", "kappa_ci_low", "kappa_ci_high", "n"}``:
        ``labeler`` is the record's selected labeler when its verdict is ``pass``, else
        :data:`FALLBACK`; ``gate`` is the verdict of the labeler used (``pass``/``fail``);
        kappa figures are that labeler's on the held-out items (operation axes: primary
        operation), None where it was not measured.
    """
    out: dict[str, dict[str, Any]] = {}
    for axis, selected in (record.get("selection") or {}).items():
        passed = record["verdicts"].get(axis) == "pass"
        used = selected if passed else FALLBACK
        metrics = (record.get("axes") or {}).get(axis, {})
        if passed:
            gate = "pass"
        else:
            gate = (metrics.get("labeler_verdicts") or {}).get(FALLBACK) \
                or (record.get("judge_verdicts") or {}).get(axis) or "fail"
        m = (metrics.get("labelers") or {}).get(used) or {}
        if metrics.get("kind") == "operations":
            m = m.get("primary", {})
        ci = m.get("cohen_kappa_ci") or [None, None]
        out[axis] = {"labeler": used, "selected": selected, "gate": gate, "kappa": m.get("cohen_kappa"),
                     "kappa_ci_low": ci[0], "kappa_ci_high": ci[1], "n": m.get("n")}
    return out


def used_selection(record: dict[str, Any]) -> dict[str, str]:
    """axis → the labeler a run uses (see :func:`gated_selection`)."""
    return {a: row["labeler"] for a, row in gated_selection(record).items()}


def used_verdicts(record: dict[str, Any]) -> dict[str, str]:
    """axis → the verdict of the labeler a run uses (see :func:`gated_selection`)."""
    return {a: row["gate"] for a, row in gated_selection(record).items()}
