"""Use case: label pretraining shards (CLI ``label-shard``).

Stages, each resumable from the run folder (``-o``):

1. :func:`start` — the run folder (options, judge and shards in its run key);
2. :func:`index` — the dedup index and the seeded judge sample;
3. :func:`student` — the judge labels the sample and a student is trained on it (or a saved
   student is used);
4. :func:`label` — every row range is labeled (student, judge labels of the sample, duplicates);
5. :func:`finish` — the run summary (``summary.json``).

Stages 3 and 4 run their jobs on the job engine; progress reaches the caller through
``progress(name, total, done)``, a context manager that yields the function to call with each
finished job's rows.
"""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from redis import Redis

from slicelab.service.output import check_writable_dir
from slicelab.service.redis_conn import resolve_redis_url
from slicelab.service.shard_runner import (ShardOptions, ensure_index, judge_jobs, label_jobs, plan_shard_run,
                                           retry_judge_errors, run_jobs, summarize, train_stage, trim_memory,
                                           use_saved_student)
from slicelab.service.shard_store import ShardRunStore

Progress = Callable[[str, int, int], AbstractContextManager[Callable[[int], None]]]


@dataclass
class ShardRun:
    """A shard run in progress.

    Attributes:
        store: the run folder; resumed: it held this run already.
        index: the index summary (``n_rows`` per shard, ``n_distinct``, ``n_duplicates``,
            ``n_rejected``, ``n_sample``), once :func:`index` ran.
        redis_url, redis_origin: the Redis the jobs go through (see
            :func:`slicelab.service.redis_conn.resolve_redis_url`).
        timings: seconds per stage (``index_s``, ``judge_s``, ``train_s``, ``label_s``,
            ``total_s``) and ``label_rows`` (rows labeled by this command).
    """

    store: ShardRunStore
    resumed: bool
    index: dict[str, Any] = field(default_factory=dict)
    redis_url: str = ""
    redis_origin: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)


def start(shards: list[str], output: Path, options: ShardOptions, judge: dict[str, Any]) -> ShardRun:
    """Create the run folder in ``output``, or find the same run there to resume.

    ``judge``: keyword arguments of :func:`slicelab.service.judge.judge_spec`; a run that never
    asks the judge (no judge sample, no routing) builds none.

    Raises:
        SlicelabError: an unwritable ``output``, bad options or judge, another run in ``output``.
    """
    check_writable_dir(output, "-o")
    spec, config_hash = {"backend": "none"}, ""
    if options.judge_sample or options.route_below is not None:
        from slicelab.service.judge import judge_spec
        from slicelab.service.labeler_factory import make_judge

        spec = judge_spec(**judge)
        config_hash = make_judge(spec).config_hash()
    store, resumed = plan_shard_run(shards, output, options, spec, config_hash)
    return ShardRun(store, resumed)


def index(run: ShardRun, on_rows: Callable[[int], None] | None = None) -> None:
    """Build (or read) the dedup index; find the run's Redis. ``on_rows`` gets rows as they are read."""
    run.index = ensure_index(run.store, on_rows=on_rows)
    trim_memory()
    run.timings["index_s"] = time.perf_counter() - run.started
    run.redis_url, run.redis_origin = resolve_redis_url(run.store.root / "redis")


def student(run: ShardRun, conn: Redis, *, queue: str, workers, saved: str | None, progress: Progress,
            on_status: Callable[[str], None], on_note: Callable[[str], None]) -> dict[str, Any]:
    """The run's student: a saved one (``saved`` hash), or one trained on the judge's labels of the sample.

    ``workers``: the command's local workers (:class:`slicelab.service.engine.LocalWorkers`) or None.

    Returns:
        The student record (``student.json``: ``hash``, ``axes``, ``summaries``, ... or ``reason``).
    """
    store = run.store
    if not store.student_path.is_file():
        if saved:
            use_saved_student(store, saved)
        else:
            jobs = judge_jobs(store)
            if retry_judge_errors(store, jobs):
                on_note("judge jobs with judge_error are asked again")
            t1 = time.perf_counter()
            done = sum(store.marker(j)["rows"] for j in jobs if store.is_done(j))
            with progress("judge sample", run.index["n_sample"], done) as advance:
                run_jobs(store, jobs, conn, queue_name=queue, workers=workers, on_progress=advance,
                         on_status=on_status, on_report=on_status)
            run.timings["judge_s"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            on_note("training the student on the judge sample and measuring it ...")
            train_stage(store)
            run.timings["train_s"] = time.perf_counter() - t1
    return json.loads(store.student_path.read_text())


def label(run: ShardRun, conn: Redis, *, queue: str, workers, progress: Progress,
          on_status: Callable[[str], None]) -> None:
    """Label every row range without a marker (one Parquet part per job)."""
    store = run.store
    jobs = label_jobs(store)
    t1 = time.perf_counter()
    total = sum(run.index["n_rows"])
    done = sum(store.marker(j)["rows"] for j in jobs if store.is_done(j))
    with progress("label rows", total, done) as advance:
        run_jobs(store, jobs, conn, queue_name=queue, workers=workers, on_progress=advance,
                 on_status=on_status, on_report=on_status)
    run.timings["label_s"] = time.perf_counter() - t1
    run.timings["label_rows"] = total - done


def finish(run: ShardRun) -> dict[str, Any]:
    """Remove temporary files and write the run summary.

    Returns:
        The summary (see :func:`slicelab.service.shard_runner.summarize`).
    """
    run.store.remove_temp_files()
    run.timings["total_s"] = time.perf_counter() - run.started
    return summarize(run.store, run.timings)
