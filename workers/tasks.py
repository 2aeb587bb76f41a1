"""RQ tasks. Each takes a run folder and a chunk number (never a client or a DataFrame).

A task reads its chunk's items from the run folder, labels each with the judge
the run's manifest describes (built once per worker process), and writes the
chunk's Parquet part and completion marker. It is idempotent: a chunk already
marked done is skipped, and redoing a chunk rewrites the same single part.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from service.judge import JudgeResult, make_judge
from service.output import labeled_row
from service.samples import Status
from service.store import RunStore
from service.taxonomy import load_taxonomy


def label_chunk(run_dir: str, chunk: int) -> dict:
    """Label one chunk of a run and store its part.

    Returns:
        ``{"chunk", "rows", "skipped", "status_counts"}`` (also kept in the marker file).
    """
    store = RunStore(Path(run_dir))
    if store.is_done(chunk):
        return {"chunk": chunk, "skipped": True, **store.marker(chunk)}
    manifest = store.manifest()
    judge = make_judge(manifest["judge"])
    taxonomy = load_taxonomy()
    provenance = {**taxonomy.provenance(), "code_version": manifest["code_version"], "run_key": manifest["run_key"]}
    rows = []
    for item in store.read_chunk(chunk):
        try:
            result = judge.label(item)
        except Exception as e:  # a bug must not lose the sample: record it as a judge error
            result = JudgeResult(
                status=Status.judge_error, labels=None, raw_texts=[], finish_reason=None,
                prompt_tokens=0, completion_tokens=0, attempts=0, model=judge.model, backend=judge.backend,
                error=f"{type(e).__name__}: {e} | {traceback.format_exc(limit=3)}", latency_s=0.0,
                request_hash="", prompt_ref="",
            )
        rows.append(labeled_row(item, result, taxonomy, provenance))
    store.write_part(chunk, rows)
    return {"chunk": chunk, "skipped": False, **store.marker(chunk)}



def calibrate(gold_path: str, judge: dict, options: dict) -> str:
    """Run a calibration inside this worker (labels in-process); return the record id."""
    from calibration.run import run_calibration

    record = run_calibration(Path(gold_path), judge, redis_url="", workers=0, inline=True, **options)
    return record["id"]
