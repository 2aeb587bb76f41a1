"""A review's ``decisions.jsonl``: each line checked as a decision, and appended under an exclusive lock.

A decision line is a JSON object ``{"item_id": str, "axis": str, "label": None | str | [str, ...],
"reviewer": str, "at": str}``. A line that is not JSON or not such an object is an error naming
the file and its line, except a torn last line: a last line without its newline that is not JSON
(a write cut short by a crash, never acknowledged), which is skipped when read and cut off by the
next append. A complete last line without its newline is kept (the next append adds the newline).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from slicelab.service.errors import RecordError

#: The text fields of a decision line (``label`` is checked apart: None, an id or a list of ids).
TEXT_FIELDS = ("item_id", "axis", "reviewer", "at")


def check_decision(value: Any, path: Path, line: int) -> dict[str, Any]:
    """One parsed line of ``path`` as a decision object.

    Raises:
        RecordError: not an object, a text field missing or not a string, or ``label`` not None, a
            string or a list of strings (``path`` and ``line`` named).
    """
    if not isinstance(value, dict):
        raise RecordError(f"{path}: not a decision object (got {type(value).__name__})", line=line)
    for name in TEXT_FIELDS:
        if not isinstance(value.get(name), str):
            raise RecordError(f"{path}: not a decision: {name!r} missing or not text", line=line, field=name)
    label = value.get("label")
    ok = label is None or isinstance(label, str) or (isinstance(label, list) and all(isinstance(v, str) for v in label))
    if "label" not in value or not ok:
        raise RecordError(f"{path}: not a decision: 'label' must be null, a label id or a list of ids",
                          line=line, field="label")
    return value


def parse_decisions(body: str, path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The decision lines of a file's text, in order, and whether it ends in a torn line (skipped).

    Raises:
        RecordError: a line that is not JSON (other than a torn last line) or not a decision object
            (:func:`check_decision`), ``path`` and the 1-based line named.
    """
    lines = body.split("\n")
    out, torn = [], False
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            if n == len(lines):  # the last line has no newline: a write cut short
                torn = True
                continue
            raise RecordError(f"{path}: not JSON: {e}", line=n) from None
        out.append(check_decision(value, path, n))
    return out, torn


def read_decisions(path: Path) -> list[dict[str, Any]]:
    """Every decision line of ``path`` (none when it does not exist); see :func:`parse_decisions`.

    Raises:
        RecordError: a damaged line (file and line named) or text that is not UTF-8.
    """
    if not path.is_file():
        return []
    try:
        body = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(f"{path}: not UTF-8 text ({e})") from None
    return parse_decisions(body, path)[0]


def append_decisions_to(path: Path, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check the file, then append ``lines`` in one write under an exclusive lock, flushed and fsync'd.

    The file is read and checked under the lock before anything is written, so a damaged file
    is refused with nothing appended. A torn last line is cut off first; a complete last line
    without its newline gets one.

    Returns:
        Every decision line of the file after the append, in order.

    Raises:
        RecordError: a damaged line (nothing is written).
        OSError: the file cannot be written.
    """
    data = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in lines).encode("utf-8")
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.seek(0)
            raw = f.read()
            try:
                body = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise RecordError(f"{path}: not UTF-8 text ({e})") from None
            before, torn = parse_decisions(body, path)
            if torn:
                f.truncate(raw.rfind(b"\n") + 1)
            elif raw and not raw.endswith(b"\n"):
                data = b"\n" + data
            f.seek(0, os.SEEK_END)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    return before + lines
