"""Calibration records on disk: ``$SLICELAB_HOME/calibrations/<id>/record.json``.

``SLICELAB_HOME`` defaults to ``.slicelab`` in the working directory. A labeling
run finds the newest record whose ``judge_config_hash`` equals its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from slicelab.service.errors import ConfigError


def home() -> Path:
    """slicelab's state folder (``$SLICELAB_HOME`` or ``./.slicelab``)."""
    return Path(os.environ.get("SLICELAB_HOME") or ".slicelab").resolve()


def calibrations_dir() -> Path:
    return home() / "calibrations"


def save_record(record: dict[str, Any]) -> Path:
    """Write a record (JSON, no NaN) and return its folder."""
    text = json.dumps(record, indent=2, allow_nan=False, ensure_ascii=False)  # fails before writing anything
    folder = calibrations_dir() / record["id"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "record.json").write_text(text, encoding="utf-8")
    return folder


def load_record(record_id: str) -> dict[str, Any]:
    """Load a record by id. Raises ConfigError listing the ids that exist."""
    path = calibrations_dir() / record_id / "record.json"
    if not path.is_file():
        known = sorted(p.parent.name for p in calibrations_dir().glob("*/record.json"))
        raise ConfigError(f"no calibration record {record_id!r} in {calibrations_dir()}; "
                          f"known: {', '.join(known) or 'none'}")
    return json.loads(path.read_text(encoding="utf-8"))


def latest_for_config(config_hash: str, kind: str) -> dict[str, Any] | None:
    """The newest record for this exact judge configuration and item kind, or None."""
    found = []
    for path in calibrations_dir().glob("*/record.json"):
        rec = json.loads(path.read_text(encoding="utf-8"))
        if rec.get("judge_config_hash") == config_hash and rec.get("kind") == kind:
            found.append(rec)
    return max(found, key=lambda r: r["created_at"]) if found else None
