"""What every command module shares: the stderr console, the error exit, number formatting, local workers."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)


#: Columns a summary (its tables and wrapped lines) fits in, in a terminal or in a log.
SUMMARY_WIDTH = 100


def summary_console(*, stderr: bool = False) -> Console:
    """A console for summaries: :data:`SUMMARY_WIDTH` columns (fewer in a narrower terminal).

    Without a terminal (a pipe, a log file) rich would assume 80 columns; summaries get 100 there too.
    """
    probe = Console(stderr=stderr)
    width = min(SUMMARY_WIDTH, probe.width) if probe.is_terminal else SUMMARY_WIDTH
    return Console(stderr=stderr, width=width)


def loop_console() -> Console:
    """The summary console on stdout, with long result lines kept on one line (greppable in logs);
    tables still fit its width."""
    console = summary_console()
    console.soft_wrap = True
    return console


def fail(e: Exception) -> NoReturn:
    """Print ``error: <message>`` on one line to stderr and exit with status 2."""
    # escaped: error text holds brackets (pip install 'slicelab[vllm]', JSON, paths) that are not markup
    console.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)  # one line, however long
    raise typer.Exit(2)


def fmt(x: float | None, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals, or an em dash for None."""
    return "—" if x is None else f"{x:.{digits}f}"


def local_workers(url: str, queue: str, n: int, run_dir: Path):
    """``n`` local worker processes serving ``queue`` (the run's own queue), or None for ``n == 0``.

    Their output goes to ``run_dir/workers.log``; each gets an equal share of this machine's cores
    as labeling threads.
    """
    from slicelab.service.engine import LocalWorkers

    if not n:
        return None
    return LocalWorkers(url, queue, n, log_path=run_dir / "workers.log",
                        threads_per_worker=max(1, (os.cpu_count() or 1) // n))


@contextmanager
def stopping_workers(local, run_dir: Path, noun: str) -> Iterator[None]:
    """Around a labeling stage: an error exits 2, Ctrl-C exits 130 saying what is kept; the
    command's ``local`` workers (or None) are stopped either way."""
    from slicelab.service.errors import SlicelabError

    try:
        yield
    except SlicelabError as e:
        fail(e)
    except KeyboardInterrupt:
        console.print(f"interrupted: finished {noun} are kept in {escape(str(run_dir))}; "
                      "re-run the same command to resume")
        raise typer.Exit(130)
    finally:
        if local:
            local.stop()


def sigterm_as_interrupt(signum, frame) -> None:
    """SIGTERM ends a labeling command like Ctrl-C: its local workers are stopped, finished chunks kept."""
    raise KeyboardInterrupt


def deprecated(old_value, old: str, new: str, new_value):
    """The value given under the deprecated spelling ``old`` (with a one-line warning on stderr), else ``new_value``.

    ``old_value`` is None when ``old`` was not given on the command line.
    """
    if old_value is None:
        return new_value
    typer.echo(f"warning: {old} is deprecated and will be removed; use {new}", err=True)
    return old_value
