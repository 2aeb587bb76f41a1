"""``slicelab review``: review sets (seed gold items for a benchmark, review a calibration's items, export gold)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from slicelab.service.cli.common import fail, summary_console
from slicelab.service.cli.options import AsJson
from slicelab.service.errors import SlicelabError

review_app = typer.Typer(no_args_is_help=True,
                         help="Review sets: label items in the browser (slicelab serve) and export a new gold set.")

_NEXT = "label them in the browser (`slicelab serve`), then `slicelab review export {id} --reviewer NAME`"


def _print_created(review) -> None:
    """A created review set: id, size, rule and the first items with their reasons."""
    out = summary_console()
    out.print(f"review [bold]{review.id}[/bold]: {len(review.items)} {review.kind} items ({review.source})")
    out.print(f"compared with: {escape(review.labeler)}")
    out.print(f"rule: {escape(review.rule)}")
    t = Table(title="first items (review order)", title_justify="left")
    t.add_column("#", justify="right")
    t.add_column("item", overflow="fold")
    t.add_column("benchmark")
    t.add_column("why", overflow="fold")
    for k, it in enumerate(review.items[:10], start=1):
        t.add_row(str(k), escape(it.id), escape(it.benchmark), escape(it.reason))
    out.print(t)
    out.print(escape(_NEXT.format(id=review.id)))


@review_app.command("seed")
def review_seed(
    input_path: Annotated[Path, typer.Argument(exists=True, help="eval samples file (any format label-benchmark reads) or documents file")],
    n: Annotated[int, typer.Option("--n", min=1, help="how many items to pick")] = 40,
    benchmark: Annotated[Optional[str], typer.Option(help="benchmark name (the items' source in the exported gold)")] = None,
    kind: Annotated[str, typer.Option(help="eval or document")] = "eval",
) -> None:
    """Pick N items of a new benchmark to label as its first gold items (coverage of predicted labels, then disagreement)."""
    from slicelab.calibration.review_sets import create_seed_review

    try:
        review = create_seed_review(input_path, n=n, benchmark=benchmark, kind=kind)
    except (SlicelabError, OSError) as e:
        fail(e)
    _print_created(review)


@review_app.command("from-calibration")
def review_from_calibration(
    record_id: Annotated[str, typer.Argument(help="calibration record id (see $SLICELAB_HOME/calibrations/)")],
    labeler: Annotated[Optional[str], typer.Option(help="labeler compared with gold to order the items: judge, knn, student, cues, shape (default: judge when the record ran one, else knn)")] = None,
) -> None:
    """A review set of a calibration record's held-out items, the labeler's disagreements with gold first."""
    from slicelab.calibration.records import load_record
    from slicelab.calibration.review_sets import create_calibration_review

    try:
        review = create_calibration_review(load_record(record_id), labeler=labeler)
    except (SlicelabError, OSError) as e:
        fail(e)
    _print_created(review)


@review_app.command("list")
def review_list(as_json: AsJson = False) -> None:
    """List the review sets, newest first, with how many items are reviewed."""
    from slicelab.calibration.review_sets import list_reviews, reviews_dir

    rows = list_reviews()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    out = summary_console()
    if not rows:
        out.print(f"no review sets in {escape(str(reviews_dir()))}; create one with `slicelab review seed` "
                  "or `slicelab review from-calibration`")
        return
    t = Table(title=f"review sets in {escape(str(reviews_dir()))}", title_justify="left")
    for col in ("id", "source", "kind", "from", "created", "reviewed"):
        t.add_column(col, no_wrap=col in ("id", "created"))
    t.add_column("error", overflow="fold")
    for r in rows:
        done = "—" if r["n_reviewed"] is None else f"{r['n_reviewed']}/{r['n_items']}"
        t.add_row(r["id"], r["source"] or "—", r["kind"] or "—", escape(r["record_id"] or r["benchmark"] or "—"),
                  r["created_at"] or "—", done, escape(r["error"] or ""))
    out.print(t)


@review_app.command("export")
def review_export(
    review_id: Annotated[str, typer.Argument(help="review set id (see `slicelab review list`)")],
    reviewer: Annotated[str, typer.Option(help="whose decisions to export (the new annotator row's name)")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", dir_okay=False, help="new gold file (default: gold_<reviewer>_<k>.jsonl in the review's folder); never overwritten")] = None,
) -> None:
    """Write the reviewer's decisions as a NEW gold-set file and print its path (use it with `slicelab calibrate --gold`)."""
    from slicelab.calibration.review_sets import export_gold, progress

    try:
        path = export_gold(review_id, reviewer, output)
        done = progress(review_id, reviewer)
    except (SlicelabError, OSError) as e:
        fail(e)
    summary_console(stderr=True).print(escape(f"{done['n_reviewed']} of {done['n_items']} items reviewed by {reviewer}, "
                                              f"{done['n_changed']} labels changed from the prefill"))
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Add the ``review`` group to the ``slicelab`` app."""
    app.add_typer(review_app, name="review")
