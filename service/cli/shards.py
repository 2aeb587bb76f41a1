"""Pretraining shards: ``label-shard`` and the saved students (``student eval``, ``student list``)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from slicelab.service import defaults
from slicelab.service.cli.common import console, fail, fmt, local_workers, stopping_workers, summary_console
from slicelab.service.cli.options import (AsJson, DocGold, Gate, JudgeBackend, JudgeOutputForm, JudgeModel, JudgeUrl, Limit,
                                          MaxAttempts, MaxTokens, NBoot, NoCache, Queue, Workers)
from slicelab.service.cli.progress import progress_bar
from slicelab.service.errors import SlicelabError

student_app = typer.Typer(no_args_is_help=True, help="Saved students of label-shard: list them, re-measure one.")


def label_shard(
    shards: Annotated[list[str], typer.Argument(help="JSONL (.jsonl, .jsonl.gz, .jsonl.zst) or Parquet shards: local paths or fsspec URLs")],
    output: Annotated[Path, typer.Option("-o", "--output", file_okay=False, help="run folder: parts/ (the labeled rows), markers/, index/, student.json, summary.json")],
    judge_sample: Annotated[int, typer.Option(min=0, help="distinct documents the judge labels (seeded random sample); 0 needs --student")] = 200,
    seed: Annotated[int, typer.Option(help="seed of the judge sample and of the held-out split")] = 0,
    max_doc_tokens: Annotated[int, typer.Option(min=16, help="token budget documents are cut to, head and tail kept (4 characters a token)")] = defaults.SHARD_MAX_TOKENS,
    route_below: Annotated[Optional[float], typer.Option(help="send a student-labeled document to the judge when its lowest student probability is below this")] = None,
    heldout_frac: Annotated[float, typer.Option(help="share of the judge sample held out to measure the student against the judge")] = defaults.STUDENT_HELDOUT_FRAC,
    gold: DocGold = None,
    gate: Gate = None,
    student: Annotated[Optional[str], typer.Option(help="label with this saved student (hash) instead of training one")] = None,
    text_field: Annotated[str, typer.Option(help="record field holding the document text")] = "text",
    id_field: Annotated[str, typer.Option(help="record field holding the document id")] = "id",
    rows_per_job: Annotated[int, typer.Option(min=1, help="rows per label job (one Parquet part each)")] = defaults.SHARD_ROWS_PER_JOB,
    judge_docs_per_job: Annotated[int, typer.Option(min=1, help="sample documents per judge job")] = defaults.SHARD_JUDGE_DOCS_PER_JOB,
    batch_rows: Annotated[int, typer.Option(min=1, help="rows a job holds in memory at a time")] = defaults.SHARD_BATCH_ROWS,
    limit: Limit = None,
    workers: Workers = 1,
    queue: Queue = defaults.SHARD_QUEUE_NAME,
    judge_url: JudgeUrl = None,
    judge_model: JudgeModel = None,
    judge_backend: JudgeBackend = None,
    judge_output_form: JudgeOutputForm = None,
    no_cache: NoCache = False,
    max_tokens: MaxTokens = None,
    max_attempts: MaxAttempts = None,
    n_boot: NBoot = defaults.STUDENT_N_BOOT,
    as_json: AsJson = False,
) -> None:
    """Label pretraining shards: dedupe, judge a sample, distil a student, label every row through RQ workers."""
    from slicelab.service.shard_runner import ShardOptions
    from slicelab.service.usecases import label_shard as usecase

    try:
        run = usecase.start(shards, output, ShardOptions(
            text_field=text_field, id_field=id_field, max_tokens=max_doc_tokens, judge_sample=judge_sample, seed=seed,
            heldout_frac=heldout_frac, rows_per_job=rows_per_job, judge_docs_per_job=judge_docs_per_job,
            batch_rows=batch_rows, route_below=route_below, gold=str(gold.resolve()) if gold else "",
            gate=str(gate.resolve()) if gate else "", student=student, n_boot=n_boot, limit=limit,
            cache=not no_cache),
            judge=dict(judge_url=judge_url, judge_model=judge_model, backend=judge_backend, output_form=judge_output_form, max_tokens=max_tokens,
                       max_attempts=max_attempts))
        with progress_bar(console, spinner=True) as bar:
            task = bar.add_task("index (rows read)", total=None)
            usecase.index(run, on_rows=lambda n: bar.advance(task, n))
    except SlicelabError as e:
        fail(e)
    _run_stages(run, workers=workers, queue=queue, student=student)
    _print_shard_summary(usecase.finish(run), run.timings, as_json)


def _run_stages(run, *, workers: int, queue: str, student: Optional[str]) -> None:
    """The judge sample, the student and the label stage on the run's Redis, with progress bars."""
    from redis import Redis

    from slicelab.service.engine import run_queue
    from slicelab.service.redis_conn import redact_url
    from slicelab.service.usecases import label_shard as usecase

    store, index = run.store, run.index
    local = local_workers(run.redis_url, run_queue(store.manifest()["run_key"]), workers, store.root)
    console.print(f"run {escape(str(store.root))}{' (resumed)' if run.resumed else ''}: {sum(index['n_rows'])} rows in "
                  f"{len(index['n_rows'])} shards: {index['n_distinct']} distinct documents, {index['n_duplicates']} "
                  f"duplicates, {index['n_rejected']} rejected; judge sample {index['n_sample']}; Redis: "
                  f"{run.redis_origin} {escape(redact_url(run.redis_url))}, queue {escape(local.queue if local else queue)}")
    if not workers:
        console.print(f"--workers 0: waiting for `slicelab worker --queue {queue}` processes on this Redis "
                      "(Ctrl-C stops waiting; re-running resumes)")
    conn = Redis.from_url(run.redis_url)

    def show(line: str) -> None:  # Redis down, judge paused, workers alive: in the log too
        if line:
            console.print(escape(line))

    with stopping_workers(local, store.root, "jobs"):
        record = usecase.student(run, conn, queue=queue, workers=local, saved=student, progress=_progress,
                                 on_status=show, on_note=show)
        _print_student_record(record)
        usecase.label(run, conn, queue=queue, workers=local, progress=_progress, on_status=show)


@contextmanager
def _progress(name: str, total: int, done: int):
    """A progress bar on stderr for one stage; yields the function that advances it."""
    with progress_bar(console) as bar:
        task = bar.add_task(name, total=total, completed=done)
        yield lambda n: bar.advance(task, n)


def _print_shard_summary(summary: dict, timings: dict, as_json: bool) -> None:
    """The summary as JSON on stdout (``--json``; the lines then go to stderr), else the lines on stdout."""
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    out = console if as_json else summary_console()  # with --json, stdout holds the JSON only
    out.print(f"wrote {summary['rows']} rows in {summary['n_label_jobs']} parts to {escape(summary['parts'])}")
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
            cells += [str(s.get("n", "-")), fmt(s.get("kappa")), fmt(s.get("kappa_ci_low")), v.get("verdict", "-")]
        table.add_row(axis, *cells, "student + judge sample" if a["use_student"] else "judge sample only")
    summary_console(stderr=True).print(table)  # stdout stays free for --json


@student_app.command("eval")
def student_eval(
    student_hash: Annotated[str, typer.Argument(metavar="HASH", help="a saved student (see `slicelab student list`)")],
    gold: DocGold = None,
    gate: Gate = None,
    n_boot: NBoot = defaults.STUDENT_N_BOOT,
    as_json: AsJson = False,
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
        fail(e)
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
        table.add_row(axis, str(s["n"]), fmt(s["accuracy"]), fmt(s["kappa"]),
                      f"[{fmt(s['kappa_ci_low'])}, {fmt(s['kappa_ci_high'])}]", fmt(s["macro_f1"]),
                      v["verdict"], v["reason"], then)
    summary_console().print(table)


@student_app.command("list")
def student_list() -> None:
    """Saved students, newest first: hash, when, training size, axes that passed the gate."""
    from slicelab.service.student import list_students, students_dir

    table = Table(title=f"students in {students_dir()}", title_justify="left")
    for col in ("hash", "created", "trained on", "axes passed"):
        table.add_column(col)
    for m in list_students():
        table.add_row(m["hash"], m.get("created_at", ""), str(m.get("n_train", "")), ", ".join(m.get("axes_passed", [])) or "-")
    summary_console().print(table)


def register(app: typer.Typer) -> None:
    """Add ``label-shard`` and the ``student`` group to the ``slicelab`` app."""
    app.command("label-shard")(label_shard)
    app.add_typer(student_app, name="student")
