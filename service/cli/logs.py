"""``slicelab ingest``: evaluation-harness logs to one per-sample table."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from slicelab.service.cli.common import fail, loop_console
from slicelab.service.errors import SlicelabError

_SUFFIXES = (".parquet", ".jsonl", ".csv")


def ingest_cmd(
    logs: list[Path] = typer.Argument(..., exists=True, help="lm-evaluation-harness --output_path folders (one or several runs), results_<ts>.json or samples files, Inspect AI logs (.json/.eval) or folders of them"),
    output: Path = typer.Option(..., "-o", "--output", dir_okay=False, help="the table: .parquet, .jsonl or .csv"),
    skip_bad_rows: bool = typer.Option(False, help="skip unusable samples (counted, first one shown) instead of stopping"),
) -> None:
    """Join every sample of the logs into one table: sample id, run, task, correct, score per metric, output, finish reason, set-up."""
    from slicelab.service.harness_logs import expand_logs
    from slicelab.service.ingest import ingest_logs

    out = loop_console()
    rejects: list | None = [] if skip_bad_rows else None
    try:
        if output.suffix.lower() not in _SUFFIXES:
            raise SlicelabError(f"-o {output}: allowed suffixes {', '.join(_SUFFIXES)}")
        files = expand_logs(logs)
        out.print(f"reading {escape(files.summary())} from {len(logs)} path(s)")
        for f, why in files.skipped.items():
            out.print(f"[yellow]left out {escape(str(f))}: {escape(why)}[/yellow]")
        df = ingest_logs(logs, rejects=rejects, files=files)
    except SlicelabError as e:
        fail(e)
    output.parent.mkdir(parents=True, exist_ok=True)
    suffix = output.suffix.lower()
    if suffix == ".parquet":
        df.to_parquet(output, index=False)
    elif suffix == ".jsonl":
        df.to_json(output, orient="records", lines=True, force_ascii=False)
    else:
        df.to_csv(output, index=False)
    runs = df.groupby("run")["correct"].agg(["size", "mean"])
    out.print(f"{len(df)} samples in {len(runs)} runs, {df['task'].nunique()} tasks -> {escape(str(output))}")
    for run, r in runs.iterrows():
        out.print(f"  {escape(str(run))}: {int(r['size'])} samples, pass rate {r['mean']:.3f}")
    if rejects:
        out.print(f"[yellow]{len(rejects)} samples skipped[/yellow]; first: {escape(str(rejects[0]))}")


def register(app: typer.Typer) -> None:
    """Add ``ingest`` to the ``slicelab`` app."""
    app.command("ingest")(ingest_cmd)
