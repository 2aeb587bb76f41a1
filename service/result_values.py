"""Values of a results record: ids, correctness, counts, text, finish reasons (:mod:`service.results`).

Every function reads one field value as a JSON or Parquet record holds it; a bad value raises
:class:`service.errors.RecordError` naming the field.
"""

from __future__ import annotations

import math
from typing import Any

from slicelab.service.errors import RecordError
from slicelab.service.samples import id_text


def correct_token(v: Any) -> bool | None:
    """``v`` as correctness when it is true/false or 1/0 (a bool, a number, or those words as text), else None."""
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0"):
        return v.strip().lower() in ("true", "1")
    return None


def missing(v: Any) -> bool:
    """None or NaN (a null of a Parquet column read by pandas)."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def joined(rec: dict, keys: tuple[str, ...], sep: str) -> str:
    """The values of ``keys`` as :func:`service.samples.id_text` writes them, joined by ``sep``.

    Raises:
        RecordError: a key missing, null or blank (the message lists the fields present).
    """
    parts = []
    for key in keys:
        v = rec.get(key)
        if missing(v) or (isinstance(v, str) and not v.strip()):
            raise RecordError(f"missing {key!r}; fields present: {', '.join(sorted(rec))}", field=key)
        parts.append(id_text(v))
    return sep.join(parts)


def correct_value(rec: dict) -> bool:
    """``correct`` (true/false, 1/0, their strings), else ``score >= 1`` for a score in [0, 1].

    Raises:
        RecordError: neither field, or a value outside those.
    """
    v = rec.get("correct")
    if not missing(v):
        token = correct_token(v)
        if token is None:
            raise RecordError(f"bad value {v!r}; allowed: true/false, 1/0", field="correct")
        return token
    s = rec.get("score")
    if missing(s):
        present = [f"{k} is {_shown(rec[k])}" for k in ("correct", "score") if k in rec]
        if present:
            raise RecordError(f"{' and '.join(present)}; expected correct true/false (or 1/0) or a score in [0, 1]",
                              field="score" if "score" in rec else "correct")
        raise RecordError("no 'correct' or 'score' field", field="correct")
    if isinstance(s, bool):
        return s
    if not isinstance(s, (int, float)) or not 0 <= s <= 1:
        raise RecordError(f"bad value {s!r}; allowed: a number in [0, 1] (correct means score >= 1)", field="score")
    return s >= 1


def _shown(v: Any) -> str:
    """A value as an error shows it: ``NaN`` and ``null`` by name."""
    if v is None:
        return "null"
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    return repr(v)


def counts(rec: dict, correct: bool) -> tuple[int, int]:
    """``(n_samples, n_correct)``: both absent → ``(1, int(correct))``.

    Raises:
        RecordError: one of them absent or not integral, ``n_samples < 1``, or ``n_correct`` outside [0, n].
    """
    n, c = rec.get("n_samples"), rec.get("n_correct")
    if missing(n) and missing(c):
        return 1, int(correct)
    for name, v in (("n_samples", n), ("n_correct", c)):
        integral = isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer()
        if not integral:
            raise RecordError(f"bad value {v!r}; n_samples and n_correct must both be integers", field=name)
    n, c = int(n), int(c)
    if n < 1 or not 0 <= c <= n:
        raise RecordError(f"n_correct={c}, n_samples={n}; need n_samples >= 1 and 0 <= n_correct <= n_samples",
                          field="n_correct")
    return n, c


def text_value(v: Any) -> str | None:
    """None for a missing value, else the value as text."""
    return None if missing(v) else (v if isinstance(v, str) else str(v))


def count_value(v: Any, default: int | None) -> int | None:
    """A non-negative number as an int (truncated), else ``default``."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and not missing(v) and v >= 0:
        return int(v)
    return default
