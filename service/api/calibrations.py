"""``/v1/calibrations``: calibrate the configured judge on a worker, read records and reports
(needs the ``calibrations`` scope)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from rq import Queue
from rq.job import Job
from starlette.exceptions import HTTPException

from slicelab.calibration.records import calibrations_dir, load_record
from slicelab.service import defaults
from slicelab.service.api.auth import RequireScope
from slicelab.service.api.paths import safe_path
from slicelab.service.api.state import ApiState, api_state
from slicelab.service.errors import ConfigError
from slicelab.service.judge import judge_spec

router = APIRouter(tags=["calibrations"])
#: The RQ task a calibration runs as (returns the record id).
CALIBRATE_TASK = "slicelab.workers.tasks.calibrate"


class CalibrationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gold: Literal["eval", "document"] | str = Field(default="eval", description="bundled set name, or a path under the data root")
    exemplars_k: int = Field(default=0, ge=0, le=8)
    limit: int | None = Field(default=None, ge=1)
    leave_one_benchmark_out: bool = Field(default=True, description="also measure k-NN and student with pools "
                                                                    "from other sources only")


@router.post("/v1/calibrations", status_code=202)
def create_calibration(req: CalibrationRequest, _: str = Depends(RequireScope("calibrations")),
                       state: ApiState = Depends(api_state)) -> dict:
    """Calibrate the configured judge on a gold set (runs on a worker); returns the RQ job id."""
    from slicelab.calibration.gold import BUNDLED  # imports scikit-learn: seconds, only when used

    gold = BUNDLED[req.gold] if req.gold in BUNDLED else safe_path(state.settings.data_root, req.gold)
    rq_job = enqueue_calibration(state, gold, exemplars_k=req.exemplars_k, limit=req.limit,
                                 lobo=req.leave_one_benchmark_out)
    return {"task_id": rq_job.id, "state": "queued",
            "poll": f"/v1/calibrations/tasks/{rq_job.id}"}


def enqueue_calibration(state: ApiState, gold: Path, *, exemplars_k: int = 0, limit: int | None = None,
                        lobo: bool = True) -> Job:
    """Enqueue a calibration of the configured judge on the gold file ``gold`` (a server path already checked).

    The gold file is loaded first, so a bad one is refused before anything is enqueued; the
    task (``slicelab.workers.tasks.calibrate``) returns the new record's id.

    Raises:
        RecordError / TaxonomyError: the gold file does not load (see :func:`calibration.gold.load_gold`).
        redis.exceptions.ConnectionError: Redis does not answer (nothing is enqueued).
    """
    from slicelab.calibration.gold import load_gold  # imports scikit-learn: seconds, only when used

    cfg = state.settings
    load_gold(gold)  # a bad gold file is refused now (422), not after the judge has worked
    spec = judge_spec(judge_url=cfg.judge.get("base_url"), judge_model=cfg.judge.get("model"),
                      exemplars_k=exemplars_k, exemplars_gold=str(gold) if exemplars_k else None)
    return Queue(cfg.queue, connection=state.answering_redis()).enqueue(
        CALIBRATE_TASK, str(gold), spec, {"limit": limit, "lobo": lobo},
        job_timeout=6 * 3600, result_ttl=defaults.RESULT_TTL_S)


@router.get("/v1/calibrations/tasks/{task_id}")
def calibration_task(task_id: str, _: str = Depends(RequireScope("calibrations")),
                     state: ApiState = Depends(api_state)) -> dict:
    """State of a calibration started with POST /v1/calibrations (and the record id when finished)."""
    job = calibration_job(state, task_id)
    if job is None:
        raise HTTPException(404, f"no calibration task {task_id!r} (unknown, or expired from Redis)")
    status = job.get_status().value
    return {"task_id": task_id, "state": status,
            "calibration_id": job.return_value() if status == "finished" else None}


@router.get("/v1/calibrations/{cal_id}")
def get_calibration(cal_id: str, _: str = Depends(RequireScope("calibrations"))) -> dict:
    """A calibration record: per-axis metrics, selection, verdicts."""
    return record(cal_id)


@router.get("/v1/calibrations/{cal_id}/report", response_class=HTMLResponse)
def calibration_report(cal_id: str, _: str = Depends(RequireScope("calibrations"))):
    """The self-contained HTML calibration report."""
    from slicelab.calibration.report import write_report  # imports matplotlib: seconds, only when used

    found = record(cal_id)
    paths = write_report(found, calibrations_dir() / found["id"])
    return HTMLResponse(Path(paths["html"]).read_text(encoding="utf-8"))


def calibration_job(state: ApiState, task_id: str) -> Job | None:
    """The RQ job of a calibration enqueued by :func:`enqueue_calibration`, or None (unknown, expired, or
    another kind of job)."""
    try:
        job = Job.fetch(task_id, connection=state.redis())
    except Exception:  # noqa: BLE001
        return None
    return job if job.func_name == CALIBRATE_TASK else None


def record(cal_id: str) -> dict:
    """The calibration record ``cal_id``.

    Raises:
        HTTPException: 404 for a malformed or unknown id.
    """
    if not cal_id.replace("-", "").isalnum():
        raise HTTPException(404, f"no calibration record {cal_id!r}")
    try:
        return load_record(cal_id)
    except ConfigError as e:
        raise HTTPException(404, str(e)) from e

