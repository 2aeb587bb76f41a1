"""Which input format a file holds, from its name and, where needed, its start.

Formats: generic ``jsonl``, ``json`` (array of objects), ``csv`` and ``parquet`` records;
lm-evaluation-harness ``--log_samples`` files (``lm_eval``); Inspect AI logs, ``.json`` or
``.eval`` (``inspect``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from slicelab.service.errors import InputFormatError
from slicelab.service.record_files import BLOCK_BYTES, MAX_RECORD_BYTES, load_json, read_lines

#: Every value ``fmt`` may take.
FORMATS = ("jsonl", "json", "csv", "parquet", "lm_eval", "inspect")
#: File name of an lm-evaluation-harness samples file: ``samples_<task>_<timestamp>.jsonl`` (or ``.json``).
LM_EVAL_NAME = re.compile(
    r"^samples_(?P<task>.+)_(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)\.jsonl?$"
)


def detect_format(path: str | Path) -> str:
    """Guess the input format of ``path`` from its name and, where needed, its start.

    Args:
        path: the input file.

    Returns:
        One of ``jsonl``, ``json``, ``csv``, ``parquet``, ``lm_eval``, ``inspect``.

    Raises:
        InputFormatError: the suffix is not one of the known ones.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        if is_array_file(p):  # a JSON array saved under a .jsonl name: read it as the array it is
            return "lm_eval" if _array_looks_lm_eval(p) else "json"
        return "lm_eval" if LM_EVAL_NAME.match(p.name) or _looks_lm_eval(p) else "jsonl"
    if suffix == ".eval":  # Inspect AI binary log: a zip of JSON (service.harness_logs)
        return "inspect"
    if suffix == ".json":
        if _array_looks_lm_eval(p):  # older harness versions saved samples_<task>_<ts>.json as one array
            return "lm_eval"
        return "inspect" if looks_inspect(p) else "json"
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise InputFormatError(
        f"{p}: cannot tell the input format from suffix {suffix or '(none)'!r}; allowed formats: "
        f"{', '.join(FORMATS)} (.jsonl/.ndjson, .json, .eval, .csv, .parquet); choose one with --input-format (fmt= in Python)"
    )


def is_array_file(path: Path) -> bool:
    """Whether a .jsonl file is one JSON array (saved under a JSONL name), judged from its start.

    Yes when its first non-blank line starts with ``[`` and either is not a complete
    JSON value by itself (a pretty-printed array) or is an array followed by nothing
    but whitespace (a one-line array). A first line that is a complete value followed
    by more lines is JSONL: that line becomes a rejected record and the rest is read.
    Reads the first line (bounded by :data:`MAX_RECORD_BYTES`) and the rest only up
    to its first non-blank byte.
    """
    try:
        with path.open("rb") as fh:
            for data, size in read_lines(fh, MAX_RECORD_BYTES):
                data = data.lstrip(b"\xef\xbb\xbf \t\r\n")
                if not data:
                    continue
                if not data.startswith(b"["):
                    return False
                if size <= MAX_RECORD_BYTES:
                    try:
                        json.loads(data.decode("utf-8"))
                    except ValueError:  # not a complete value on its own (or not UTF-8): the array goes on
                        return True
                return _rest_is_blank(fh)
    except OSError:
        return False
    return False


def _rest_is_blank(fh) -> bool:
    """Whether the rest of a binary file holds only whitespace (read in 1 MiB blocks up to the first other byte)."""
    while block := fh.read(BLOCK_BYTES):
        if block.strip():
            return False
    return True


def _looks_lm_eval(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            for data, size in read_lines(fh, MAX_RECORD_BYTES):
                if size > MAX_RECORD_BYTES:
                    return False
                if data.strip():
                    obj = json.loads(data.decode("utf-8-sig"))
                    return isinstance(obj, dict) and "doc_id" in obj and "arguments" in obj
    except (OSError, ValueError):
        pass
    return False


def _array_looks_lm_eval(path: Path) -> bool:
    """Whether a file is one JSON array of lm-eval sample records (``doc_id`` and ``arguments``)."""
    try:
        obj = load_json(path)
    except InputFormatError:
        return False
    return isinstance(obj, list) and bool(obj) and isinstance(obj[0], dict) and {"doc_id", "arguments"} <= obj[0].keys()


def looks_inspect(path: Path) -> bool:
    """Whether a file is an Inspect AI JSON log: one object with ``eval`` and ``samples``."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        if not head.startswith(b"{"):
            return False
        obj = load_json(path)
    except (OSError, InputFormatError):
        return False
    return isinstance(obj, dict) and "eval" in obj and "samples" in obj
