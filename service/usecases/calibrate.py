"""Use case: calibrate a judge on a gold set (CLI ``calibrate``; REST calibrations run :func:`run` in a worker).

The judge labels the gold set's held-out split through the job engine; every labeler is
measured against gold, one is selected per axis, the gate gives each axis its verdict, and the
record is stored under ``$SLICELAB_HOME/calibrations/<id>/`` (see :mod:`slicelab.calibration.run`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from slicelab.calibration.gate import GATE_FILE
from slicelab.calibration.gold import load_gold
from slicelab.calibration.records import calibrations_dir
from slicelab.calibration.run import run_calibration, table as labeler_table
from slicelab.service import defaults
from slicelab.service.judge import judge_spec
from slicelab.service.judge.resilience import probe_judge
from slicelab.service.output import check_writable
from slicelab.service.redis_conn import resolve_redis_url


def run(gold: Path, judge: dict[str, Any], *, workers: int = 1, exemplars_k: int = 0, exemplars: Path | None = None,
        split_seed: int = 0, holdout_frac: float = 0.5, limit: int | None = None, gate: Path | None = None,
        cascade_threshold: float = 0.8, self_consistency: int = 0,
        sc_temperature: float = defaults.SC_TEMPERATURE, table_json: Path | None = None,
        table_json_option: str = "--table-json", on_start: Callable[[int], None] | None = None,
        on_progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Probe the judge, calibrate it on ``gold`` with ``workers`` local workers, and return the record.

    ``judge``: keyword arguments of :func:`slicelab.service.judge.judge_spec` (judge URL, model,
    backend, max tokens); the exemplar settings are added here. ``table_json``: also write the
    per-axis labeler table there (checked writable before any work; ``table_json_option`` names
    the option in that error). ``on_start(n)`` gets the number of items to label, ``on_progress``
    the items labeled since its last call.

    Raises:
        SlicelabError: an unwritable ``table_json``, a bad gold set or judge, a judge that fails
            its probe, a failed run (see :func:`slicelab.calibration.run.run_calibration`).
    """
    kind = load_gold(gold).kind
    if table_json:
        check_writable(table_json, table_json_option)
    spec = judge_spec(**judge, exemplars_gold=str(exemplars or gold) if exemplars_k else None,
                      exemplars_k=exemplars_k, split_seed=split_seed, holdout_frac=0.0 if exemplars else holdout_frac)
    probe_judge(spec)  # a judge that cannot serve structured outputs stops here, before any work
    url, _ = resolve_redis_url(calibrations_dir() / "redis")
    record = run_calibration(gold, spec, url, exemplars_path=exemplars, cascade_threshold=cascade_threshold,
                             split_seed=split_seed, self_consistency=self_consistency,
                             sc_temperature=sc_temperature, holdout_frac=holdout_frac, limit=limit,
                             workers=workers, threads_per_worker=max(1, (os.cpu_count() or 1) // max(1, workers)),
                             gate_path=gate or GATE_FILE, on_start=on_start, on_progress=on_progress)
    if table_json:
        table_json.parent.mkdir(parents=True, exist_ok=True)
        table_json.write_text(json.dumps({"id": record["id"], "kind": kind, "axes": labeler_table(record)},
                                         indent=2, allow_nan=False))
    return record
