"""RQ tasks of ``slicelab label-shard``. Payload: a run folder, a shard path and a row range — never data.

Each task re-reads its rows from the shard by streaming, writes one Parquet part
and then its completion marker (see service.shard_store). A task whose marker
exists returns at once; a task that dies is redone whole by the next attempt.
"""

from __future__ import annotations

from pathlib import Path

from slicelab.service.shard_labeling import judge_schema, judge_tables, label_tables, output_schema
from slicelab.service.shard_store import ShardRunStore, trim_memory
from slicelab.service.taxonomy import load_taxonomy


def judge_range(run_dir: str, shard: str, start: int, end: int) -> dict:
    """Judge the judge-sample rows among rows ``start..end-1`` of ``shard``.

    Returns:
        ``{"job", "skipped", "rows", "status_counts"}`` (rows: documents judged).
    """
    store = ShardRunStore(Path(run_dir))
    job = store.job("judge", shard, start, end)
    if store.is_done(job):
        return {"job": job.name, "skipped": True, **store.marker(job)}
    marker = store.write_part(job, judge_tables(store, job), judge_schema(load_taxonomy()))
    return {"job": job.name, "skipped": False, **marker}


def label_range(run_dir: str, shard: str, start: int, end: int) -> dict:
    """Write the final rows ``start..end-1`` of ``shard`` (student, judge labels, duplicates, rejects).

    Returns:
        ``{"job", "skipped", "rows", "status_counts"}``.
    """
    store = ShardRunStore(Path(run_dir))
    job = store.job("label", shard, start, end)
    if store.is_done(job):
        return {"job": job.name, "skipped": True, **store.marker(job)}
    marker = store.write_part(job, label_tables(store, job), output_schema(load_taxonomy()))
    trim_memory()
    return {"job": job.name, "skipped": False, **marker}
