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


def _wide_console() -> Console:
    """A console at least 160 columns wide: summary tables stay legible in logs and pipes."""
    return Console(width=max(160, Console().width))


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
    fmt: Optional[str] = typer.Option(None, "--format", help="parquet or jsonl (default: from the output suffix, else parquet)"),
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
    labeler: str = typer.Option("selected", help="selected: per axis, the labeler calibration chose for this judge; judge: the LLM judge on every axis"),
) -> None:
    """Label every sample of a benchmark file through RQ workers; write one row per sample."""
    from itertools import islice

    from redis import Redis

    from calibration.records import latest_for_config
    from service.judge import judge_spec, make_judge, per_axis_spec
    from service.output import check_output, write_table
    from service.readers import FieldMapping, read_eval_samples
    from service.redis_conn import resolve_redis_url
    from service.runner import LocalWorkers, collect, execute, prepare_run

    try:
        fmt = check_output(output, fmt, input)
        if labeler not in ("selected", "judge"):
            raise SlicelabError(f"--labeler: unknown choice {labeler!r}; allowed: selected, judge")
        spec = judge_spec(judge_url=judge_url, judge_model=judge_model, max_tokens=max_tokens, max_attempts=max_attempts)
        record = latest_for_config(make_judge(spec).config_hash(), "eval")
        use_selection = labeler == "selected" and record is not None and record.get("selection") \
            and set(record["selection"].values()) != {"judge"}
        if use_selection:
            spec = per_axis_spec(spec, record)
        config_hash = make_judge(spec).config_hash()
        mapping = FieldMapping(id_field=id_field, question_field=text_field, reference_field=reference_field,
                               output_field=output_field, correct_field=correct_field, task_field=task_field)
        items = read_eval_samples(input, fmt=input_format, mapping=mapping, benchmark=benchmark)
        if limit:
            items = islice(items, limit)
        plan = prepare_run(items, input_path=input, out_path=output, kind="eval", judge=spec,
                           judge_config_hash=config_hash, chunk_size=chunk_size, options={"limit": limit, "mapping": vars(mapping),
                                                           "input_format": input_format, "benchmark": benchmark})
        url, origin = resolve_redis_url(plan.store.root.parent / "redis")
    except SlicelabError as e:
        _fail(e)
    done_before = plan.n_chunks - len(plan.pending)
    console.print(f"run {plan.store.root.name}: {plan.n_items} samples in {plan.n_chunks} chunks"
                  f" ({done_before} already done), {plan.n_rejected} rejected records; Redis: {origin}")
    if plan.n_rejected:
        console.print(f"rejected records and reasons: {plan.store.rejects_path}")
    if not workers and plan.pending:
        console.print(f"--workers 0: waiting for `slicelab worker --queue {queue}` processes on this Redis "
                      "to take the jobs (Ctrl-C stops waiting; re-running resumes)")
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
    except KeyboardInterrupt:
        console.print(f"interrupted: finished chunks are kept in {plan.store.root}; re-run the same command to resume")
        raise typer.Exit(130)
    finally:
        if local:
            local.stop()
    df = _gate(collect(plan), record, "eval", selected=bool(use_selection))
    write_table(df, output, fmt)
    _print_summary(df, output)


def _gate(df, record: dict | None, kind: str, *, selected: bool):
    """Attach each axis's calibration verdict (of the labelers actually used) to every row."""
    from service.slices import apply_gate
    from service.taxonomy import load_taxonomy

    if record is None:
        console.print("no calibration record for this judge configuration: every axis is [yellow]ungated[/yellow] "
                      "(run `slicelab calibrate`)")
        return apply_gate(df, None, load_taxonomy(), kind)
    verdicts = record["verdicts"] if selected else record.get("judge_verdicts", record["verdicts"])
    if selected:
        console.print(f"calibration {record['id']}: per axis " + ", ".join(
            f"{a} {record['selection'][a]} ({v})" for a, v in verdicts.items()))
    else:
        console.print(f"calibration {record['id']}: judge on every axis: " + ", ".join(
            f"{a} {v}" for a, v in verdicts.items()))
    return apply_gate(df, record | {"verdicts": verdicts}, load_taxonomy(), kind)


@app.command("slices")
def slices(
    labels: Path = typer.Argument(..., exists=True, dir_okay=False, help="labeled samples (.parquet or .jsonl)"),
    output: Path = typer.Option(..., "-o", "--output", help="slice table as JSON"),
    allow_ungated: bool = typer.Option(False, help="also use axes that failed or never had calibration (recorded in the output)"),
    min_support: int = typer.Option(10, min=1, help="slices with fewer samples are flagged low_support"),
) -> None:
    """Group labeled samples into capability slices with pass rates, using only calibrated axes."""
    from service.output import read_table
    from service.slices import slice_table

    table, meta = slice_table(read_table(labels), allow_ungated=allow_ungated, min_support=min_support)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({**meta, "slices": json.loads(table.to_json(orient="records"))}, indent=2))
    if meta["axes_excluded"]:
        console.print("[yellow]axes left out (calibration verdict not pass):[/yellow] "
                      + ", ".join(f"{a} ({v})" for a, v in meta["axes_excluded"].items()))
    if meta["allow_ungated"] and meta["ungated_axes_used"]:
        console.print(f"[yellow]--allow-ungated: using {', '.join(meta['ungated_axes_used'])} without a passing calibration[/yellow]")
    Console().print(f"{len(table)} slices over {meta['axes_used'] or 'no axis'} written to {output}")


def _print_summary(df, output: Path) -> None:
    """Status counts, then per task: samples, labeled, and the commonest label (count) per axis."""
    import pandas as pd

    out = _wide_console()
    out.print(f"wrote {len(df)} rows to {output}")
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
    from calibration.records import calibrations_dir, load_record
    from calibration.report import write_report

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
    from calibration.records import load_record
    from calibration.review import export_disagreements

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
    from calibration.review import import_review

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
    max_tokens: Optional[int] = typer.Option(None, min=16, help="output tokens per label"),
    exemplars_k: int = typer.Option(0, min=0, help="show the k most similar exemplar-pool items in the prompt"),
    samples: int = typer.Option(1, min=1, help="label each item k times; the modal label's share is its confidence"),
    temperature: Optional[float] = typer.Option(None, min=0.0, help="sampling temperature (use > 0 with --samples > 1)"),
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
    from calibration.gold import load_gold
    from calibration.run import run_calibration
    from service.judge import judge_spec
    from service.redis_conn import resolve_redis_url
    from calibration.records import calibrations_dir

    try:
        kind = load_gold(gold).kind
        spec = judge_spec(judge_url=judge_url, judge_model=judge_model, max_tokens=max_tokens,
                          temperature=temperature, exemplars_gold=str(exemplars or gold) if exemplars_k else None,
                          exemplars_k=exemplars_k, split_seed=split_seed,
                          holdout_frac=0.0 if exemplars else holdout_frac)
        url, origin = resolve_redis_url(calibrations_dir() / "redis")
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
        with Progress(TextColumn("calibrating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as bar:
            task = bar.add_task("cal", total=None)
            record = run_calibration(gold, spec, url, exemplars_path=exemplars, cascade_threshold=cascade_threshold,
                                     samples=samples, split_seed=split_seed,
                                     holdout_frac=holdout_frac, limit=limit, workers=workers,
                                     threads_per_worker=threads, gate_path=gate_file,
                                     on_start=lambda n: bar.update(task, total=n),
                                     on_progress=lambda n: bar.advance(task, n))
    except SlicelabError as e:
        _fail(e)
    _print_calibration(record, kind)
    if json_out:
        from calibration.run import table as labeler_table

        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"id": record["id"], "kind": kind, "axes": labeler_table(record)},
                                       indent=2, allow_nan=False))
        Console().print(f"per-axis labeler table written to {json_out}")


def _fmt(x, digits=2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _print_calibration(record: dict, kind: str) -> None:
    from calibration.run import table as labeler_table

    out = _wide_console()
    out.print(f"calibration [bold]{record['id']}[/bold] ({kind}; judge {record['judge']['backend']} "
              f"{record['judge']['model']}, exemplars k={(record['judge'].get('exemplars') or {}).get('k', 0)}, "
              f"evaluated n={record['split']['n_heldout']}, pool n={record['split']['n_pool']}, "
              f"judge statuses {record['status_counts']})")
    rows = labeler_table(record)
    names = list(next(iter(rows.values()))["labelers"]) if rows else []
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
            s = row["labelers"][name]
            star = "*" if name == row["selected"] else ""
            cells.append(f"{star}{_fmt(s['kappa'])} [{_fmt(s['kappa_ci_low'])}, {_fmt(s['kappa_ci_high'])}]")
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
