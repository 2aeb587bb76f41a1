"""``slicelab taxonomy show``: the label taxonomy."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from slicelab.service.cli.options import AsJson

taxonomy_app = typer.Typer(no_args_is_help=True, help="Inspect the label taxonomy.")


@taxonomy_app.command("show")
def taxonomy_show(
    kind: Annotated[str, typer.Option(help="eval, document or all")] = "all",
    as_json: AsJson = False,
) -> None:
    """Print the taxonomy: axes, label ids and meanings, version and content hash (--json: its JSON schemas)."""
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


def register(app: typer.Typer) -> None:
    """Add the ``taxonomy`` group to the ``slicelab`` app."""
    app.add_typer(taxonomy_app, name="taxonomy")
