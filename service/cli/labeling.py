"""Labeling commands: ``label-benchmark``, ``resume`` and ``worker``."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from slicelab.service import defaults
from slicelab.service.cli.common import (console, fail, fmt, local_workers, sigterm_as_interrupt, stopping_workers,
                                         summary_console)
from slicelab.service.cli.progress import progress_bar
from slicelab.service.cli.options import (JudgeBackend, JudgeOutputForm, JudgeConcurrency, JudgeModel, JudgeUrl, Limit, MaxAttempts,
                                          MaxTokens, NoCache, Queue, ScTemperature, SelfConsistency, Workers)
from slicelab.service.errors import SlicelabError

_Field = lambda what: Annotated[Optional[str], typer.Option(help=f"field holding {what}")]  # noqa: E731


def worker(
    queue: Annotated[list[str], typer.Option(help="RQ queue to listen on (repeat for several)")] = [defaults.QUEUE_NAME],  # noqa: B006
    burst: Annotated[bool, typer.Option(help="exit when the queue is empty")] = False,
    name: Annotated[Optional[str], typer.Option(help="worker name (unique)")] = None,
) -> None:
    """Start an RQ worker that labels chunks (uses REDIS_URL; run one per core on each machine).

    The worker sends a heartbeat every 5 s; a worker that stops sending it (killed, machine
    lost) is known dead after 30 s (SLICELAB_WORKER_DEAD_S) and its job is enqueued again.
    SIGTERM or Ctrl-C stops it after the job it is on.
    """
    from redis import Redis

    from slicelab.service.engine.worker import run_worker
    from slicelab.service.redis_conn import redact_url, resolve_redis_url

    try:
        url, _ = resolve_redis_url(allow_embedded=False)
    except SlicelabError as e:
        fail(e)
    console.print(f"worker on {redact_url(url)}, queue {', '.join(queue)}")
    import slicelab.workers.tasks  # noqa: F401 - imported now, not inside the first job's time limit

    run_worker(Redis.from_url(url), list(queue), name=name, burst=burst)


def label_benchmark(
    input: Annotated[Path, typer.Argument(exists=True, help="JSONL/JSON/CSV/Parquet, BBH, lm-eval samples file or output folder, Inspect log (.json/.eval) or folder of logs")],
    output: Annotated[Path, typer.Option("-o", "--output", help="output file (.parquet or .jsonl)")],
    fmt_: Annotated[Optional[str], typer.Option("--format", help="parquet or jsonl (default: from the output suffix, else parquet)")] = None,
    input_format: Annotated[Optional[str], typer.Option(help="override input format detection")] = None,
    limit: Limit = None,
    workers: Workers = 1,
    chunk_size: Annotated[Optional[int], typer.Option(min=1, help=f"samples per queue job (default {defaults.CHUNK_SIZE}; with --judge-url 8 x --judge-concurrency)")] = None,
    judge_url: JudgeUrl = None,
    judge_model: JudgeModel = None,
    judge_backend: JudgeBackend = None,
    judge_output_form: JudgeOutputForm = None,
    judge_concurrency: JudgeConcurrency = defaults.JUDGE_CONCURRENCY,
    no_cache: NoCache = False,
    max_tokens: MaxTokens = None,
    max_attempts: MaxAttempts = None,
    benchmark: Annotated[Optional[str], typer.Option(help="benchmark name when the records do not say")] = None,
    text_field: _Field("the question") = None,
    id_field: _Field("the sample id") = None,
    reference_field: _Field("the reference answer") = None,
    output_field: _Field("the model output") = None,
    correct_field: _Field("correctness") = None,
    task_field: _Field("the task name") = None,
    queue: Queue = defaults.QUEUE_NAME,
    labeler: Annotated[str, typer.Option(help="selected: per axis, the labeler calibration chose for this judge; judge: the LLM judge on every axis")] = "selected",
    self_consistency: SelfConsistency = 0,
    sc_temperature: ScTemperature = defaults.SC_TEMPERATURE,
) -> None:
    """Label every sample of a benchmark file through RQ workers; write one row per sample."""
    from slicelab.service.readers import FieldMapping
    from slicelab.service.usecases import label_benchmark as usecase

    mapping = FieldMapping(id_field=id_field, question_field=text_field, reference_field=reference_field,
                           output_field=output_field, correct_field=correct_field, task_field=task_field)
    try:
        job = usecase.plan(input, output, fmt=fmt_, input_format=input_format, mapping=mapping, benchmark=benchmark,
                           limit=limit, chunk_size=chunk_size, no_cache=no_cache, labeler=labeler,
                           self_consistency=self_consistency, sc_temperature=sc_temperature,
                           judge=dict(judge_url=judge_url, judge_model=judge_model, backend=judge_backend, output_form=judge_output_form,
                                      max_tokens=max_tokens, max_attempts=max_attempts,
                                      concurrency=judge_concurrency if judge_url else None),
                           on_choice=_show_choice)
    except SlicelabError as e:
        fail(e)
    _run_plan(job, workers=workers, queue=queue)


def _show_choice(choice) -> None:
    """Print why a calibration record does not apply, and the per-axis labelers it selected."""
    for note in choice.notes:
        console.print(escape(note))
    if choice.show_selection:
        _print_selection(choice.record)


def resume(
    run_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="the run folder: <output folder>/.slicelab-runs/<run_key>")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="output file (default: the one the run was started with)")] = None,
    workers: Workers = 1,
    queue: Queue = defaults.QUEUE_NAME,
) -> None:
    """Finish a run from its folder alone: label the chunks without a marker, then write the output."""
    from slicelab.service.usecases.label_benchmark import resume as resume_job

    try:
        job = resume_job(run_dir, output)
    except SlicelabError as e:
        fail(e)
    _run_plan(job, workers=workers, queue=queue)


def _run_plan(job, *, workers: int, queue: str) -> None:
    """Label a prepared run's pending chunks on RQ workers and write its output (label-benchmark, resume)."""
    from redis import Redis

    from slicelab.service.engine import run_queue
    from slicelab.service.redis_conn import redact_url
    from slicelab.service.runner import execute
    from slicelab.service.usecases.label_benchmark import finish_job

    def show(line: str) -> None:  # e.g. the judge is paused or Redis is down: on the bar and in the log
        bar.update(task, description=escape(f"labeling {line}".strip()))
        if line:
            console.print(escape(line))

    plan, url = job.plan, job.redis_url
    done_before = plan.n_chunks - len(plan.pending)
    local = local_workers(url, run_queue(plan.store.root.name), workers, plan.store.root) if plan.pending else None
    console.print(f"run {plan.store.root.name}: {plan.n_items} samples in {plan.n_chunks} chunks"
                  f" ({done_before} already done), {plan.n_rejected} rejected records; Redis: {job.redis_origin} "
                  f"{escape(redact_url(url))}, queue {escape(local.queue if local else queue)}")
    if plan.n_rejected:
        console.print(f"rejected records and reasons: {escape(str(plan.store.rejects_path))}")
    if not workers and plan.pending:
        console.print(f"--workers 0: waiting for `slicelab worker --queue {queue}` processes on this Redis "
                      "to take the jobs (Ctrl-C stops waiting; re-running resumes)")
    previous_sigterm = signal.signal(signal.SIGTERM, sigterm_as_interrupt)  # `kill PID` also stops the workers
    try:
        with stopping_workers(local, plan.store.root, "chunks"), progress_bar(console) as bar:
            done_rows = sum(plan.store.marker(c)["rows"] for c in plan.store.done_chunks())
            task = bar.add_task("labeling", total=plan.n_items, completed=done_rows)
            if plan.pending:
                execute(plan, Redis.from_url(url), queue_name=queue, workers=local,
                        on_progress=lambda n: bar.advance(task, n),
                        on_status=show, on_report=lambda line: console.print(escape(line)))
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    done = finish_job(job)
    console.print(escape(done.note))
    _print_summary(done.table, job.output)
    console.print(escape(done.throughput), soft_wrap=True)


def _print_selection(record: dict) -> None:
    """The labeler each axis will use (only where it passed the gate), with its kappa and verdict."""
    from slicelab.calibration.selection import gated_selection

    out = summary_console()
    out.print(f"labelers from calibration {record['id']}: a labeler is used only where it passed the gate",
              soft_wrap=True)
    t = Table()
    for col in ("axis", "labeler", "κ [95% CI]", "n", "gate"):
        t.add_column(col, no_wrap=True)
    for axis, row in gated_selection(record).items():
        note = "" if row["labeler"] == row["selected"] else f" ({row['selected']} failed)"
        style = "green" if row["gate"] == "pass" else "red"
        t.add_row(axis, row["labeler"] + note,
                  f"{fmt(row['kappa'])} [{fmt(row['kappa_ci_low'])}, {fmt(row['kappa_ci_high'])}]",
                  str(row["n"] if row["n"] is not None else "—"), f"[{style}]{row['gate']}[/{style}]")
    out.print(t)


def _print_summary(df, output: Path) -> None:
    """Status counts, then per task: samples, labeled, and the commonest label (count) per axis."""
    import pandas as pd

    out = summary_console()
    out.print(f"wrote {len(df)} rows to {escape(str(output))}")
    counts = df.groupby("status").size().to_dict()
    out.print("status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if df.empty:
        return
    axes = [a for a in ("task_type", "background_condition", "primary_operation", "output_constraint", "failure_mode")
            if a in df.columns]
    table = Table(title="label counts by task (commonest label, count)", title_justify="left")
    for col in ("task", "n", "labeled", *axes):  # label cells wrap rather than widen the table past 100 columns
        counts = col in ("n", "labeled")
        table.add_column(col, justify="right" if counts else "left", no_wrap=counts, overflow="fold",
                         min_width=len(col) if counts else 8)
    tasks = df["task"].fillna("") if "task" in df else pd.Series([""] * len(df), index=df.index)
    for task, group in df.groupby(tasks.replace("", "(no task)"), sort=True):
        labeled = group[group["status"] == "labeled"]
        cells = []
        for axis in axes:
            vc = labeled[axis].dropna().value_counts()
            cells.append(f"{vc.index[0]} ×{vc.iloc[0]}" if len(vc) else ".")
        table.add_row(str(task), str(len(group)), str(len(labeled)), *cells)
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``worker``, ``label-benchmark`` and ``resume`` to the ``slicelab`` app."""
    app.command("worker")(worker)
    app.command("label-benchmark")(label_benchmark)
    app.command("resume")(resume)
