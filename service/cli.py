"""The ``slicelab`` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from service import defaults
from service.errors import SlicelabError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
taxonomy_app = typer.Typer(no_args_is_help=True, help="Inspect the label taxonomy.")
app.add_typer(taxonomy_app, name="taxonomy")
console = Console(stderr=True)


def _fail(e: Exception) -> None:
    console.print(f"[red]error:[/red] {e}")
    raise typer.Exit(2)


@taxonomy_app.command("show")
def taxonomy_show(
    kind: str = typer.Option("all", help="eval, document or all"),
    as_json: bool = typer.Option(False, "--json", help="print the generated JSON schemas"),
) -> None:
    """Print the taxonomy: axes, label ids and meanings, version and content hash."""
    from service.taxonomy import load_taxonomy

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
    queue: str = typer.Option(defaults.QUEUE_NAME, help="RQ queue to listen on"),
    burst: bool = typer.Option(False, help="exit when the queue is empty"),
    name: Optional[str] = typer.Option(None, help="worker name (unique)"),
) -> None:
    """Start an RQ worker that labels chunks (uses REDIS_URL; run one per core on each machine)."""
    from redis import Redis
    from rq import Queue, SimpleWorker

    from service.redis_conn import resolve_redis_url

    try:
        url, _ = resolve_redis_url(allow_embedded=False)
    except SlicelabError as e:
        _fail(e)
    conn = Redis.from_url(url)
    # SimpleWorker runs jobs in this process, so the judge (and llama.cpp's
    # prefix cache) is built once per worker, not once per job.
    w = SimpleWorker([Queue(queue, connection=conn)], connection=conn, name=name)
    w.work(burst=burst, with_scheduler=False)


@app.command("label-benchmark")
def label_benchmark(
    input: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSONL/JSON/CSV/Parquet, BBH, lm-eval or Inspect log"),
    output: Path = typer.Option(..., "-o", "--output", help="output file (.parquet or .jsonl)"),
    fmt: str = typer.Option("parquet", "--format", help="parquet or jsonl"),
    input_format: Optional[str] = typer.Option(None, help="override input format detection"),
    limit: Optional[int] = typer.Option(None, min=1, help="label only the first N records"),
    workers: int = typer.Option(1, min=0, help="local worker processes to start (0: rely on `slicelab worker` elsewhere)"),
    chunk_size: int = typer.Option(defaults.CHUNK_SIZE, min=1, help="samples per queue job"),
    judge_url: Optional[str] = typer.Option(None, envvar="SLICELAB_JUDGE_URL", help="OpenAI-compatible base URL (e.g. vLLM's http://HOST:8000/v1); default: embedded judge"),
    judge_model: Optional[str] = typer.Option(None, envvar="SLICELAB_JUDGE_MODEL", help="served model name"),
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
) -> None:
    """Label every sample of a benchmark file through RQ workers; write one row per sample."""
    from itertools import islice

    from redis import Redis

    from service.judge import judge_spec
    from service.output import OUTPUT_FORMATS, write_table
    from service.readers import FieldMapping, read_eval_samples
    from service.redis_conn import resolve_redis_url
    from service.runner import LocalWorkers, collect, execute, prepare_run

    try:
        if fmt not in OUTPUT_FORMATS:
            raise SlicelabError(f"--format: unknown output format {fmt!r}; allowed: {', '.join(OUTPUT_FORMATS)}")
        spec = judge_spec(judge_url=judge_url, judge_model=judge_model, max_tokens=max_tokens, max_attempts=max_attempts)
        mapping = FieldMapping(id_field=id_field, question_field=text_field, reference_field=reference_field,
                               output_field=output_field, correct_field=correct_field, task_field=task_field)
        items = read_eval_samples(input, fmt=input_format, mapping=mapping, benchmark=benchmark)
        if limit:
            items = islice(items, limit)
        plan = prepare_run(items, input_path=input, out_path=output, kind="eval", judge=spec,
                           chunk_size=chunk_size, options={"limit": limit, "mapping": vars(mapping),
                                                           "input_format": input_format, "benchmark": benchmark})
        url, origin = resolve_redis_url(plan.store.root.parent / "redis")
    except SlicelabError as e:
        _fail(e)
    done_before = plan.n_chunks - len(plan.pending)
    console.print(f"run {plan.store.root.name}: {plan.n_items} samples in {plan.n_chunks} chunks"
                  f" ({done_before} already done), {plan.n_rejected} rejected records; Redis: {origin}")
    local = None
    if workers and plan.pending:
        threads = max(1, (os.cpu_count() or 1) // workers)
        local = LocalWorkers(url, queue, workers, log_path=plan.store.root / "workers.log",
                             threads_per_worker=threads)
    try:
        with Progress(TextColumn("labeling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as bar:
            done_rows = sum(plan.store.marker(c)["rows"] for c in plan.store.done_chunks())
            task = bar.add_task("label", total=plan.n_items, completed=done_rows)
            if plan.pending:
                execute(plan, Redis.from_url(url), queue_name=queue, workers=local,
                        on_progress=lambda n: bar.advance(task, n))
    except SlicelabError as e:
        _fail(e)
    finally:
        if local:
            local.stop()
    df = collect(plan)
    write_table(df, output, fmt)
    _print_summary(df, output)


def _print_summary(df, output: Path) -> None:
    """Status counts, then per task: samples, labeled, and the commonest label (count) per axis."""
    out = Console()
    out.print(f"wrote {len(df)} rows to {output}")
    counts = df.groupby("status").size().to_dict()
    out.print("status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    axes = [a for a in ("task_type", "background_condition", "primary_operation", "output_constraint", "failure_mode")
            if a in df.columns]
    table = Table(title="label counts by task (commonest label, count)", title_justify="left")
    for col in ("task", "n", "labeled", *axes):
        table.add_column(col, justify="right" if col in ("n", "labeled") else "left", no_wrap=True, overflow="ellipsis")
    for task, group in df.groupby(df["task"].fillna("(rejected)"), sort=True):
        labeled = group[group["status"] == "labeled"]
        cells = []
        for axis in axes:
            vc = labeled[axis].dropna().value_counts()
            cells.append(f"{vc.index[0]} ×{vc.iloc[0]}" if len(vc) else ".")
        table.add_row(str(task), str(len(group)), str(len(labeled)), *cells)
    out.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
