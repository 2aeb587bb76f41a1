"""Calibration records on disk: ``$SLICELAB_HOME/calibrations/<id>/record.json``.

``SLICELAB_HOME`` defaults to ``.slicelab`` in the working directory. A labeling
run finds the newest record whose ``judge_config_hash`` equals its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slicelab.service.errors import ConfigError


class _Part(BaseModel):
    """A part of a record: typed fields, and any other key kept as written (newer writers)."""

    model_config = ConfigDict(extra="allow")


class GoldRef(_Part):
    """The gold set a record measured: path (a list for a union of bundled sets), content hash, size."""

    path: str | list[str]
    sha256: str
    n_items: int
    annotators: list[str] = Field(default_factory=list)


class ExemplarsRef(_Part):
    path: str
    sha256: str


class SplitInfo(_Part):
    """The pool / held-out split: labelers learn from the pool, agreement is measured on the held-out items."""

    seed: int
    holdout_frac: float
    stratify: str = "source"
    n_pool: int
    n_heldout: int
    exemplars: ExemplarsRef | None = None


class CascadeInfo(_Part):
    """The k-NN → judge cascade: the cheap label is kept when its confidence is at least ``threshold``."""

    cheap: str = "knn"
    threshold: float | None = None
    share_to_judge: dict[str, float] = Field(default_factory=dict)


class SelfConsistencyInfo(_Part):
    """The self-consistent judge a record measured (k samples at ``temperature``, majority vote)."""

    k: int
    temperature: float
    seed: int = 0
    config_hash: str
    status_counts: dict[str, int] = Field(default_factory=dict)
    output_tokens_per_label: float | None = None


class LabelersInfo(_Part):
    """Per labeler: seconds per label (wall, held-out items); the cascade and self-consistency settings."""

    seconds_per_label: dict[str, float | None] = Field(default_factory=dict)
    cascade: CascadeInfo | None = None
    judge_sc: SelfConsistencyInfo | None = None


class BenchmarkAxisAgreement(_Part):
    """One axis of one benchmark: the selected labeler's agreement on the benchmark's held-out items (own,
    labelers trained on the full pool) and its leave-one-benchmark-out kappa (None where not computed)."""

    labeler: str
    n: int | None = None
    kappa: float | None = None
    accuracy: float | None = None
    lobo_kappa: float | None = None
    lobo_accuracy: float | None = None


class BenchmarkAgreement(_Part):
    """One benchmark's held-out and pool item counts and its per-axis agreement
    (:func:`slicelab.calibration.per_benchmark.per_benchmark`)."""

    n_heldout: int
    n_pool: int
    axes: dict[str, BenchmarkAxisAgreement] = Field(default_factory=dict)


class CalibrationRecord(_Part):
    """One calibration: what was measured (judge, gold set, split, gate) and what it showed per axis.

    Written by :func:`slicelab.calibration.run.run_calibration` (a judge) and
    :func:`slicelab.calibration.offline.calibrate_offline` (cheap labelers only: ``judge`` and
    ``judge_config_hash`` are None). ``axes`` holds, per axis, the agreement metrics of every
    labeler (see :mod:`slicelab.calibration.evaluate`), the ``selected`` labeler and the gate
    verdicts; ``verdicts`` / ``judge_verdicts`` / ``judge_sc_verdicts`` are ``pass``, ``fail``
    or ``ungated`` per axis for the selected labelers, the judge and the self-consistent judge.
    ``per_benchmark`` holds each benchmark's own agreement beside its leave-one-benchmark-out figure.
    Records written by older versions (without ``selection``, ``judge_verdicts``, ``labelers`` or
    ``per_benchmark``) load with those empty.
    """

    id: str
    created_at: str
    kind: Literal["eval", "document"]
    gold: GoldRef
    split: SplitInfo
    judge: dict[str, Any] | None = None
    judge_config_hash: str | None = None
    samples: int | None = None
    gate: dict[str, Any]
    status_counts: dict[str, int] = Field(default_factory=dict)
    seconds_per_label: float | None = None
    output_tokens_per_label: float | None = None
    labelers: LabelersInfo = Field(default_factory=LabelersInfo)
    axes: dict[str, dict[str, Any]]
    selection: dict[str, str] = Field(default_factory=dict)
    verdicts: dict[str, str]
    judge_verdicts: dict[str, str] | None = None
    judge_sc_verdicts: dict[str, str] | None = None
    leave_one_benchmark_out: dict[str, Any] | None = None
    per_benchmark: dict[str, BenchmarkAgreement] | None = None
    items: list[dict[str, Any]] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data, with exactly the keys it was written or read with."""
        return self.model_dump(mode="json", exclude_unset=True)


def parse_record(data: dict[str, Any], source: str = "calibration record") -> CalibrationRecord:
    """Validate a record read from disk or built by a calibration run.

    Raises:
        ConfigError: a field is missing or has the wrong type (named, with ``source``).
    """
    try:
        return CalibrationRecord.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(record)"
        raise ConfigError(f"{source}: field {where}: {first['msg']} ({e.error_count()} problem(s))") from None


def home() -> Path:
    """slicelab's state folder (``$SLICELAB_HOME`` or ``./.slicelab``)."""
    return Path(os.environ.get("SLICELAB_HOME") or ".slicelab").resolve()


def calibrations_dir() -> Path:
    return home() / "calibrations"


def save_record(record: dict[str, Any]) -> Path:
    """Write a record (JSON, no NaN) and return its folder.

    Raises:
        ConfigError: the record does not match :class:`CalibrationRecord` (the field is named);
            nothing is written.
        ValueError: a NaN or infinite number (nothing is written).
    """
    record = parse_record(record, "calibration record to save").to_json()
    text = json.dumps(record, indent=2, allow_nan=False, ensure_ascii=False)  # fails before writing anything
    folder = calibrations_dir() / record["id"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "record.json").write_text(text, encoding="utf-8")
    return folder


def read_record(path: Path) -> dict[str, Any]:
    """One ``record.json``, checked against :class:`CalibrationRecord` (records of older versions load).

    Returns:
        the record as JSON data, with exactly the keys on disk.

    Raises:
        ConfigError: unreadable JSON or a field that does not match (path and field named).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a readable calibration record ({e})") from None
    return parse_record(data, str(path)).to_json()


def load_record(record_id: str) -> dict[str, Any]:
    """Load a record by id (see :func:`read_record`).

    Raises:
        ConfigError: no such record (the ids that exist are listed), or an invalid one.
    """
    path = calibrations_dir() / record_id / "record.json"
    if not path.is_file():
        known = sorted(p.parent.name for p in calibrations_dir().glob("*/record.json"))
        raise ConfigError(f"no calibration record {record_id!r} in {calibrations_dir()}; "
                          f"known: {', '.join(known) or 'none'}")
    return read_record(path)


def latest_for_config(config_hash: str, kind: str) -> dict[str, Any] | None:
    """The newest record for this exact judge configuration and item kind, or None.

    Raises:
        ConfigError: a record on disk is invalid (see :func:`read_record`).
    """
    found = []
    for path in calibrations_dir().glob("*/record.json"):
        rec = read_record(path)
        if rec.get("judge_config_hash") == config_hash and rec.get("kind") == kind:
            found.append(rec)
    return max(found, key=lambda r: r["created_at"]) if found else None
