"""Progress that shows wherever stderr goes: a live bar in a terminal, a plain line every N seconds in a file.

A rich progress bar draws nothing on a console that is not a terminal until it stops, so a long
run whose stderr goes to a log file would look silent. :func:`progress_bar` returns a rich
``Progress`` on a terminal and a :class:`LineProgress` (same calls: ``add_task``, ``advance``,
``update``) elsewhere, which prints ``<description> <done>/<total> (<percent>) <elapsed>`` at most
every ``SLICELAB_PROGRESS_EVERY_S`` seconds (default 30) and once more when it stops.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

DEFAULT_EVERY_S = 30.0


def progress_every_s() -> float:
    """Seconds between progress lines when stderr is not a terminal (``SLICELAB_PROGRESS_EVERY_S``, default 30)."""
    try:
        return max(0.0, float(os.environ.get("SLICELAB_PROGRESS_EVERY_S", DEFAULT_EVERY_S)))
    except ValueError:
        return DEFAULT_EVERY_S


def progress_bar(console: Console, *, spinner: bool = False):
    """A context manager showing progress on ``console``: rich bar on a terminal, else :class:`LineProgress`.

    The bar shows the description, the bar, done/total and the elapsed time; ``spinner`` adds a
    spinner in front (for a total not known yet).
    """
    if not console.is_terminal:
        return LineProgress(console, every_s=progress_every_s())
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*((SpinnerColumn(),) if spinner else ()), *columns, console=console)


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    started: float = field(default_factory=time.monotonic)


class LineProgress:
    """Progress as plain lines on ``console``: at most one per ``every_s`` seconds per task, and a last one at the end."""

    def __init__(self, console: Console, every_s: float = DEFAULT_EVERY_S):
        self.console = console
        self.every_s = every_s
        self.tasks: list[_Task] = []
        self._last = time.monotonic()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            for task in self.tasks:
                self._print(task)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_) -> int:
        """Start a task; returns its id (for :meth:`advance` and :meth:`update`)."""
        self.tasks.append(_Task(description, total, completed))
        return len(self.tasks) - 1

    def advance(self, task_id: int, advance: float = 1) -> None:
        """Count ``advance`` more done; print a line when ``every_s`` has passed since the last one."""
        self.tasks[task_id].completed += advance
        self._maybe_print(self.tasks[task_id])

    def update(self, task_id: int, *, description: str | None = None, total: float | None = None, **_) -> None:
        """Change a task's description or total."""
        task = self.tasks[task_id]
        if description is not None:
            task.description = description
        if total is not None:
            task.total = total

    def _maybe_print(self, task: _Task) -> None:
        if time.monotonic() - self._last >= self.every_s:
            self._print(task)

    def _print(self, task: _Task) -> None:
        self._last = time.monotonic()
        elapsed = int(time.monotonic() - task.started)
        done = f"{task.completed:.0f}"
        if task.total:
            done += f"/{task.total:.0f} ({task.completed / task.total:.0%})"
        # the description is markup, as on the bar (callers escape what they put in it)
        self.console.print(f"{task.description} {done} {elapsed // 3600}:{elapsed // 60 % 60:02d}:"
                           f"{elapsed % 60:02d}", soft_wrap=True, highlight=False)
