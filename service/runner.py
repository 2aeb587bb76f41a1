"""Run a bulk labeling job: prepare the run folder, enqueue chunks on RQ, wait, merge.

The source of truth for progress is the run folder on disk (per-chunk parts and
markers), not Redis: pending work is always "chunks without a marker", so a
re-run, a flushed queue, a restarted Redis or a killed worker never loses or
doubles a sample. :func:`resume_plan` reopens a run from its folder alone
(``slicelab resume RUN_DIR``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd
from redis import Redis
from rq import Queue
from rq.job import Job

from slicelab.service import defaults
from slicelab.service.engine import MAX_REQUEUES, Engine, LocalWorkers, Work, wait
from slicelab.service.errors import ConfigError
from slicelab.service.job_deadline import chunk_job_timeout
from slicelab.service.judge.resilience import paused_workers
from slicelab.service.output import empty_table, rejected_row
from slicelab.service.samples import Document, EvalSample, Rejected, Status
from slicelab.service.store import RunStore, code_version, file_sha256, run_key
from slicelab.service.taxonomy import Kind, load_taxonomy

#: Times a chunk is re-enqueued after its job failed or its worker died.
MAX_CHUNK_REQUEUES = MAX_REQUEUES


@dataclass
class RunPlan:
    """A prepared run: its store, how many items, which chunks remain."""

    store: RunStore
    n_items: int
    n_rejected: int
    n_chunks: int
    pending: list[int]
    resumed: bool


def prepare_run(
    items: Iterable[EvalSample | Document | Rejected],
    *,
    input_path: Path,
    out_path: Path,
    kind: Kind,
    judge: dict[str, Any],
    chunk_size: int = defaults.CHUNK_SIZE,
    options: dict[str, Any] | None = None,
    judge_config_hash: str = "",
    retry_statuses: tuple[str, ...] = (Status.judge_error,),
    meta: dict[str, Any] | None = None,
) -> RunPlan:
    """Create (or find) the run folder for this input + judge + options.

    The run key hashes the input file's path and bytes, the judge spec, the
    judge configuration hash (prompt templates, taxonomy, model) and the
    options, so the same command finds the same folder and resumes it, and a
    changed prompt or taxonomy never mixes with old labels. On resume, finished
    chunks holding a row with a status in ``retry_statuses`` (by default the
    transient ``judge_error``) are redone. The manifest also records the output
    path and ``meta`` (e.g. output format, calibration id; not part of the key),
    for :func:`resume_plan`.
    """
    key = run_key({"input": str(input_path.resolve()), "input_sha256": file_sha256(input_path), "judge": judge,
                   "judge_config_hash": judge_config_hash, "kind": kind, "chunk_size": chunk_size,
                   "options": options or {}})
    store = RunStore(out_path.resolve().parent / defaults.RUNS_DIRNAME / key)
    if store.exists():
        return _reopen(store, retry_statuses)
    accepted: list[EvalSample | Document] = []
    rejected: list[Rejected] = []
    for it in items:
        (rejected if isinstance(it, Rejected) else accepted).append(it)
    offsets = store.write_items(accepted, chunk_size)
    with open(store.rejects_path, "w", encoding="utf-8") as f:
        for r in rejected:
            f.write(r.model_dump_json() + "\n")
    n_chunks = len(offsets) - 1
    store.write_manifest({
        "run_key": key, "kind": kind, "input": str(input_path), "input_sha256": file_sha256(input_path),
        "judge": judge, "chunk_size": chunk_size, "n_items": len(accepted), "n_rejected": len(rejected),
        "n_chunks": n_chunks, "chunk_offsets": offsets, "options": options or {},
        "output": str(out_path.resolve()), "meta": meta or {},
        "code_version": code_version(), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    return RunPlan(store, len(accepted), len(rejected), n_chunks, list(range(n_chunks)), resumed=False)


def resume_plan(run_dir: Path, retry_statuses: tuple[str, ...] = (Status.judge_error,)) -> RunPlan:
    """Reopen a run from its folder alone: pending = chunks without a marker ("input minus stored results").

    Finished chunks holding a ``retry_statuses`` row are redone, as in :func:`prepare_run`.
    Nothing in Redis is needed: a restarted or flushed Redis loses no work.

    Raises:
        ConfigError: ``run_dir`` has no ``manifest.json``, or an invalid one (see :func:`read_manifest`).
    """
    store = RunStore(Path(run_dir))
    if not store.exists():
        raise ConfigError(f"{run_dir}: not a run folder (no manifest.json); runs live in "
                          f"<output folder>/{defaults.RUNS_DIRNAME}/<run_key>/")
    return _reopen(store, retry_statuses)


#: Manifest keys a run cannot be reopened without.
_MANIFEST_KEYS = ("run_key", "kind", "input", "judge", "code_version", "n_items", "n_rejected", "n_chunks")


def read_manifest(store: RunStore) -> dict[str, Any]:
    """The run's manifest, checked.

    Raises:
        ConfigError: ``manifest.json`` is not valid JSON, not an object, or lacks a
            key a run needs (e.g. ``n_chunks``), or its counts are not integers.
    """
    path = store.manifest_path
    try:
        m = store.manifest()
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a valid run manifest (not UTF-8: {e.reason})") from None
    except ValueError as e:
        raise ConfigError(f"{path}: not a valid run manifest (not valid JSON: {e})") from None
    if not isinstance(m, dict):
        raise ConfigError(f"{path}: not a valid run manifest (a JSON {type(m).__name__}, not an object)")
    missing = [k for k in _MANIFEST_KEYS if k not in m]
    if missing:
        raise ConfigError(f"{path}: not a valid run manifest (missing {', '.join(missing)})")
    bad = [k for k in ("n_items", "n_rejected", "n_chunks")
           if not isinstance(m[k], int) or isinstance(m[k], bool) or m[k] < 0]
    if bad:
        raise ConfigError(f"{path}: not a valid run manifest ({', '.join(bad)} not a count)")
    return m


def _reopen(store: RunStore, retry_statuses: tuple[str, ...]) -> RunPlan:
    m = read_manifest(store)
    for c in store.done_chunks():
        if any(store.marker(c)["status_counts"].get(s) for s in retry_statuses):
            store.marker_path(c).unlink()  # the part is rewritten when the chunk is redone
    pending = [c for c in range(m["n_chunks"]) if not store.is_done(c)]
    return RunPlan(store, m["n_items"], m["n_rejected"], m["n_chunks"], pending, resumed=True)


def enqueue_chunk(queue: Queue, store: RunStore, chunk: int) -> Job:
    """Enqueue one chunk job (payload: run folder path and chunk number); its RQ timeout is
    sized from the chunk's items and the judge (:func:`service.job_deadline.chunk_job_timeout`)."""
    m = store.manifest()
    offsets = m.get("chunk_offsets") or []
    n_items = offsets[chunk + 1] - offsets[chunk] if chunk + 1 < len(offsets) else m.get("chunk_size", 1)
    return queue.enqueue(
        "slicelab.workers.tasks.label_chunk", str(store.root), chunk,
        job_id=f"slicelab-{store.root.name}-{chunk:05d}-{uuid.uuid4().hex[:8]}",
        job_timeout=chunk_job_timeout(m["judge"], n_items), result_ttl=defaults.RESULT_TTL_S, failure_ttl=defaults.RESULT_TTL_S,
        description=f"label chunk {chunk} of run {store.root.name}",
    )


def chunk_work(store: RunStore, units: list[int]) -> Work:
    """The engine's view of a label run: chunk numbers, enqueued by :func:`enqueue_chunk`."""
    return Work(store=store, units=list(units), enqueue=lambda q, c: enqueue_chunk(q, store, c),
                label=lambda c: f"chunk {c}", key=str, where=str(store.root))


def execute(plan: RunPlan, connection: Redis, *, queue_name: str = defaults.QUEUE_NAME,
            workers: LocalWorkers | None = None,
            on_progress: Callable[[int], None] | None = None,
            on_status: Callable[[str], None] | None = None,
            on_report: Callable[[str], None] | None = None) -> None:
    """Enqueue the pending chunks and wait until every chunk has its marker (see :mod:`service.engine`).

    Chunks go to the local workers' queue when there are local workers (``workers.queue``, the
    run's own queue: see :func:`service.engine.run_queue`), else to ``queue_name`` where
    ``slicelab worker`` processes listen. A chunk whose job failed, vanished from Redis, or whose
    worker died (process exit or missing heartbeat) is re-enqueued (failures and deaths at most
    MAX_CHUNK_REQUEUES times); dead local workers are replaced. While Redis does not answer, the
    wait goes on; when it answers again, every chunk without a marker is enqueued anew.

    Args:
        on_progress: called with the number of rows finished since the last call.
        on_status: called with a short line when the state changes: Redis
            unreachable, judge paused by open circuit breakers, or ``""`` when normal.
        on_report: called every 30 s (``SLICELAB_REPORT_S``) with the workers alive and what waits.

    Raises:
        ConfigError: a chunk failed more than MAX_CHUNK_REQUEUES times, or local
            workers keep dying.
    """
    engine = Engine(chunk_work(plan.store, plan.pending), connection, workers.queue if workers else queue_name,
                    workers=workers)
    wait(engine, on_progress=on_progress, on_status=on_status, on_report=on_report)


def collect(plan: RunPlan) -> pd.DataFrame:
    """Merge finished parts with rejected rows into the output table (one row per input record).

    Rows come in input order (by ``source_line``; records sharing a line, such as one
    lm-eval record per filter, keep their order) and always carry every column of a
    labeled row, so a file whose every record was rejected gives the same columns.
    """
    m = plan.store.manifest()
    taxonomy = load_taxonomy()
    parts = plan.store.read_parts()
    provenance = {**taxonomy.provenance(), "code_version": m["code_version"], "run_key": m["run_key"]}
    rejected = []
    if plan.store.rejects_path.is_file():
        for line in plan.store.rejects_path.read_text(encoding="utf-8").split("\n"):
            if not line:
                continue
            rejected.append(rejected_row(Rejected.model_validate_json(line), taxonomy, m["kind"], provenance))
    if rejected:
        parts = pd.concat([parts, pd.DataFrame(rejected)], ignore_index=True) if len(parts) else pd.DataFrame(rejected)
    empty = empty_table(taxonomy, m["kind"])
    if "status" not in parts:  # nothing was read at all: an empty table with the full set of columns
        return empty
    columns = list(empty.columns)
    for col in columns:
        if col not in parts:
            parts[col] = None
    parts = parts[columns + [c for c in parts.columns if c not in columns]]
    return parts.sort_values("source_line", kind="stable", na_position="last").reset_index(drop=True)
