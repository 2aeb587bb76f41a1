"""Evaluation-harness output as it is written: lm-evaluation-harness output folders and Inspect AI logs.

**lm-evaluation-harness** (``lm_eval --log_samples --output_path OUT``, ``EvaluationTracker``) writes
``OUT/<model_name_sanitized>/results_<timestamp>.json`` and one ``samples_<task>_<timestamp>.jsonl``
per task beside it. :func:`expand_logs` takes such a folder (one run), a folder of such folders
(several runs), a ``results_<timestamp>.json`` (its samples files) or a samples file. When one
folder holds the same task from several invocations, the newest timestamp is read and the older
files are reported in :attr:`LogFiles.skipped`.

**Inspect AI** logs come as ``.json`` (one object with ``eval``, ``samples``, ...) or ``.eval``, a
zip archive (Inspect >= 0.3, ``inspect_ai.log._recorders.eval``): ``header.json`` (the log without
samples; older archives: ``_journal/start.json`` or ``start.json`` plus ``results.json``),
``samples/<id>_epoch_<n>.json`` (one sample each), ``summaries.json`` and ``reductions.json``.
:func:`load_inspect_log` reads both into the ``.json`` shape with the standard library ``zipfile``.

The samples of the files found are read by :func:`service.readers.read_log_samples`.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slicelab.service.errors import InputFormatError
from slicelab.service.format_detection import LM_EVAL_NAME, looks_inspect
from slicelab.service.record_files import load_json

_RESULTS = re.compile(r"^results_(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)\.json$")
#: Readers :func:`expand_logs` names for the files it returns.
READERS = {"lm_eval": "lm-evaluation-harness samples JSONL", "inspect_json": "Inspect AI JSON log",
           "inspect_eval": "Inspect AI .eval log (zip)", "other": "other results file"}


@dataclass
class LogFiles:
    """The evaluation-log files found under some paths.

    Attributes:
        files: the files to read, in a stable order (folders walked in sorted order).
        readers: ``{file: reader}``, reader one of :data:`READERS`.
        skipped: ``{file: reason}`` for log files left out (older invocation of the same task).
    """

    files: list[Path] = field(default_factory=list)
    readers: dict[Path, str] = field(default_factory=dict)
    skipped: dict[Path, str] = field(default_factory=dict)

    def summary(self) -> str:
        """``"3 files (lm-evaluation-harness samples JSONL 2, Inspect AI .eval log (zip) 1)"``."""
        counts: dict[str, int] = {}
        for r in self.readers.values():
            counts[READERS[r]] = counts.get(READERS[r], 0) + 1
        return f"{len(self.files)} log files (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")"


def load_inspect_log(path: str | Path) -> dict[str, Any]:
    """An Inspect AI log, ``.json`` or ``.eval``, as the ``.json`` object (``eval``, ``results``, ``samples``, ...).

    Raises:
        InputFormatError: the file is not valid JSON / not a readable zip, or the archive has no
            ``header.json`` (nor ``_journal/start.json`` / ``start.json``); names the file and member.
    """
    p = Path(path)
    if p.suffix.lower() != ".eval":
        return load_json(p)
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
            log = _eval_header(p, z, names)
            log["samples"] = [_member(p, z, n) for n in names
                              if n.startswith("samples/") and n.endswith(".json")]
            if "reductions.json" in names and "reductions" not in log:
                log["reductions"] = _member(p, z, "reductions.json")
    except (zipfile.BadZipFile, OSError) as e:
        raise InputFormatError(f"{p}: not a readable Inspect .eval log (zip archive): {e}") from None
    return log


def _eval_header(p: Path, z: zipfile.ZipFile, names: list[str]) -> dict[str, Any]:
    if "header.json" in names:
        return dict(_member(p, z, "header.json"))
    start = next((n for n in ("_journal/start.json", "start.json") if n in names), None)
    if start is None:
        raise InputFormatError(f"{p}: an Inspect .eval log needs header.json (or _journal/start.json); "
                               f"the archive holds {', '.join(names[:10]) or 'nothing'}")
    log = dict(_member(p, z, start))
    if "results.json" in names:
        log.update(_member(p, z, "results.json"))
    return log


def _member(p: Path, z: zipfile.ZipFile, name: str) -> Any:
    try:
        return json.loads(z.read(name).decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InputFormatError(f"{p}: member {name} is not valid JSON: {e}") from None


def _reader(p: Path) -> str | None:
    """The reader of a log file, or None when ``p`` is not one."""
    if p.suffix.lower() == ".eval":
        return "inspect_eval"
    if LM_EVAL_NAME.match(p.name):
        return "lm_eval"
    if p.suffix.lower() == ".json" and not _RESULTS.match(p.name):
        return "inspect_json" if looks_inspect(p) else None
    return None


def expand_logs(paths: list[str | Path] | str | Path) -> LogFiles:
    """The evaluation-log files under ``paths`` (folders walked recursively).

    Args:
        paths: lm-eval output folders (one or several runs), ``results_<ts>.json`` files, samples files,
            Inspect ``.json`` / ``.eval`` logs, or folders of Inspect logs.

    Raises:
        InputFormatError: a path does not exist; a folder or ``results_*.json`` leads to no log file
            (the message says what was looked for).
    """
    out = LogFiles()
    for p in map(Path, [paths] if isinstance(paths, (str, Path)) else paths):
        if not p.exists():
            raise InputFormatError(f"{p}: no such file or folder")
        if p.is_dir():
            found = [f for f in sorted(p.rglob("*")) if f.is_file() and _reader(f)]
        elif _RESULTS.match(p.name):
            found = sorted(p.parent.glob(f"samples_*_{_RESULTS.match(p.name)['ts']}.json*"))
        else:
            found = [p]
        found = _newest_per_task(found, out.skipped)
        if not found:
            raise InputFormatError(
                f"{p}: no evaluation log found; looked for lm-evaluation-harness samples_<task>_<timestamp>.jsonl "
                "(written with --log_samples, beside results_<timestamp>.json) and Inspect AI logs (.json, .eval)")
        for f in found:
            if f not in out.readers:
                out.files.append(f)
                out.readers[f] = _reader(f) or "other"
    return out


def _newest_per_task(files: list[Path], skipped: dict[Path, str]) -> list[Path]:
    """Keep, per (folder, lm-eval task), the samples file of the newest timestamp."""
    newest: dict[tuple[Path, str], Path] = {}
    for f in files:
        m = LM_EVAL_NAME.match(f.name)
        if m:
            key = (f.parent, m["task"])
            old = newest.get(key)
            if old is None or LM_EVAL_NAME.match(old.name)["ts"] < m["ts"]:
                newest[key] = f
    keep = []
    for f in files:
        m = LM_EVAL_NAME.match(f.name)
        if m and newest[(f.parent, m["task"])] != f:
            skipped[f] = f"older invocation of task {m['task']} (newest: {newest[(f.parent, m['task'])].name})"
        else:
            keep.append(f)
    return keep


def is_log_bundle(path: str | Path) -> bool:
    """Whether ``path`` stands for several log files: a folder, or an lm-eval ``results_<timestamp>.json``."""
    p = Path(path)
    return p.is_dir() or bool(_RESULTS.match(p.name) and p.is_file())

