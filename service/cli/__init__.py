"""The ``slicelab`` command line."""

from __future__ import annotations

import typer

from slicelab.service.cli import calibration, labeling, logs, loop, review, sample, serve, shards, taxonomy, training

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

# the order of the commands in `slicelab --help`
for _group in (taxonomy, labeling, shards, calibration, review, loop, sample, training, logs, serve):
    _group.register(app)


def main() -> None:
    """Run the ``slicelab`` command line (``python -m slicelab.service.cli``)."""
    app()
