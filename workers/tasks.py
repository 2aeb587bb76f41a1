"""RQ tasks of label runs and calibrations. Each takes a run folder and a chunk number, or a gold
set and a judge spec (never a client or a DataFrame), and calls ``service`` or ``calibration``.
"""

from __future__ import annotations

from pathlib import Path

from slicelab.service import chunk_labeling


def label_chunk(run_dir: str, chunk: int) -> dict:
    """Label one chunk of a run and store its part (:func:`service.chunk_labeling.label_chunk`).

    Returns:
        ``{"chunk", "rows", "skipped", "status_counts"}`` (also kept in the marker file).
    """
    return chunk_labeling.label_chunk(run_dir, chunk)


def calibrate(gold_path: str, judge: dict, options: dict) -> str:
    """Run a calibration inside this worker (labels in-process); return the record id."""
    from slicelab.calibration.run import run_calibration  # loaded by the first calibration, not by every worker

    record = run_calibration(Path(gold_path), judge, redis_url="", workers=0, inline=True, **options)
    return record["id"]
