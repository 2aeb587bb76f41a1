"""``slicelab lint-training-config``: termination findings of a tokenizer / training-config folder."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from slicelab.service.cli.common import fail, loop_console
from slicelab.service.cli.options import AsJson
from slicelab.service.errors import SlicelabError


def lint_training_config_cmd(
    directory: Path = typer.Argument(..., exists=True, file_okay=False, help="folder with tokenizer_config.json / special_tokens_map.json (optionally generation_config.json and a training *.yaml)"),
    as_json: AsJson = False,
) -> None:
    """Flag pad == EOS, a chat template without EOS, and EOS kept out of the loss. Exit 1 when an error is found."""
    from slicelab.service.training_lint import lint_training_config

    try:
        lint = lint_training_config(directory)
    except SlicelabError as e:
        fail(e)
    if as_json:
        typer.echo(json.dumps(lint, indent=2, ensure_ascii=False))
    else:
        out = loop_console()
        t = lint["tokens"]
        out.print(f"{escape(lint['dir'])}: eos {t['eos']!r}, pad {t['pad']!r}, turn end {t['turn_end']!r} "
                  f"(read {', '.join(Path(f).name for f in lint['files'])})")
        for f in lint["findings"]:
            style = "red" if f["severity"] == "error" else "yellow"
            out.print(f"[{style}]{f['severity']}[/{style}] {f['id']}: {escape(f['message'])}")
            out.print(f"    evidence: {escape(json.dumps(f['evidence'], ensure_ascii=False))}")
        if not lint["findings"]:
            out.print("no finding")
    if any(f["severity"] == "error" for f in lint["findings"]):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``lint-training-config`` to the ``slicelab`` app."""
    app.command("lint-training-config")(lint_training_config_cmd)
