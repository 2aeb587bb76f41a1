"""``/v1/jobs``: bulk labeling jobs over a file, run on the RQ workers (needs the ``jobs`` scope).

Jobs live in their folders (:mod:`service.api.job_folders`); their state comes from the
job engine (:mod:`service.api.job_engine`).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from slicelab.service import defaults
from slicelab.service.api.auth import RequireScope
from slicelab.service.api.paths import safe_path
from slicelab.service.api.problems import Problem
from slicelab.service.api.state import ApiState, api_state

router = APIRouter(tags=["jobs"])
MEDIA = {"parquet": "application/vnd.apache.parquet", "jsonl": "application/x-ndjson"}


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="a file under the server's data root (relative path)")
    kind: Literal["benchmark"] = "benchmark"
    limit: int | None = Field(default=None, ge=1)
    chunk_size: int = Field(default=defaults.CHUNK_SIZE, ge=1, le=10_000)


@router.post("/v1/jobs", status_code=202)
def create_job(req: JobRequest, _: str = Depends(RequireScope("jobs")), state: ApiState = Depends(api_state)) -> dict:
    """Start a bulk labeling job over a file under the data root; returns its id (202)."""
    path = safe_path(state.settings.data_root, req.path)
    return state.jobs.start(state.settings, path, req.limit, req.chunk_size, state.answering_redis())


@router.post("/v1/jobs/upload", status_code=202)
def upload_job(file: UploadFile = File(...), limit: int | None = Form(default=None, ge=1),
               _: str = Depends(RequireScope("jobs")), state: ApiState = Depends(api_state)) -> dict:
    """Start a bulk labeling job over an uploaded file (kept inside the job's folder)."""
    conn = state.answering_redis()  # before anything is written
    job_id, target = state.jobs.receive(file.filename, file.file)
    return state.jobs.start(state.settings, target, limit, defaults.CHUNK_SIZE, conn, job_id=job_id)


@router.get("/v1/jobs/{job_id}")
def job_status(job_id: str, _: str = Depends(RequireScope("jobs")), state: ApiState = Depends(api_state)) -> dict:
    """State, counts by status, progress and errors of a job."""
    return state.jobs.state(job_id, state.redis)


@router.get("/v1/jobs/{job_id}/results", response_class=FileResponse,
            responses={409: {"description": "not finished"}, 410: {"description": "canceled"}})
def job_results(job_id: str, format: Literal["parquet", "jsonl"] = "parquet", _: str = Depends(RequireScope("jobs")),
                state: ApiState = Depends(api_state)):
    """The labeled table of a finished job, as Parquet or JSONL."""
    status = state.jobs.state(job_id, state.redis)
    if status["state"] == "canceled":
        raise Problem(410, "Job canceled", f"job {job_id} was canceled; its results are incomplete")
    if status["state"] != "finished":
        raise Problem(409, "Job not finished", f"job {job_id} is {status['state']}: {status['progress']}")
    out = state.jobs.results(job_id, format)
    return FileResponse(out, media_type=MEDIA[format], filename=f"{job_id}.{format}")


@router.delete("/v1/jobs/{job_id}")
def cancel_job(job_id: str, _: str = Depends(RequireScope("jobs")), state: ApiState = Depends(api_state)) -> dict:
    """Cancel a job: its queued chunks are removed from the queue; finished parts stay on disk."""
    return {"id": job_id, "state": "canceled", "chunks_canceled": state.jobs.cancel(job_id, state.redis)}
