"""Evidence an engineer can check by hand: the label/result join, example outputs, output
length and finish_reason distributions per run, and the calibration state of the labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from slicelab.service.errors import ConfigError
from slicelab.service.slices import SLICE_AXES, axis_verdicts

#: Characters of an output's end shown in an example.
TAIL_CHARS = 300
#: Default number of examples per weak slice and per failure mode.
N_EXAMPLES = 3
#: Output-length histogram bin edges, in characters (the last bin is open).
LENGTH_BINS = (0, 250, 500, 1000, 2000, 4000, 8000, 16000)
#: Label axis whose labeler and gate decide ``primary_operation``.
_AXIS_SOURCE = {"primary_operation": "solving_operations"}


def join_report(labels: pd.DataFrame, results: pd.DataFrame, runs: list[str]) -> dict[str, Any]:
    """How the labels and the runs' results join on the sample id.

    Args:
        labels: a labeled table (``id``, ``status``).
        results: a results table (``sample_id``, ``run``).
        runs: the runs compared.

    Returns:
        ``{"n_labels", "n_labeled", "n_results": {run: n}, "n_matched", "n_results_unmatched",
        "n_labels_unmatched", "unmatched_result_ids" (≤ 5), "unmatched_label_ids" (≤ 5)}``;
        matched = labeled sample ids with results in every run.

    Raises:
        ConfigError: no labeled sample id has results in every run; the message shows example ids
            of both sides and the ``--id-field`` option.
    """
    labeled = labels.loc[labels["status"] == "labeled", "id"].astype(str) if "status" in labels else labels["id"]
    label_ids = set(labeled.tolist())
    per_run = {r: set(results.loc[results["run"] == r, "sample_id"].astype(str).tolist()) for r in runs}
    in_all = set.intersection(*per_run.values()) if per_run else set()
    matched = label_ids & in_all
    res_only = sorted(set().union(*per_run.values()) - label_ids)
    lab_only = sorted(label_ids - in_all)
    out = {"n_labels": int(len(labels)), "n_labeled": len(label_ids),
           "n_results": {r: len(v) for r, v in per_run.items()}, "n_matched": len(matched),
           "n_results_unmatched": len(res_only), "n_labels_unmatched": len(lab_only),
           "unmatched_result_ids": res_only[:5], "unmatched_label_ids": lab_only[:5]}
    if not matched:
        raise ConfigError(
            f"no result sample id matches a labeled sample: {len(label_ids)} labeled ids (e.g. "
            f"{', '.join(sorted(label_ids)[:5]) or 'none'}), results of {', '.join(runs)} "
            f"{'/'.join(str(len(v)) for v in per_run.values())} ids (e.g. {', '.join(res_only[:5]) or 'none'}); "
            "check that both come from the same benchmark, or pick the results' id field with --id-field")
    return out


def tail(text: Any, n: int = TAIL_CHARS) -> str | None:
    """The last ``n`` characters of an output (``…`` in front when cut); None for a missing output."""
    if not isinstance(text, str):
        return None
    return text if len(text) <= n else "…" + text[-n:]


def examples(ids: list[str], base: pd.DataFrame, cand: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    """The first ``n`` of ``ids`` (sorted) with the end of the baseline and candidate outputs.

    Args:
        ids: sample ids.
        base, cand: the two runs' results indexed by ``sample_id`` (``output``, ``finish_reason``,
            ``correct``, ``extracted_answer``).
        n: how many.

    Returns:
        ``[{"sample_id", "baseline_correct", "candidate_correct", "baseline_finish_reason",
        "candidate_finish_reason", "baseline_answer", "candidate_answer", "baseline_output_tail",
        "candidate_output_tail"}]`` (tails of :data:`TAIL_CHARS` characters).
    """
    out = []
    for sid in sorted(ids)[: max(n, 0)]:
        b, c = base.loc[sid], cand.loc[sid]
        out.append({"sample_id": sid, "baseline_correct": bool(b["correct"]), "candidate_correct": bool(c["correct"]),
                    "baseline_finish_reason": _str(b.get("finish_reason")),
                    "candidate_finish_reason": _str(c.get("finish_reason")),
                    "baseline_answer": _str(b.get("extracted_answer")), "candidate_answer": _str(c.get("extracted_answer")),
                    "baseline_output_tail": tail(b.get("output")), "candidate_output_tail": tail(c.get("output"))})
    return out


def run_profile(rows: pd.DataFrame) -> dict[str, Any]:
    """finish_reason counts and the output-length histogram of one run's results.

    Args:
        rows: ``DataFrame[output, finish_reason, ...]`` of one run.

    Returns:
        ``{"n", "finish_reason": {reason: count} ("unknown" when missing), "output_chars":
        {"edges": [...], "counts": [...], "median", "p90", "max"}}``; lengths in characters,
        bin i holds ``edges[i] <= length < edges[i+1]``, the last bin is ``>= edges[-1]``.
    """
    reasons = rows["finish_reason"].map(lambda v: v if isinstance(v, str) and v else "unknown")
    output = rows["output"]
    if isinstance(output.dtype, pd.StringDtype):  # characters of each output (0 when missing), without a call per row
        lengths = output.str.len().fillna(0).to_numpy(dtype=np.int64)
    else:
        lengths = output.map(lambda v: len(v) if isinstance(v, str) else 0).to_numpy()
    idx = np.searchsorted(np.asarray(LENGTH_BINS), lengths, side="right") - 1
    counts = np.bincount(idx, minlength=len(LENGTH_BINS)) if len(lengths) else np.zeros(len(LENGTH_BINS), int)
    return {"n": int(len(rows)), "finish_reason": {k: int(v) for k, v in reasons.value_counts().items()},
            "output_chars": {"edges": list(LENGTH_BINS), "counts": [int(x) for x in counts],
                             "median": float(np.median(lengths)) if len(lengths) else None,
                             "p90": float(np.percentile(lengths, 90)) if len(lengths) else None,
                             "max": int(lengths.max()) if len(lengths) else None}}


def calibration_state(labels: pd.DataFrame, meta: dict[str, Any]) -> dict[str, Any]:
    """Which slice axes are gated, which were used, and which labeler made each.

    Args:
        labels: the labeled table (``gate_<axis>``, ``labeler_<axis>`` columns when present).
        meta: a slice-index meta (``axes_used``, ``allow_ungated``, ``calibration_id``).

    Returns:
        ``{"calibration_id", "allow_ungated", "axes": [{"axis", "gate", "used", "labelers":
        {labeler: n}}]}`` (labelers over labeled rows; empty when the table has no such column).
    """
    verdicts = axis_verdicts(labels)
    labeled = labels[labels["status"] == "labeled"] if "status" in labels else labels
    axes = []
    for axis in SLICE_AXES:
        col = f"labeler_{_AXIS_SOURCE.get(axis, axis)}"
        who = labeled[col].dropna().value_counts().to_dict() if col in labeled else {}
        axes.append({"axis": axis, "gate": verdicts[axis], "used": axis in (meta.get("axes_used") or []),
                     "labelers": {str(k): int(v) for k, v in who.items()}})
    return {"calibration_id": meta.get("calibration_id"), "allow_ungated": bool(meta.get("allow_ungated")),
            "axes": axes}


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None
