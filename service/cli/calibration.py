"""Calibration commands: ``calibrate`` and the ``calibration`` group (report, review loop)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from slicelab.service import defaults
from slicelab.service.cli.common import console, deprecated, fail, fmt, summary_console
from slicelab.service.cli.options import (Gate, JudgeBackend, JudgeOutputForm, JudgeModel, JudgeUrl, MaxTokens, ScTemperature,
                                          SelfConsistency, Workers)
from slicelab.service.cli.progress import progress_bar
from slicelab.service.errors import SlicelabError

calibration_app = typer.Typer(no_args_is_help=True, help="Calibration records: reports and the review loop.")

_TABLE_JSON_HELP = ("write per axis and labeler: n, accuracy, kappa, kappa_ci_low, kappa_ci_high, macro_f1, "
                    "seconds_per_label (JSON)")


def calibrate(
    gold: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="gold set JSONL (e.g. calibration/gold/eval_gold_v1.jsonl)")],
    judge_url: JudgeUrl = None,
    judge_model: JudgeModel = None,
    judge_backend: JudgeBackend = None,
    judge_output_form: JudgeOutputForm = None,
    max_tokens: MaxTokens = None,
    exemplars_k: Annotated[int, typer.Option(min=0, help="show the k most similar exemplar-pool items in the prompt")] = 0,
    self_consistency: SelfConsistency = 0,
    sc_temperature: ScTemperature = defaults.SC_TEMPERATURE,
    split_seed: Annotated[int, typer.Option(help="seed of the stratified exemplar-pool / held-out split")] = 0,
    holdout_frac: Annotated[float, typer.Option(min=0.1, max=0.9, help="share of items held out for metrics")] = 0.5,
    limit: Annotated[Optional[int], typer.Option(min=1, help="score only the first N held-out items")] = None,
    workers: Workers = 1,
    gate: Gate = None,
    exemplars: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="draw exemplars (and the k-NN/student pool) only from this gold file, and evaluate every item of --gold")] = None,
    cascade_threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="cascade: keep the k-NN label when its vote share is at least this")] = 0.8,
    table_json: Annotated[Optional[Path], typer.Option("--table-json", help=_TABLE_JSON_HELP)] = None,
    old_gate_file: Annotated[Optional[Path], typer.Option("--gate-file", hidden=True, exists=True)] = None,
    old_json: Annotated[Optional[Path], typer.Option("--json", hidden=True)] = None,
    old_samples: Annotated[Optional[int], typer.Option("--samples", hidden=True, min=1)] = None,
    old_temperature: Annotated[Optional[float], typer.Option("--temperature", hidden=True, min=0.0)] = None,
) -> None:
    """Run the judge on a gold set's held-out split, measure agreement per axis, gate, and store a record.

    With --self-consistency K the self-consistent judge (judge_sc) is measured as its own labeler.
    """
    from slicelab.service.usecases import calibrate as usecase

    gate = deprecated(old_gate_file, "--gate-file", "--gate", gate)
    table_json = deprecated(old_json, "--json PATH", "--table-json PATH (--json prints JSON on stdout elsewhere)",
                            table_json)
    if old_samples is not None:  # --samples 1 was the old default: one label per item, no vote
        old_samples = old_samples if old_samples > 1 else 0
    self_consistency = deprecated(old_samples, "--samples", "--self-consistency", self_consistency)
    sc_temperature = deprecated(old_temperature, "--temperature", "--sc-temperature", sc_temperature)
    try:
        with progress_bar(console) as bar:
            task = bar.add_task("calibrating", total=None)
            record = usecase.run(
                gold, dict(judge_url=judge_url, judge_model=judge_model, backend=judge_backend, output_form=judge_output_form, max_tokens=max_tokens),
                workers=workers, exemplars_k=exemplars_k, exemplars=exemplars, split_seed=split_seed,
                holdout_frac=holdout_frac, limit=limit, gate=gate, cascade_threshold=cascade_threshold,
                self_consistency=self_consistency, sc_temperature=sc_temperature, table_json=table_json,
                table_json_option="--json" if old_json else "--table-json",
                on_start=lambda n: bar.update(task, total=n), on_progress=lambda n: bar.advance(task, n))
    except SlicelabError as e:
        fail(e)
    _print_calibration(record, record["kind"])
    if table_json:
        Console().print(f"per-axis labeler table written to {escape(str(table_json))}")


def _print_calibration(record: dict, kind: str) -> None:
    """The record's header, the kappa table per labeler and axis, seconds per label and the gate."""
    out = summary_console()
    out.print(f"calibration [bold]{record['id']}[/bold] ({kind}; judge {record['judge']['backend']} "
              f"{record['judge']['model']}, exemplars k={(record['judge'].get('exemplars') or {}).get('k', 0)}, "
              f"evaluated n={record['split']['n_heldout']}, pool n={record['split']['n_pool']}, "
              f"judge statuses {record['status_counts']})")
    out.print(_kappa_table(record))
    spl = record["labelers"]["seconds_per_label"]
    out.print("seconds per label: " + ", ".join(f"{n} {fmt(v, 4)}" for n, v in spl.items())
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


def _kappa_table(record: dict) -> Table:
    """Cohen's kappa [95% CI] per axis and labeler (the selected one starred), annotator kappa, verdict."""
    from slicelab.calibration.run import table as labeler_table

    rows = labeler_table(record)
    # labelers differ per axis (e.g. answer-shape rules only on task_type / output_constraint): one column each
    names = list(dict.fromkeys(n for row in rows.values() for n in row["labelers"]))
    t = Table(title="Cohen's kappa [95% CI] per labeler (operation axes: primary); * = selected",
              title_justify="left")
    t.add_column("axis", no_wrap=True)
    t.add_column("n", min_width=3)
    for name in names:  # "κ [low, high]" wraps after κ when the labelers do not fit on one line
        t.add_column(name, min_width=8)
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
            cells.append(f"{star}{fmt(s['kappa'])} [{fmt(s['kappa_ci_low'])}, {fmt(s['kappa_ci_high'])}]"
                         if s else "—")
        v = m["verdict"]["verdict"]
        style = "green" if v == "pass" else "red"
        t.add_row(axis.replace("solving_operations", "primary operation").replace("demonstrated_operations", "primary demo. op."),
                  str(m["n"]), *cells, fmt(ann.get("cohen_kappa")), f"[{style}]{v}[/{style}]")
    return t


@calibration_app.command("report")
def calibration_report(
    record_id: Annotated[str, typer.Argument(help="calibration record id (see $SLICELAB_HOME/calibrations/)")],
    out_dir: Annotated[Optional[Path], typer.Option("-o", "--output", file_okay=False, help="folder for report.html/.json/.md (default: the record's folder)")] = None,
) -> None:
    """Write the calibration report (self-contained HTML, JSON, Markdown) and print the paths."""
    from slicelab.calibration.records import calibrations_dir, load_record
    from slicelab.calibration.report import write_report

    try:
        record = load_record(record_id)
        paths = write_report(record, out_dir or calibrations_dir() / record_id)
    except (SlicelabError, OSError) as e:
        fail(e)
    for path in paths.values():
        typer.echo(str(path))


@calibration_app.command("export-disagreements")
def calibration_export_disagreements(
    record_id: Annotated[str, typer.Argument(help="calibration record id")],
    output: Annotated[Path, typer.Option("-o", "--output", dir_okay=False, help="review CSV to write")],
) -> None:
    """Write one CSV row per (item, axis) where the judge disagrees with gold, for review."""
    from slicelab.calibration.records import load_record
    from slicelab.calibration.review import export_disagreements

    try:
        n = export_disagreements(load_record(record_id), output)
    except (SlicelabError, OSError) as e:
        fail(e)
    typer.echo(f"wrote {n} disagreements to {output}; fill 'decision' (gold wrong / judge wrong) "
               "and, for 'gold wrong', 'corrected_label', then run `slicelab calibration import-review`")


@calibration_app.command("import-review")
def calibration_import_review(
    review: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the reviewed CSV")],
    gold: Annotated[Path, typer.Option("--gold", exists=True, dir_okay=False, help="the gold set the review applies to")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", dir_okay=False, help="new gold file (default: next version beside --gold, e.g. _v2)")] = None,
) -> None:
    """Apply 'gold wrong' corrections from a reviewed CSV; write a NEW gold-set version (the old one is kept)."""
    from slicelab.calibration.review import import_review

    try:
        path = import_review(review, gold, output)
    except (SlicelabError, OSError) as e:
        fail(e)
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Add ``calibrate`` and the ``calibration`` group to the ``slicelab`` app."""
    app.command("calibrate")(calibrate)
    app.add_typer(calibration_app, name="calibration")
