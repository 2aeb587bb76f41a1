"""The ``slicelab`` command line."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from slicelab.service import defaults
from slicelab.service.errors import SlicelabError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
taxonomy_app = typer.Typer(no_args_is_help=True, help="Inspect the label taxonomy.")
app.add_typer(taxonomy_app, name="taxonomy")
console = Console(stderr=True)


def _wide_console() -> Console:
    """A console at least 160 columns wide: summary tables stay legible in logs and pipes."""
    return Console(width=max(160, Console().width))


def _fail(e: Exception) -> None:
    # escaped: error text holds brackets (pip install 'slicelab[vllm]', JSON, paths) that are not markup
    console.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)  # one line, however long
    raise typer.Exit(2)


@taxonomy_app.command("show")
def taxonomy_show(
    kind: str = typer.Option("all", help="eval, document or all"),
    as_json: bool = typer.Option(False, "--json", help="print the generated JSON schemas"),
) -> None:
    """Print the taxonomy: axes, label ids and meanings, version and content hash."""
    from slicelab.service.taxonomy import load_taxonomy

    t = load_taxonomy()
    kinds = ["eval", "document"] if kind == "all" else [kind]
    if as_json:
        out = {k: t.json_schema(k, with_failure_mode=(k == "eval")) for k in kinds}
        typer.echo(json.dumps({**t.provenance(), "schemas": out}, indent=2))
        return
    out = Console()
    out.print(f"[bold]{t.name}[/bold] {t.version}  hash {t.content_hash}  ({t.path})")
    for k in kinds:
        for axis in t.axes(k):
            table = Table(title=f"{k} / {axis.name} ({axis.kind}{', ordered' if axis.ordered else ''})",
                          title_justify="left", show_header=False)
            for label in axis.labels:
                table.add_row(label.id, label.meaning)
            out.print(table)


@app.command("worker")
def worker(
    queue: list[str] = typer.Option([defaults.QUEUE_NAME], help="RQ queue to listen on (repeat for several)"),
    burst: bool = typer.Option(False, help="exit when the queue is empty"),
    name: Optional[str] = typer.Option(None, help="worker name (unique)"),
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
        _fail(e)
    console.print(f"worker on {redact_url(url)}, queue {', '.join(queue)}")
    import slicelab.workers.tasks  # noqa: F401 - imported now, not inside the first job's time limit

    run_worker(Redis.from_url(url), list(queue), name=name, burst=burst)


@app.command("label-benchmark")
def label_benchmark(
    input: Path = typer.Argument(..., exists=True, help="JSONL/JSON/CSV/Parquet, BBH, lm-eval samples file or output folder, Inspect log (.json/.eval) or folder of logs"),
    output: Path = typer.Option(..., "-o", "--output", help="output file (.parquet or .jsonl)"),
    fmt: Optional[str] = typer.Option(None, "--format", help="parquet or jsonl (default: from the output suffix, else parquet)"),
    input_format: Optional[str] = typer.Option(None, help="override input format detection"),
    limit: Optional[int] = typer.Option(None, min=1, help="label only the first N records"),
    workers: int = typer.Option(1, min=0, help="local worker processes to start (0: rely on `slicelab worker` elsewhere)"),
    chunk_size: Optional[int] = typer.Option(None, min=1, help=f"samples per queue job (default {defaults.CHUNK_SIZE}; with --judge-url 8 x --judge-concurrency)"),
    judge_url: Optional[str] = typer.Option(None, envvar="SLICELAB_JUDGE_URL", help="OpenAI-compatible base URL (e.g. vLLM's http://HOST:8000/v1); default: embedded judge"),
    judge_model: Optional[str] = typer.Option(None, envvar="SLICELAB_JUDGE_MODEL", help="served model name"),
    judge_backend: Optional[str] = typer.Option(None, "--judge-backend", envvar="SLICELAB_JUDGE_BACKEND", help="embedded | openai | vllm (offline vllm.LLM on this machine's GPU, --judge-model names the model); default: openai with --judge-url, else embedded"),
    judge_concurrency: int = typer.Option(defaults.JUDGE_CONCURRENCY, min=1, help="with --judge-url: requests each worker keeps in flight"),
    no_cache: bool = typer.Option(False, "--no-cache", help="bypass the Redis label cache: every sample costs a judge call, no label is stored"),
    max_tokens: Optional[int] = typer.Option(None, min=16, help="output tokens per label"),
    max_attempts: Optional[int] = typer.Option(None, min=1, help="attempts per sample on invalid output"),
    benchmark: Optional[str] = typer.Option(None, help="benchmark name when the records do not say"),
    text_field: Optional[str] = typer.Option(None, help="field holding the question"),
    id_field: Optional[str] = typer.Option(None, help="field holding the sample id"),
    reference_field: Optional[str] = typer.Option(None, help="field holding the reference answer"),
    output_field: Optional[str] = typer.Option(None, help="field holding the model output"),
    correct_field: Optional[str] = typer.Option(None, help="field holding correctness"),
    task_field: Optional[str] = typer.Option(None, help="field holding the task name"),
    queue: str = typer.Option(defaults.QUEUE_NAME, help="RQ queue name"),
    labeler: str = typer.Option("selected", help="selected: per axis, the labeler calibration chose for this judge; judge: the LLM judge on every axis"),
    self_consistency: int = typer.Option(0, "--self-consistency", min=0, help="K > 0: the self-consistent judge on every axis (K samples, majority vote per axis, vote share as confidence); overrides --labeler"),
    sc_temperature: float = typer.Option(defaults.SC_TEMPERATURE, "--sc-temperature", min=0.0, help="sampling temperature of the K samples"),
) -> None:
    """Label every sample of a benchmark file through RQ workers; write one row per sample."""
    from itertools import islice

    from slicelab.service.judge import judge_spec
    from slicelab.service.judge.resilience import probe_judge
    from slicelab.service.output import check_output
    from slicelab.service.readers import FieldMapping, read_eval_samples
    from slicelab.service.redis_conn import resolve_redis_url
    from slicelab.service.throughput import label_chunk_size
    from slicelab.service.usecases import label_benchmark as usecase

    try:
        fmt = check_output(output, fmt, input)
        spec = judge_spec(judge_url=judge_url, judge_model=judge_model, backend=judge_backend, max_tokens=max_tokens,
                          max_attempts=max_attempts, concurrency=judge_concurrency if judge_url else None)
        chunk_size = chunk_size or label_chunk_size(spec)
        choice = usecase.choose_labelers(spec, labeler=labeler, self_consistency=self_consistency,
                                         sc_temperature=sc_temperature)
        for note in choice.notes:
            console.print(escape(note))
        if choice.show_selection:
            _print_selection(choice.record)
        probe_judge(choice.spec)
        mapping = FieldMapping(id_field=id_field, question_field=text_field, reference_field=reference_field,
                               output_field=output_field, correct_field=correct_field, task_field=task_field)
        items = read_eval_samples(input, fmt=input_format, mapping=mapping, benchmark=benchmark)
        if limit:
            items = islice(items, limit)
        plan = usecase.prepare(items, choice, input_path=input, out_path=output, chunk_size=chunk_size,
                               options={"limit": limit, "mapping": vars(mapping), "input_format": input_format,
                                        "benchmark": benchmark, **({"cache": False} if no_cache else {})},
                               meta={"output_format": fmt})
        url, origin = resolve_redis_url(plan.store.root.parent / "redis")
    except SlicelabError as e:
        _fail(e)
    _run_plan(plan, url, origin, workers=workers, queue=queue, output=output, fmt=fmt, record=choice.record,
              use=choice.use)


@app.command("resume")
def resume(
    run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="the run folder: <output folder>/.slicelab-runs/<run_key>"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="output file (default: the one the run was started with)"),
    workers: int = typer.Option(1, min=0, help="local worker processes to start (0: rely on `slicelab worker` elsewhere)"),
    queue: str = typer.Option(defaults.QUEUE_NAME, help="RQ queue name"),
) -> None:
    """Finish a run from its folder alone: label the chunks without a marker, then write the output."""
    from slicelab.service.judge.resilience import probe_judge
    from slicelab.service.output import check_output
    from slicelab.service.redis_conn import resolve_redis_url
    from slicelab.service.runner import resume_plan
    from slicelab.service.usecases.label_benchmark import run_choice

    try:
        plan = resume_plan(run_dir)
        m = plan.store.manifest()
        meta = m.get("meta") or {}
        if output is None and not m.get("output"):
            raise SlicelabError(f"{run_dir}: the manifest does not name the output file; pass -o")
        fmt = check_output(output or Path(m["output"]), None if output else meta.get("output_format"), Path(m["input"]))
        output = output or Path(m["output"])
        record, use = run_choice(meta)
        probe_judge(m["judge"])
        url, origin = resolve_redis_url(plan.store.root.parent / "redis")
    except SlicelabError as e:
        _fail(e)
    _run_plan(plan, url, origin, workers=workers, queue=queue, output=output, fmt=fmt, record=record, use=use)


def _run_plan(plan, url: str, origin: str, *, workers: int, queue: str, output: Path, fmt: str,
              record: dict | None, use: str) -> None:
    """Label a prepared run's pending chunks on RQ workers and write its output (label-benchmark, resume)."""
    from redis import Redis

    from slicelab.service.engine import run_queue
    from slicelab.service.output import write_table
    from slicelab.service.redis_conn import redact_url
    from slicelab.service.runner import execute
    from slicelab.service.throughput import describe as describe_throughput, run_stats
    from slicelab.service.usecases.label_benchmark import finish

    def show(line: str) -> None:  # e.g. the judge is paused or Redis is down: on the bar and in the log
        bar.update(task, description=escape(f"labeling {line}".strip()))
        if line:
            console.print(escape(line))

    done_before = plan.n_chunks - len(plan.pending)
    local = _local_workers(url, run_queue(plan.store.root.name), workers, plan.store.root) if plan.pending else None
    console.print(f"run {plan.store.root.name}: {plan.n_items} samples in {plan.n_chunks} chunks"
                  f" ({done_before} already done), {plan.n_rejected} rejected records; Redis: {origin} "
                  f"{escape(redact_url(url))}, queue {escape(local.queue if local else queue)}")
    if plan.n_rejected:
        console.print(f"rejected records and reasons: {escape(str(plan.store.rejects_path))}")
    if not workers and plan.pending:
        console.print(f"--workers 0: waiting for `slicelab worker --queue {queue}` processes on this Redis "
                      "to take the jobs (Ctrl-C stops waiting; re-running resumes)")
    previous_sigterm = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)  # `kill PID` also stops the workers
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as bar:
            done_rows = sum(plan.store.marker(c)["rows"] for c in plan.store.done_chunks())
            task = bar.add_task("labeling", total=plan.n_items, completed=done_rows)
            if plan.pending:
                execute(plan, Redis.from_url(url), queue_name=queue, workers=local,
                        on_progress=lambda n: bar.advance(task, n),
                        on_status=show, on_report=lambda line: console.print(escape(line)))
    except SlicelabError as e:
        _fail(e)
    except KeyboardInterrupt:
        console.print(f"interrupted: finished chunks are kept in {escape(str(plan.store.root))}; re-run the same command to resume")
        raise typer.Exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        if local:
            local.stop()
    df, note = finish(plan, record, use)
    console.print(escape(note))
    write_table(df, output, fmt)
    _print_summary(df, output)
    stats = run_stats(plan.store, df)
    (plan.store.root / "throughput.json").write_text(json.dumps(stats, indent=2, sort_keys=True))
    this_command = run_stats(plan.store, chunks=plan.pending)  # the chunks this command labeled
    console.print(escape(describe_throughput(this_command, run=stats)), soft_wrap=True)


def _local_workers(url: str, queue: str, n: int, run_dir: Path):
    """``n`` local worker processes serving ``queue`` (the run's own queue), or None for ``n == 0``."""
    from slicelab.service.engine import LocalWorkers

    if not n:
        return None
    return LocalWorkers(url, queue, n, log_path=run_dir / "workers.log",
                        threads_per_worker=max(1, (os.cpu_count() or 1) // n))


def _print_selection(record: dict) -> None:
    """The labeler each axis will use (only where it passed the gate), with its kappa and verdict."""
    from slicelab.calibration.selection import gated_selection

    out = _wide_console()
    out.print(f"labelers from calibration {record['id']}: a labeler is used only where it passed the gate",
              soft_wrap=True)
    t = Table()
    for col in ("axis", "labeler", "κ [95% CI]", "n", "gate"):
        t.add_column(col, no_wrap=True)
    for axis, row in gated_selection(record).items():
        note = "" if row["labeler"] == row["selected"] else f" ({row['selected']} failed)"
        style = "green" if row["gate"] == "pass" else "red"
        t.add_row(axis, row["labeler"] + note,
                  f"{_fmt(row['kappa'])} [{_fmt(row['kappa_ci_low'])}, {_fmt(row['kappa_ci_high'])}]",
                  str(row["n"] if row["n"] is not None else "—"), f"[{style}]{row['gate']}[/{style}]")
    out.print(t)


@app.command("slices")
def slices(
    labels: Path = typer.Argument(..., exists=True, dir_okay=False, help="labeled samples (.parquet or .jsonl)"),
    output: Path = typer.Option(..., "-o", "--output", help="slice table as JSON"),
    allow_ungated: bool = typer.Option(False, help="also use axes that failed or never had calibration (recorded in the output)"),
    min_support: int = typer.Option(10, min=1, help="slices with fewer samples are flagged low_support"),
    results: Optional[list[Path]] = typer.Option(None, "--results", exists=True, help="per-sample results of runs (repeat for several files; lm-eval output folders and Inspect logs as written); adds per-run pass rates, Wilson intervals and pass@k over capability, combination and marginal slices"),
    run: Optional[list[str]] = typer.Option(None, "--run", help="with --results: only these runs (repeatable; default: all)"),
    report_dir: Optional[Path] = typer.Option(None, "--report-dir", file_okay=False, help="also write slices.html/.md/.json here"),
    k: str = typer.Option("1,5,10", "--k", help="with --results: pass@k values, comma-separated (only k <= generations per item are reported)"),
) -> None:
    """Group labeled samples into capability slices with pass rates, using only calibrated axes."""
    from slicelab.service.output import read_table
    from slicelab.service.slices import slice_table

    if results:
        meta = _slices_with_results(labels, results, run, output, allow_ungated, min_support, report_dir, k)
        table = None
    else:
        table, meta = slice_table(read_table(labels), allow_ungated=allow_ungated, min_support=min_support)
        output.parent.mkdir(parents=True, exist_ok=True)
        payload = {**meta, "slices": json.loads(table.to_json(orient="records"))}
        output.write_text(json.dumps(payload, indent=2))
        if report_dir:
            from slicelab.service.reports import write_report

            write_report("slices", {"meta": meta, "slices": payload["slices"]}, report_dir / "slices")
    if meta["axes_excluded"]:
        console.print("[yellow]axes left out (calibration verdict not pass):[/yellow] "
                      + ", ".join(f"{a} ({v})" for a, v in meta["axes_excluded"].items()))
    if meta["allow_ungated"] and meta["ungated_axes_used"]:
        console.print(f"[yellow]--allow-ungated: using {', '.join(meta['ungated_axes_used'])} without a passing calibration[/yellow]")
    if table is not None:
        Console().print(f"{len(table)} slices over {meta['axes_used'] or 'no axis'} written to {escape(str(output))}")


def _print_summary(df, output: Path) -> None:
    """Status counts, then per task: samples, labeled, and the commonest label (count) per axis."""
    import pandas as pd

    out = _wide_console()
    out.print(f"wrote {len(df)} rows to {escape(str(output))}")
    counts = df.groupby("status").size().to_dict()
    out.print("status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if df.empty:
        return
    axes = [a for a in ("task_type", "background_condition", "primary_operation", "output_constraint", "failure_mode")
            if a in df.columns]
    table = Table(title="label counts by task (commonest label, count)", title_justify="left")
    for col in ("task", "n", "labeled", *axes):
        table.add_column(col, justify="right" if col in ("n", "labeled") else "left", no_wrap=True,
                         overflow="ellipsis", min_width=len(col) if col in ("n", "labeled") else 8)
    tasks = df["task"].fillna("") if "task" in df else pd.Series([""] * len(df), index=df.index)
    for task, group in df.groupby(tasks.replace("", "(no task)"), sort=True):
        labeled = group[group["status"] == "labeled"]
        cells = []
        for axis in axes:
            vc = labeled[axis].dropna().value_counts()
            cells.append(f"{vc.index[0]} ×{vc.iloc[0]}" if len(vc) else ".")
        table.add_row(str(task), str(len(group)), str(len(labeled)), *cells)
    out.print(table)


calibration_app = typer.Typer(no_args_is_help=True, help="Calibration records: reports and the review loop.")
app.add_typer(calibration_app, name="calibration")


@calibration_app.command("report")
def calibration_report(
    record_id: str = typer.Argument(..., help="calibration record id (see $SLICELAB_HOME/calibrations/)"),
    out_dir: Optional[Path] = typer.Option(None, "-o", "--output", file_okay=False,
                                           help="folder for report.html/.json/.md (default: the record's folder)"),
) -> None:
    """Write the calibration report (self-contained HTML, JSON, Markdown) and print the paths."""
    from slicelab.calibration.records import calibrations_dir, load_record
    from slicelab.calibration.report import write_report

    try:
        record = load_record(record_id)
        paths = write_report(record, out_dir or calibrations_dir() / record_id)
    except (SlicelabError, OSError) as e:
        _fail(e)
    for path in paths.values():
        typer.echo(str(path))


@calibration_app.command("export-disagreements")
def calibration_export_disagreements(
    record_id: str = typer.Argument(..., help="calibration record id"),
    output: Path = typer.Option(..., "-o", "--output", dir_okay=False, help="review CSV to write"),
) -> None:
    """Write one CSV row per (item, axis) where the judge disagrees with gold, for review."""
    from slicelab.calibration.records import load_record
    from slicelab.calibration.review import export_disagreements

    try:
        n = export_disagreements(load_record(record_id), output)
    except (SlicelabError, OSError) as e:
        _fail(e)
    typer.echo(f"wrote {n} disagreements to {output}; fill 'decision' (gold wrong / judge wrong) "
               "and, for 'gold wrong', 'corrected_label', then run `slicelab calibration import-review`")


@calibration_app.command("import-review")
def calibration_import_review(
    review: Path = typer.Argument(..., exists=True, dir_okay=False, help="the reviewed CSV"),
    gold: Path = typer.Option(..., "--gold", exists=True, dir_okay=False, help="the gold set the review applies to"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", dir_okay=False,
                                          help="new gold file (default: next version beside --gold, e.g. _v2)"),
) -> None:
    """Apply 'gold wrong' corrections from a reviewed CSV; write a NEW gold-set version (the old one is kept)."""
    from slicelab.calibration.review import import_review

    try:
        path = import_review(review, gold, output)
    except (SlicelabError, OSError) as e:
        _fail(e)
    typer.echo(str(path))


@app.command("calibrate")
def calibrate(
    gold: Path = typer.Option(..., exists=True, dir_okay=False, help="gold set JSONL (e.g. calibration/gold/eval_gold_v1.jsonl)"),
    judge_url: Optional[str] = typer.Option(None, envvar="SLICELAB_JUDGE_URL", help="OpenAI-compatible base URL; default: embedded judge"),
    judge_model: Optional[str] = typer.Option(None, envvar="SLICELAB_JUDGE_MODEL", help="served model name"),
    judge_backend: Optional[str] = typer.Option(None, "--judge-backend", envvar="SLICELAB_JUDGE_BACKEND", help="embedded | openai | vllm; default: openai with --judge-url, else embedded"),
    max_tokens: Optional[int] = typer.Option(None, min=16, help="output tokens per label"),
    exemplars_k: int = typer.Option(0, min=0, help="show the k most similar exemplar-pool items in the prompt"),
    samples: int = typer.Option(1, min=1, help="label each item k times; the modal label's share is its confidence"),
    temperature: Optional[float] = typer.Option(None, min=0.0, help="sampling temperature (use > 0 with --samples > 1)"),
    self_consistency: int = typer.Option(0, "--self-consistency", min=0, help="K > 0: also measure the self-consistent judge (judge_sc: K samples, majority vote per axis) as its own labeler"),
    sc_temperature: float = typer.Option(defaults.SC_TEMPERATURE, "--sc-temperature", min=0.0, help="sampling temperature of the self-consistent judge's K samples"),
    split_seed: int = typer.Option(0, help="seed of the stratified exemplar-pool / held-out split"),
    holdout_frac: float = typer.Option(0.5, min=0.1, max=0.9, help="share of items held out for metrics"),
    limit: Optional[int] = typer.Option(None, min=1, help="score only the first N held-out items"),
    workers: int = typer.Option(1, min=0, help="local worker processes"),
    gate_file: Path = typer.Option(Path(__file__).resolve().parent.parent / "calibration" / "gate.yaml", exists=True, help="gate thresholds (YAML)"),
    exemplars: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="draw exemplars (and the k-NN/student pool) only from this gold file, and evaluate every item of --gold"),
    cascade_threshold: float = typer.Option(0.8, min=0.0, max=1.0, help="cascade: keep the k-NN label when its vote share is at least this"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write per axis and labeler: n, accuracy, kappa, kappa_ci_low, kappa_ci_high, macro_f1, seconds_per_label"),
) -> None:
    """Run the judge on a gold set's held-out split, measure agreement per axis, gate, and store a record."""
    from slicelab.calibration.gold import load_gold
    from slicelab.calibration.run import run_calibration
    from slicelab.service.judge import judge_spec
    from slicelab.service.redis_conn import resolve_redis_url
    from slicelab.calibration.records import calibrations_dir

    from slicelab.service.output import check_writable

    try:
        kind = load_gold(gold).kind
        if json_out:
            check_writable(json_out, "--json")
        spec = judge_spec(judge_url=judge_url, judge_model=judge_model, backend=judge_backend, max_tokens=max_tokens,
                          temperature=temperature, exemplars_gold=str(exemplars or gold) if exemplars_k else None,
                          exemplars_k=exemplars_k, split_seed=split_seed,
                          holdout_frac=0.0 if exemplars else holdout_frac)
        from slicelab.service.judge.resilience import probe_judge

        probe_judge(spec)  # a judge that cannot serve structured outputs stops here, before any work
        url, origin = resolve_redis_url(calibrations_dir() / "redis")
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
        with Progress(TextColumn("calibrating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as bar:
            task = bar.add_task("cal", total=None)
            record = run_calibration(gold, spec, url, exemplars_path=exemplars, cascade_threshold=cascade_threshold,
                                     samples=samples, split_seed=split_seed, self_consistency=self_consistency,
                                     sc_temperature=sc_temperature,
                                     holdout_frac=holdout_frac, limit=limit, workers=workers,
                                     threads_per_worker=threads, gate_path=gate_file,
                                     on_start=lambda n: bar.update(task, total=n),
                                     on_progress=lambda n: bar.advance(task, n))
    except SlicelabError as e:
        _fail(e)
    _print_calibration(record, kind)
    if json_out:
        from slicelab.calibration.run import table as labeler_table

        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"id": record["id"], "kind": kind, "axes": labeler_table(record)},
                                       indent=2, allow_nan=False))
        Console().print(f"per-axis labeler table written to {escape(str(json_out))}")


def _fmt(x, digits=2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _print_calibration(record: dict, kind: str) -> None:
    from slicelab.calibration.run import table as labeler_table

    out = _wide_console()
    out.print(f"calibration [bold]{record['id']}[/bold] ({kind}; judge {record['judge']['backend']} "
              f"{record['judge']['model']}, exemplars k={(record['judge'].get('exemplars') or {}).get('k', 0)}, "
              f"evaluated n={record['split']['n_heldout']}, pool n={record['split']['n_pool']}, "
              f"judge statuses {record['status_counts']})")
    rows = labeler_table(record)
    # labelers differ per axis (e.g. answer-shape rules only on task_type / output_constraint): one column each
    names = list(dict.fromkeys(n for row in rows.values() for n in row["labelers"]))
    t = Table(title="Cohen's kappa [95% CI] per labeler (operation axes: primary); * = selected",
              title_justify="left")
    t.add_column("axis", no_wrap=True)
    t.add_column("n", min_width=3)
    for name in names:
        t.add_column(name, no_wrap=True, min_width=8)
    t.add_column("annot. κ", min_width=8)
    t.add_column("verdict", min_width=7)
    for axis, row in rows.items():
        m = record["axes"][axis]
        ann = m.get("annotators", {})
        ann = ann.get("primary", ann) if m["kind"] == "operations" else ann
        cells = []
        for name in names:
            s = row["labelers"].get(name)
            star = "*" if name == row["selected"] else ""
            cells.append(f"{star}{_fmt(s['kappa'])} [{_fmt(s['kappa_ci_low'])}, {_fmt(s['kappa_ci_high'])}]"
                         if s else "—")
        v = m["verdict"]["verdict"]
        style = "green" if v == "pass" else "red"
        t.add_row(axis.replace("solving_operations", "primary operation").replace("demonstrated_operations", "primary demo. op."),
                  str(m["n"]), *cells, _fmt(ann.get("cohen_kappa")), f"[{style}]{v}[/{style}]")
    out.print(t)
    spl = record["labelers"]["seconds_per_label"]
    out.print("seconds per label: " + ", ".join(f"{n} {_fmt(v, 4)}" for n, v in spl.items())
              + f"; cascade sends {record['labelers']['cascade']['share_to_judge']['any_axis']:.0%} of items to the judge")
    for axis, m in record["axes"].items():
        out.print(f"  {axis}: {m['verdict']['verdict']} with {m['selected']} ({m['verdict']['reason']}); "
                  f"judge alone: {m['judge_verdict']['verdict']}")
    failed = [a for a, v in record["verdicts"].items() if v != "pass"]
    if failed:
        out.print(f"[red]gate: {len(failed)} of {len(record['verdicts'])} axes fail[/red] ({', '.join(failed)}); "
                  "their labels are excluded from slices unless --allow-ungated.")
    else:
        out.print("[green]gate: every axis passes[/green]")


def _slices_with_results(labels: Path, results: list[Path], runs: Optional[list[str]], output: Path,
                         allow_ungated: bool, min_support: int, report_dir: Optional[Path], k: str) -> dict:
    """``slices --results``: per-run slice statistics written to ``output`` (and a report)."""
    from slicelab.service.passk import parse_ks
    from slicelab.service.slice_stats import slice_stats

    try:
        ks = parse_ks(k)
        lab, res, rejects = _load_labels_results(labels, results, None, None, False)
        table, meta = slice_stats(lab, res, runs, allow_ungated=allow_ungated, min_support=min_support, ks=ks)
    except SlicelabError as e:
        _fail(e)
    payload = {**meta, "slices": json.loads(table.to_json(orient="records"))}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(payload, indent=2))
    if report_dir:
        from slicelab.service.reports import write_report

        write_report("slices", {"meta": meta, "slices": payload["slices"]}, report_dir / "slices")
    Console().print(f"{table['slice_id'].nunique()} slices x {len(meta['runs'])} runs over "
                    f"{meta['axes_used'] or 'no axis'} written to {escape(str(output))}")
    for kk, why in meta.get("ks_skipped", {}).items():
        console.print(f"[yellow]pass@{kk} not reported: {why}[/yellow]")
    for r, short in meta.get("items_short", {}).items():
        for kk, n in short.items():
            if n:
                console.print(f"[yellow]{escape(r)}: {n} items have fewer than {kk} generations; slices holding "
                              f"them have no pass@{kk}[/yellow]")
    return meta


def _load_labels_results(labels: Path, results: list[Path], id_field: Optional[str], run_field: Optional[str],
                         skip_bad_rows: bool, generation_field: Optional[str] = None, aggregate_repeats: bool = False):
    """The labeled table and the results table; bad result rows raise, or are collected with ``skip_bad_rows``."""
    import pandas as pd

    from slicelab.service.errors import ConfigError
    from slicelab.service.output import read_table
    from slicelab.service.results import load_results

    try:
        lab = labels if isinstance(labels, pd.DataFrame) else read_table(labels)
    except Exception as e:  # pandas/pyarrow raise many types for an unreadable file
        raise ConfigError(f"--labels {labels}: not a readable labeled table (.parquet or .jsonl): {e}") from None
    rejects: list | None = [] if skip_bad_rows else None
    res = results if isinstance(results, pd.DataFrame) else load_results(
        results, id_field=id_field, run_field=run_field, rejects=rejects, generation_field=generation_field,
        aggregate_repeats=aggregate_repeats)
    if rejects:
        console.print(f"[yellow]{len(rejects)} result rows skipped[/yellow]; first: {escape(str(rejects[0]))}")
    return lab, res, rejects


def _comparison(labels, results, baseline, candidate, id_field, run_field, skip_bad_rows, allow_ungated,
                min_support, alpha, generation_field=None, aggregate_repeats=False, n_examples=3, k=None,
                metric="pass@1"):
    import pandas as pd

    from slicelab.service.comparison import compare
    from slicelab.service.errors import ConfigError
    from slicelab.service.passk import parse_ks

    if metric not in ("pass@1", "pass@k"):
        raise ConfigError(f"--metric {metric!r}: allowed pass@1, pass@k")
    if metric == "pass@k" and k is None:
        raise ConfigError("--metric pass@k needs --k (e.g. --k 8)")
    lab, res, rejects = _load_labels_results(labels, results, id_field, run_field, skip_bad_rows,
                                             generation_field, aggregate_repeats)
    multi = bool((res["n_samples"] > 1).any())
    ks = parse_ks(k) if k is not None else ((1, 5, 10) if multi else ())
    cmp = compare(lab, res, baseline, candidate, allow_ungated=allow_ungated, min_support=min_support, alpha=alpha,
                  n_examples=n_examples, ks=ks)
    if metric == "pass@k":
        if not cmp.pass_at_k or not cmp.pass_at_k["ks"]:
            raise ConfigError(f"--metric pass@k --k {k}: no problem has that many generations in both runs "
                              f"({'; '.join(f'k={a}: {b}' for a, b in (cmp.pass_at_k or {}).get('ks_skipped', {}).items())})")
        cmp.meta["metric"], cmp.meta["metric_k"] = "pass@k", max(cmp.pass_at_k["ks"])
    cmp.meta["results_files"] = results.attrs["files"] if isinstance(results, pd.DataFrame) else [str(p) for p in results]
    cmp.meta["labels_file"] = labels.attrs.get("source") if isinstance(labels, pd.DataFrame) else str(labels)
    cmp.meta["n_result_rows_rejected"] = len(rejects or [])
    if rejects:
        cmp.meta["result_rows_rejected"] = rejects[:100]
    return cmp


def _logs_inputs(labels, results, baseline, candidate, baseline_logs, candidate_logs, skip_bad_rows):
    """Labels, results and run names from files, or from two runs' evaluation logs (:mod:`service.loop_logs`)."""
    from slicelab.service.loop_logs import resolve_inputs

    return resolve_inputs(labels, results, baseline, candidate, baseline_logs, candidate_logs,
                          skip_bad_rows=skip_bad_rows, say=lambda line: _loop_console().print(escape(line)))


def _loop_console() -> Console:
    """The wide console, with long result lines kept on one line (greppable in logs)."""
    return Console(width=max(160, Console().width), soft_wrap=True)


def _check_report_outputs(output: Optional[Path], stem: Optional[Path]) -> None:
    """Refuse, before any work, a JSON output or report location that cannot be written."""
    from slicelab.service.output import check_writable

    if output is not None:
        check_writable(output, "-o")
    if stem is not None:
        check_writable(Path(f"{stem}.html"), "--report-dir" if output is None or stem != output.with_suffix("")
                       else "-o", Path(f"{stem}.md"))


def _report_stem(output: Optional[Path], report_dir: Optional[Path], name: str) -> Optional[Path]:
    if report_dir is not None:
        return report_dir / name
    return output.with_suffix("") if output is not None else None


def _print_comparison(cmp) -> None:
    out = _loop_console()
    j = cmp.evidence.get("join", {})
    if j:
        out.print(f"join: {j['n_labeled']} labeled samples, results " + ", ".join(
            f"{escape(r)} {n}" for r, n in j["n_results"].items()) + f"; {j['n_matched']} matched"
            + (f"; {j['n_results_unmatched']} result ids without a label (e.g. {', '.join(j['unmatched_result_ids'])})"
               if j["n_results_unmatched"] else "")
            + (f"; {j['n_labels_unmatched']} labeled ids without results in both runs (e.g. "
               f"{', '.join(j['unmatched_label_ids'])})" if j["n_labels_unmatched"] else ""))
    o = cmp.overall
    out.print(f"{cmp.candidate} vs {cmp.baseline}: {o['n']} shared samples, pass rate {o['baseline_pass']:.3f} -> "
              f"{o['candidate_pass']:.3f} (change {o['delta']:+.3f} [{o['delta_ci_low']:+.3f}, "
              f"{o['delta_ci_high']:+.3f}], exact McNemar p={o['p_value']:.2g}); {o['n10']} lost, {o['n01']} gained")
    for key, s in cmp.spread.items():
        share = "—" if s["share_slices_significant_drop"] is None else f"{s['share_slices_significant_drop']:.2f}"
        gini = "—" if s["gini_net_loss_rate"] is None else f"{s['gini_net_loss_rate']:.2f}"
        out.print(f"  {key}: {s['n_significant_drop']}/{s['n_tested']} tested slices dropped significantly "
                  f"(share {share}, Gini of net loss rates {gini})")
    for k, byk in ((cmp.pass_at_k or {}).get("by_k") or {}).items():
        p = byk["overall"]
        out.print(f"  pass@{k}: {p['baseline']:.3f} -> {p['candidate']:.3f} (change {p['delta']:+.3f} "
                  f"[{p['delta_ci_low']:+.3f}, {p['delta_ci_high']:+.3f}], Wilcoxon signed-rank p={p['p_value']:.2g}, "
                  f"{p['n_items']} problems" + (f", {p['n_short']} with fewer than {k} generations left out"
                                                if p["n_short"] else "") + ")")
    for k, why in ((cmp.pass_at_k or {}).get("ks_skipped") or {}).items():
        out.print(f"[yellow]  pass@{k} not reported: {why}[/yellow]")
    fm = cmp.failure_modes
    out.print(f"  newly failing: {fm['n_newly_failing']} — " + ", ".join(
        f"{k} {v} ({fm['shares'][k]:.0%})" for k, v in sorted(fm["counts"].items(), key=lambda x: -x[1])))
    from slicelab.service.setup import compare_setups

    for d in compare_setups(cmp.meta.get("setup") or {}, cmp.baseline, cmp.candidate)["differs"]:
        out.print(f"[yellow]  evaluation set-up differs: {d['field']} {json.dumps(d['baseline'])} (baseline) vs "
                  f"{json.dumps(d['candidate'])} (candidate)[/yellow]")
    if fm.get("detail_counts"):
        out.print("  failure_mode_detail: " + ", ".join(
            f"{k} {v}" for k, v in sorted(fm["detail_counts"].items(), key=lambda x: -x[1])))
    if cmp.meta.get("axes_excluded"):
        out.print("[yellow]axes left out (calibration verdict not pass):[/yellow] "
                  + ", ".join(f"{a} ({v})" for a, v in cmp.meta["axes_excluded"].items()))
    if cmp.meta.get("allow_ungated") and cmp.meta.get("ungated_axes_used"):
        out.print(f"[yellow]--allow-ungated: using {', '.join(cmp.meta['ungated_axes_used'])} "
                  "without a passing calibration[/yellow]")
    cap = cmp.slices[(cmp.slices["key"] == "capability") & cmp.slices["tested"].astype(bool)]
    if len(cap):
        t = Table(title="tested capability slices (largest first)", title_justify="left")
        for col in ("slice", "n", "baseline", "candidate", "change [95% CI]", "q", ""):
            t.add_column(col, no_wrap=col != "slice")
        for r in cap.head(15).itertuples(index=False):
            t.add_row(r.label, str(r.n), f"{r.baseline_pass:.3f}", f"{r.candidate_pass:.3f}",
                      f"{r.delta:+.3f} [{r.delta_ci_low:+.3f}, {r.delta_ci_high:+.3f}]", f"{r.q_value:.2g}",
                      "[red]drop[/red]" if r.significant_drop else ("[green]gain[/green]" if r.significant_gain else ""))
        out.print(t)


_GENERATION_HELP = "results field telling repeated generations of one (sample, run) apart, e.g. checkpoint (sample_index/generation/repeat/seed are read without it); they become n_samples/n_correct"
_REPEATS_HELP = "read repeated (sample, run) rows as repeated generations in file order instead of refusing them"
_K_HELP = "pass@k values, comma-separated (e.g. 1,8,128); paired pass@k comparison per problem (default 1,5,10 when results have several generations per item)"
_METRIC_HELP = "pass@1 (per-sample correctness, exact McNemar) or pass@k (the largest --k, Wilcoxon signed-rank on per-problem pass@k) for the overall test behind the verdict"
_LOGS_HELP = "evaluation logs of one run, read as the harness wrote them: an lm-evaluation-harness --output_path folder (or results_<ts>.json / samples file), Inspect AI logs (.json/.eval) or a folder of them (repeatable); results and set-up come from them and their samples are labeled in-process unless --labels is given"
_RESULTS_HELP = "per-sample results: lm-eval --log_samples JSONL or output folder, Inspect log (.json/.eval), the shared BBH/math model-output JSONL, or JSONL/Parquet with sample_id, run, correct|score, output, finish_reason (repeat --results for several files)"


@app.command("compare")
def compare_runs(
    labels: Optional[Path] = typer.Option(None, "--labels", exists=True, dir_okay=False, help="labeled samples (.parquet or .jsonl); with --baseline-logs/--candidate-logs, used instead of labeling in-process"),
    results: Optional[list[Path]] = typer.Option(None, "--results", exists=True, help=_RESULTS_HELP),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="baseline run name (with --baseline-logs: only when its logs hold several runs)"),
    candidate: Optional[str] = typer.Option(None, "--candidate", help="candidate run name (with --candidate-logs: only when its logs hold several runs)"),
    baseline_logs: Optional[list[Path]] = typer.Option(None, "--baseline-logs", exists=True, help=_LOGS_HELP),
    candidate_logs: Optional[list[Path]] = typer.Option(None, "--candidate-logs", exists=True, help=_LOGS_HELP),
    output: Optional[Path] = typer.Option(None, "-o", "--output", dir_okay=False, help="comparison JSON (reports .html/.md beside it)"),
    report_dir: Optional[Path] = typer.Option(None, "--report-dir", file_okay=False, help="write compare.html/.md/.json here"),
    allow_ungated: bool = typer.Option(False, help="also slice on axes that failed or never had calibration (recorded)"),
    min_support: int = typer.Option(10, min=1, help="slices with fewer shared samples are not tested"),
    alpha: float = typer.Option(0.05, help="Benjamini-Hochberg false discovery rate"),
    id_field: Optional[str] = typer.Option(None, help="results field holding the sample id ('+' joins fields)"),
    run_field: Optional[str] = typer.Option(None, help="results field holding the run name ('+' joins fields)"),
    skip_bad_rows: bool = typer.Option(False, help="skip unusable result rows (counted and listed in the output) instead of stopping"),
    generation_field: Optional[str] = typer.Option(None, help=_GENERATION_HELP),
    aggregate_repeats: bool = typer.Option(False, help=_REPEATS_HELP),
    examples: int = typer.Option(3, "--examples", min=0, help="example lost samples (id, output tails) per dropped slice and per failure mode"),
    k: Optional[str] = typer.Option(None, "--k", help=_K_HELP),
    metric: str = typer.Option("pass@1", "--metric", help=_METRIC_HELP),
) -> None:
    """Per-slice change from a baseline run to a candidate: exact McNemar, Benjamini-Hochberg, spread, failure modes."""
    from slicelab.service.reports import write_report

    try:
        _check_report_outputs(output, _report_stem(output, report_dir, "compare"))
        labels, results, baseline, candidate, logs_meta = _logs_inputs(labels, results, baseline, candidate,
                                                                       baseline_logs, candidate_logs, skip_bad_rows)
        cmp = _comparison(labels, results, baseline, candidate, id_field, run_field, skip_bad_rows, allow_ungated,
                          min_support, alpha, generation_field, aggregate_repeats, examples, k, metric)
        cmp.meta.update(logs_meta)
    except SlicelabError as e:
        _fail(e)
    payload = cmp.to_dict()
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(payload, indent=2, allow_nan=False))
    stem = _report_stem(output, report_dir, "compare")
    _print_comparison(cmp)
    if stem is not None:
        paths = write_report("compare", payload, stem)
        if output is not None and report_dir is None:
            paths["json"] = output
        typer.echo("wrote " + ", ".join(str(p) for p in dict.fromkeys(paths.values())))


@app.command("diagnose")
def diagnose_runs(
    labels: Optional[Path] = typer.Option(None, "--labels", exists=True, dir_okay=False, help="labeled samples (.parquet or .jsonl); with --baseline-logs/--candidate-logs, used instead of labeling in-process"),
    results: Optional[list[Path]] = typer.Option(None, "--results", exists=True, help=_RESULTS_HELP),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="baseline run name (with --baseline-logs: only when its logs hold several runs)"),
    candidate: Optional[str] = typer.Option(None, "--candidate", help="candidate run name (with --candidate-logs: only when its logs hold several runs)"),
    baseline_logs: Optional[list[Path]] = typer.Option(None, "--baseline-logs", exists=True, help=_LOGS_HELP),
    candidate_logs: Optional[list[Path]] = typer.Option(None, "--candidate-logs", exists=True, help=_LOGS_HELP),
    output: Path = typer.Option(..., "-o", "--output", dir_okay=False, help="diagnosis JSON (reports .html/.md beside it)"),
    rules: Optional[Path] = typer.Option(None, "--rules", exists=True, dir_okay=False, help="mapping rules YAML (default: prompts/mapping-rules-v1.yaml)"),
    report_dir: Optional[Path] = typer.Option(None, "--report-dir", file_okay=False, help="write diagnosis.html/.md/.json here instead of beside -o"),
    allow_ungated: bool = typer.Option(False, help="also slice on axes that failed or never had calibration (recorded)"),
    min_support: Optional[int] = typer.Option(None, min=1, help="override the rules' evidence.min_support"),
    alpha: Optional[float] = typer.Option(None, help="override the rules' evidence.alpha"),
    id_field: Optional[str] = typer.Option(None, help="results field holding the sample id ('+' joins fields)"),
    run_field: Optional[str] = typer.Option(None, help="results field holding the run name ('+' joins fields)"),
    skip_bad_rows: bool = typer.Option(False, help="skip unusable result rows (counted in the output) instead of stopping"),
    generation_field: Optional[str] = typer.Option(None, help=_GENERATION_HELP),
    aggregate_repeats: bool = typer.Option(False, help=_REPEATS_HELP),
    ignore_setup: Optional[list[str]] = typer.Option(None, "--ignore-setup", help="a set-up field not to compare (repeatable; recorded): prompt_template, num_fewshot, max_tokens, temperature, top_p, do_sample, stop, n_samples, extractor"),
    training_config: Optional[Path] = typer.Option(None, "--training-config", exists=True, file_okay=False, help="tokenizer/training-config folder to lint (slicelab lint-training-config); its findings are cited by a termination verdict"),
    examples: int = typer.Option(3, "--examples", min=0, help="example lost samples (id, output tails) per weak slice and per failure mode"),
    k: Optional[str] = typer.Option(None, "--k", help=_K_HELP),
    metric: str = typer.Option("pass@1", "--metric", help=_METRIC_HELP),
) -> None:
    """Compare two runs, evaluate the mapping rules in order, and write the verdict with its evidence."""
    from slicelab.service.mapping import DEFAULT_RULES, diagnose, load_rules
    from slicelab.service.reports import write_report
    from slicelab.service.training_lint import lint_training_config

    try:
        _check_report_outputs(output, _report_stem(output, report_dir, "diagnosis"))
        rule_set = load_rules(rules or DEFAULT_RULES)
        ev = rule_set.evidence
        lint = lint_training_config(training_config) if training_config else None
        labels, results, baseline, candidate, logs_meta = _logs_inputs(labels, results, baseline, candidate,
                                                                       baseline_logs, candidate_logs, skip_bad_rows)
        cmp = _comparison(labels, results, baseline, candidate, id_field, run_field, skip_bad_rows, allow_ungated,
                          min_support or ev.min_support, alpha if alpha is not None else ev.alpha,
                          generation_field, aggregate_repeats, examples, k, metric)
        cmp.meta.update(logs_meta)
        result = diagnose(cmp, rule_set, ignore_setup=ignore_setup or (), training_findings=lint)
    except SlicelabError as e:
        _fail(e)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, allow_nan=False))
    paths = write_report("diagnose", result, _report_stem(output, report_dir, "diagnosis"), comparison=cmp.to_dict())
    out = _loop_console()
    _print_comparison(cmp)
    style = {"data_intervention": "cyan", "non_data": "yellow", "broad_regression": "magenta",
             "unexplained_regression": "red"}.get(result["verdict"], "white")
    out.print(f"verdict: [bold {style}]{result['verdict']}[/bold {style}] — {escape(result['summary'])}")
    if result["verdict"] in ("data_intervention", "non_data"):
        out.print(f"  {escape(result['localisation']['statement'])}")
    for f in result["fired_rules"]:
        out.print(f"  fired {f['id']} ({f['kind']})")
    for c in result["checks"]:
        out.print(f"  check {c['id']}: {c['what']}")
    for d in result.get("setup", {}).get("differs", []):
        out.print(f"  set-up {d['field']}: {json.dumps(d['baseline'])} (baseline) vs {json.dumps(d['candidate'])} (candidate)")
    if result.get("setup", {}).get("ignored"):
        out.print(f"  set-up fields ignored (--ignore-setup): {', '.join(result['setup']['ignored'])}")
    if result.get("training_config"):
        tc = result["training_config"]
        for f in tc["findings"]:
            out.print(f"  training config {f['id']} ({f['severity']}): {f['message']}")
        out.print(f"  training config: {tc['note']}")
    for i in result["interventions"]:
        out.print(f"  intervention {i['rule_id']}: operations {', '.join(i['operations'])}; "
                  f"{i['n_weak_slices']} weak slices ({i['samples_in_weak_slices']} samples); action {i['action']}")
    if result["insufficient_evidence"]:
        out.print(f"  {len(result['insufficient_evidence'])} dropped slices are insufficient evidence "
                  "(low support, not significant, not localised, or overlapping intervals)")
    typer.echo(f"wrote {output}, " + ", ".join(str(p) for k, p in paths.items() if k != "json"))


@app.command("sample")
def sample_docs(
    docs: Optional[Path] = typer.Option(None, "--docs", exists=True, dir_okay=False, help="labeled documents (.parquet or .jsonl): id, domain, document_format, reasoning_depth, demonstrated_operations, education_level, and tokens or text"),
    pool: Optional[Path] = typer.Option(None, "--pool", exists=True, dir_okay=False, help="instruction pool (problem + solution; JSONL/JSON/CSV/Parquet), or a table labeled by label-benchmark; unlabeled pools are labeled in-process (--labeler)"),
    diagnosis: Path = typer.Option(..., "--diagnosis", exists=True, dir_okay=False, help="a diagnosis JSON from `slicelab diagnose`"),
    budget_tokens: int = typer.Option(..., "--budget-tokens", "--token-budget", min=1, help="most tokens to select (copies counted)"),
    output: Path = typer.Option(..., "-o", "--output", dir_okay=False, help="manifest JSONL (summary or mixture spec and report beside it)"),
    allow_ungated: bool = typer.Option(False, help="filter on label axes that failed or never had calibration (recorded)"),
    labeler: str = typer.Option("knn", help="--pool: in-process labeler of an unlabeled pool (knn or student)"),
    gold: Optional[list[Path]] = typer.Option(None, "--gold", exists=True, dir_okay=False, help="--pool: more eval gold sets for the in-process labeler's pool (repeatable)"),
    slice_key: Optional[list[str]] = typer.Option(None, "--slice-key", help="--pool: target every weak slice of this key (capability, combination, marginal; repeatable) instead of the slices the interventions name"),
    allow_repeats: bool = typer.Option(False, help="--pool: fill a slice's quota with further copies of its selected items"),
    dedupe_against: Optional[Path] = typer.Option(None, "--dedupe-against", exists=True, dir_okay=False, help="evaluation file; documents or pool items containing >= 25%% of the word 13-grams of one of its questions are dropped"),
) -> None:
    """Select labeled documents (--docs) or instruction-pool items (--pool) for a diagnosis's weak slices."""
    from slicelab.service.diagnosis_file import load_diagnosis
    from slicelab.service.errors import ConfigError
    from slicelab.service.output import check_writable
    from slicelab.service.sampling import build_manifest, load_documents, write_manifest

    try:
        if (docs is None) == (pool is None):
            raise ConfigError("give exactly one of --docs (labeled documents) or --pool (instruction pool)")
        if docs is not None and (slice_key or allow_repeats or gold or labeler != "knn"):
            raise ConfigError("--labeler, --gold, --slice-key and --allow-repeats apply to --pool only")
        diag = load_diagnosis(diagnosis)
        stem = output.with_suffix("")
        if pool is not None:
            from slicelab.service.pool_report import print_summary, write_pool_outputs
            from slicelab.service.pool_sampling import sample_pool

            check_writable(output, "-o", Path(f"{stem}.mixture.json"), Path(f"{stem}.report.md"),
                           Path(f"{stem}.report.html"))
            manifest, spec = sample_pool(pool, diag, budget_tokens, labeler=labeler, extra_gold=tuple(gold or ()),
                                         dedupe_against=dedupe_against,
                                         allow_repeats=allow_repeats, allow_ungated=allow_ungated,
                                         slice_keys=slice_key)
            print_summary(spec, _loop_console())
            typer.echo("wrote " + ", ".join(str(p) for p in write_pool_outputs(manifest, spec, output).values()))
            return
        check_writable(output, "-o", Path(f"{stem}.summary.json"), Path(f"{stem}.summary.md"))
        table, source = load_documents(docs)
        leakage = None
        if dedupe_against is not None:
            from slicelab.service.leakage import check_leakage

            if "text" not in table:
                raise ConfigError(f"--dedupe-against: --docs {docs} has no 'text' column to compare")
            leaks, leakage = check_leakage(zip(table["id"].astype(str), table["text"]), dedupe_against)
            table = table[~table["id"].astype(str).isin({lk.item_id for lk in leaks})].reset_index(drop=True)
        manifest, summary = build_manifest(table, diag, budget_tokens, allow_ungated=allow_ungated,
                                           token_source=source)
        summary["leakage"] = leakage
    except SlicelabError as e:
        _fail(e)
    paths = write_manifest(manifest, summary, output)
    out = _loop_console()
    out.print(f"selected {summary['n_selected']} of {summary['n_candidates']} matching documents "
              f"({summary['n_documents']} labeled): {summary['tokens_selected']:,} of {budget_tokens:,} tokens "
              f"({source})")
    for r in summary["interventions"]:
        out.print(f"  {r['rule_id']}: {r['n_matching']} matching, {r['n_selected']} selected, "
                  f"{r['tokens_selected']:,} tokens")
    if summary["no_matching_documents"]:
        out.print(f"[yellow]no labeled document matches {', '.join(summary['no_matching_documents'])}[/yellow]")
    if summary["leakage"]:
        out.print(f"leakage: {summary['leakage']['n_flagged']} documents near-duplicate an item of {dedupe_against} "
                  "and were dropped")
    if allow_ungated and any(v != "pass" for v in summary["gate"].values()):
        out.print("[yellow]--allow-ungated: document axes used without a passing calibration: "
                  + ", ".join(a for a, v in summary["gate"].items() if v != "pass") + "[/yellow]")
    typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="address to bind"),
    port: int = typer.Option(8080, help="port to bind"),
) -> None:
    """Run the REST service (API keys from SLICELAB_API_KEYS; jobs run on `slicelab worker`s)."""
    import uvicorn

    from slicelab.service.api import Settings, create_app

    try:
        settings = Settings.from_env()
    except SlicelabError as e:
        _fail(e)
    if not settings.api_keys:
        console.print("[yellow]no API keys configured (SLICELAB_API_KEYS): every endpoint but health answers 401[/yellow]")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


@app.command("label-shard")
def label_shard(
    shards: list[str] = typer.Argument(..., help="JSONL (.jsonl, .jsonl.gz, .jsonl.zst) or Parquet shards: local paths or fsspec URLs"),
    output: Path = typer.Option(..., "-o", "--output", file_okay=False, help="run folder: parts/ (the labeled rows), markers/, index/, student.json, summary.json"),
    judge_sample: int = typer.Option(200, min=0, help="distinct documents the judge labels (seeded random sample); 0 needs --student"),
    seed: int = typer.Option(0, help="seed of the judge sample and of the held-out split"),
    max_doc_tokens: int = typer.Option(defaults.SHARD_MAX_TOKENS, min=16, help="token budget documents are cut to, head and tail kept (4 characters a token)"),
    route_below: Optional[float] = typer.Option(None, help="send a student-labeled document to the judge when its lowest student probability is below this"),
    heldout_frac: float = typer.Option(defaults.STUDENT_HELDOUT_FRAC, help="share of the judge sample held out to measure the student against the judge"),
    gold: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="document gold set the student is measured on (default: calibration/gold/doc_gold_v1.jsonl)"),
    gate: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="gate thresholds (default: calibration/gate.yaml)"),
    student: Optional[str] = typer.Option(None, help="label with this saved student (hash) instead of training one"),
    text_field: str = typer.Option("text", help="record field holding the document text"),
    id_field: str = typer.Option("id", help="record field holding the document id"),
    rows_per_job: int = typer.Option(defaults.SHARD_ROWS_PER_JOB, min=1, help="rows per label job (one Parquet part each)"),
    judge_docs_per_job: int = typer.Option(defaults.SHARD_JUDGE_DOCS_PER_JOB, min=1, help="sample documents per judge job"),
    batch_rows: int = typer.Option(defaults.SHARD_BATCH_ROWS, min=1, help="rows a job holds in memory at a time"),
    workers: int = typer.Option(2, min=0, help="local worker processes to start (0: rely on `slicelab worker --queue slicelab-shards` elsewhere)"),
    queue: str = typer.Option(defaults.SHARD_QUEUE_NAME, help="RQ queue name"),
    judge_url: Optional[str] = typer.Option(None, envvar="SLICELAB_JUDGE_URL", help="OpenAI-compatible base URL; default: embedded judge"),
    judge_model: Optional[str] = typer.Option(None, envvar="SLICELAB_JUDGE_MODEL", help="served model name"),
    max_tokens: Optional[int] = typer.Option(None, min=16, help="judge output tokens per label"),
    max_attempts: Optional[int] = typer.Option(None, min=1, help="judge attempts per document on invalid output"),
    n_boot: int = typer.Option(defaults.STUDENT_N_BOOT, min=50, help="bootstrap resamples of the kappa intervals"),
    as_json: bool = typer.Option(False, "--json", help="print the run summary as JSON on stdout"),
) -> None:
    """Label pretraining shards: dedupe, judge a sample, distil a student, label every row through RQ workers."""
    import time

    from redis import Redis
    from rich.progress import SpinnerColumn

    from slicelab.service.engine import run_queue
    from slicelab.service.redis_conn import redact_url, resolve_redis_url
    from slicelab.service.shard_runner import (ShardOptions, ensure_index, judge_jobs, label_jobs, plan_shard_run,
                                      retry_judge_errors, run_jobs, summarize, train_stage, trim_memory,
                                      use_saved_student)

    from slicelab.service.output import check_writable_dir

    try:
        check_writable_dir(output, "-o")
        spec, config_hash = {"backend": "none"}, ""
        if judge_sample or route_below is not None:  # a run that never asks the judge builds none
            from slicelab.service.judge import judge_spec, make_judge

            spec = judge_spec(judge_url=judge_url, judge_model=judge_model, max_tokens=max_tokens,
                              max_attempts=max_attempts)
            config_hash = make_judge(spec).config_hash()
        opts = ShardOptions(text_field=text_field, id_field=id_field, max_tokens=max_doc_tokens, judge_sample=judge_sample,
                            seed=seed, heldout_frac=heldout_frac, rows_per_job=rows_per_job,
                            judge_docs_per_job=judge_docs_per_job, batch_rows=batch_rows, route_below=route_below,
                            gold=str(gold.resolve()) if gold else "", gate=str(gate.resolve()) if gate else "",
                            student=student, n_boot=n_boot)
        store, resumed = plan_shard_run(shards, output, opts, spec, config_hash)
    except SlicelabError as e:
        _fail(e)
    timings: dict[str, float] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    t0 = time.perf_counter()
    try:
        with Progress(SpinnerColumn(), *columns, console=console) as bar:
            task = bar.add_task("index (rows read)", total=None)
            index = ensure_index(store, on_rows=lambda n: bar.advance(task, n))
        trim_memory()
        timings["index_s"] = time.perf_counter() - t0
        url, origin = resolve_redis_url(store.root / "redis")
    except SlicelabError as e:
        _fail(e)
    local = _local_workers(url, run_queue(store.manifest()["run_key"]), workers, store.root)
    console.print(f"run {escape(str(store.root))}{' (resumed)' if resumed else ''}: {sum(index['n_rows'])} rows in "
                  f"{len(index['n_rows'])} shards: {index['n_distinct']} distinct documents, {index['n_duplicates']} "
                  f"duplicates, {index['n_rejected']} rejected; judge sample {index['n_sample']}; Redis: {origin} "
                  f"{escape(redact_url(url))}, queue {escape(local.queue if local else queue)}")
    if not workers:
        console.print(f"--workers 0: waiting for `slicelab worker --queue {queue}` processes on this Redis "
                      "(Ctrl-C stops waiting; re-running resumes)")
    conn = Redis.from_url(url)

    def show(line: str) -> None:  # Redis down, judge paused, workers alive: in the log too
        if line:
            console.print(escape(line))

    try:
        if not store.student_path.is_file():
            if student:
                use_saved_student(store, student)
            else:
                jobs = judge_jobs(store)
                if retry_judge_errors(store, jobs):
                    console.print("judge jobs with judge_error are asked again")
                t1 = time.perf_counter()
                with Progress(*columns, console=console) as bar:
                    done = sum(store.marker(j)["rows"] for j in jobs if store.is_done(j))
                    task = bar.add_task("judge sample", total=index["n_sample"], completed=done)
                    run_jobs(store, jobs, conn, queue_name=queue, workers=local, on_progress=lambda n: bar.advance(task, n),
                             on_status=show, on_report=show)
                timings["judge_s"] = time.perf_counter() - t1
                t1 = time.perf_counter()
                console.print("training the student on the judge sample and measuring it ...")
                train_stage(store)
                timings["train_s"] = time.perf_counter() - t1
        record = json.loads(store.student_path.read_text())
        _print_student_record(record)
        jobs = label_jobs(store)
        t1 = time.perf_counter()
        with Progress(*columns, console=console) as bar:
            done = sum(store.marker(j)["rows"] for j in jobs if store.is_done(j))
            task = bar.add_task("label rows", total=sum(index["n_rows"]), completed=done)
            run_jobs(store, jobs, conn, queue_name=queue, workers=local, on_progress=lambda n: bar.advance(task, n),
                     on_status=show, on_report=show)
        timings["label_s"] = time.perf_counter() - t1
        timings["label_rows"] = sum(index["n_rows"]) - done
    except SlicelabError as e:
        _fail(e)
    except KeyboardInterrupt:
        console.print(f"interrupted: finished jobs are kept in {escape(str(store.root))}; re-run the same command to resume")
        raise typer.Exit(130)
    finally:
        if local:
            local.stop()
    store.remove_temp_files()
    timings["total_s"] = time.perf_counter() - t0
    summary = summarize(store, timings)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    out = console if as_json else _wide_console()  # with --json, stdout holds the JSON only
    out.print(f"wrote {summary['rows']} rows in {summary['n_label_jobs']} parts to {escape(str(store.parts_dir))}")
    out.print("status: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["status_counts"].items())))
    for axis, counts in summary["labeler_counts"].items():
        out.print(f"  {axis}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if timings.get("label_rows") and timings["label_s"] > 0:
        out.print(f"label phase: {timings['label_rows'] / timings['label_s']:,.0f} rows/s; total {timings['total_s']:.1f} s")


def _print_student_record(record: dict) -> None:
    """Per axis: student vs judge (held-out) and vs gold — n, kappa, lower 95% bound, verdict — and who labels it."""
    if not record.get("hash"):
        console.print(f"[yellow]no student: {escape(str(record.get('reason', '')))}; rows outside the judge sample stay unlabeled[/yellow]")
        return
    table = Table(title=f"student {record['hash']} (trained on {record.get('n_train')} judge labels)", title_justify="left")
    for col in ("axis", "vs judge n", "kappa", "low", "verdict", "vs gold n", "kappa ", "low ", "verdict ", "labels by"):
        table.add_column(col)
    for axis, a in record["axes"].items():
        cells = []
        for side in ("vs_judge", "vs_gold"):
            s = (record.get("summaries") or {}).get(axis, {}).get(side) or {}
            v = a.get(side) or {}
            cells += [str(s.get("n", "-")), _fmt(s.get("kappa")), _fmt(s.get("kappa_ci_low")), v.get("verdict", "-")]
        table.add_row(axis, *cells, "student + judge sample" if a["use_student"] else "judge sample only")
    Console(stderr=True, width=max(160, Console().width)).print(table)  # stdout stays free for --json


student_app = typer.Typer(no_args_is_help=True, help="Saved students of label-shard: list them, re-measure one.")
app.add_typer(student_app, name="student")


@student_app.command("eval")
def student_eval(
    student_hash: str = typer.Argument(..., metavar="HASH", help="a saved student (see `slicelab student list`)"),
    gold: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="document gold set (default: calibration/gold/doc_gold_v1.jsonl)"),
    gate: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="gate thresholds (default: calibration/gate.yaml)"),
    n_boot: int = typer.Option(defaults.STUDENT_N_BOOT, min=50, help="bootstrap resamples of the kappa intervals"),
    as_json: bool = typer.Option(False, "--json", help="print the measurements as JSON on stdout"),
) -> None:
    """Re-measure a saved student against a document gold set, with the gate's verdict per axis."""
    from slicelab.calibration.gate import GATE_FILE, load_gate
    from slicelab.calibration.gold import BUNDLED, GOLD, load_gold
    from slicelab.service.student import load_student, measure

    try:
        model, meta = load_student(student_hash)
        gold_set = load_gold(gold or BUNDLED["document"])
        if gold_set.kind != "document":
            raise SlicelabError(f"--gold {gold}: a {gold_set.kind} gold set; students label documents")
        ids = list(gold_set.items)
        result = measure(model, [gold_set.items[i].text for i in ids], [gold_set.labels[GOLD][i] for i in ids],
                         load_gate(gate or GATE_FILE), n_boot=n_boot)
    except SlicelabError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps({"hash": student_hash, "gold": str(gold_set.path), "gold_sha256": gold_set.sha256,
                               "axes": {a: {"summary": r["summary"], "verdict": r["verdict"]} for a, r in result.items()}},
                              indent=2, allow_nan=False))
        return
    table = Table(title=f"student {student_hash} vs {gold_set.path.name} ({len(ids)} documents)", title_justify="left")
    for col in ("axis", "n", "accuracy", "kappa", "kappa 95% CI", "macro-F1", "verdict", "reason", "at training"):
        table.add_column(col)
    for axis, r in result.items():
        s, v = r["summary"], r["verdict"]
        then = ((meta.get("vs_gold") or {}).get(axis) or {}).get("verdict", {}).get("verdict", "-")
        table.add_row(axis, str(s["n"]), _fmt(s["accuracy"]), _fmt(s["kappa"]),
                      f"[{_fmt(s['kappa_ci_low'])}, {_fmt(s['kappa_ci_high'])}]", _fmt(s["macro_f1"]),
                      v["verdict"], v["reason"], then)
    _wide_console().print(table)


@student_app.command("list")
def student_list() -> None:
    """Saved students, newest first: hash, when, training size, axes that passed the gate."""
    from slicelab.service.student import list_students, students_dir

    table = Table(title=f"students in {students_dir()}", title_justify="left")
    for col in ("hash", "created", "trained on", "axes passed"):
        table.add_column(col)
    for m in list_students():
        table.add_row(m["hash"], m.get("created_at", ""), str(m.get("n_train", "")), ", ".join(m.get("axes_passed", [])) or "-")
    _wide_console().print(table)


def _sigterm_as_interrupt(signum, frame) -> None:
    """SIGTERM ends a labeling command like Ctrl-C: its local workers are stopped, finished chunks kept."""
    raise KeyboardInterrupt


from slicelab.service.cli_training import register as _register_training  # noqa: E402 - commands defined after app

_register_training(app)
from slicelab.service.cli_logs import register as _register_logs  # noqa: E402 - commands defined after app

_register_logs(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
