"""``GET /healthz`` (the process is up) and ``GET /readyz`` (Redis and the judge answer); no API key needed."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from slicelab.service import __version__
from slicelab.service.api.state import ApiState, api_state
from slicelab.service.errors import SlicelabError
from slicelab.service.labeler_factory import make_judge

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok", "version": __version__}


@router.get("/readyz", responses={503: {"description": "Redis or the judge is unreachable"}})
def readyz(state: ApiState = Depends(api_state)):
    """Redis answers and the judge is reachable."""
    checks = {"redis": redis_check(state), "judge": judge_check(state.settings.judge)}
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


def redis_check(state: ApiState) -> str:
    """``"ok"`` when Redis answers a ping, else why not."""
    try:
        return "ok" if state.redis().ping() else "no answer"
    except Exception as e:  # noqa: BLE001
        return f"unreachable: {type(e).__name__}"


def judge_check(spec: dict[str, Any]) -> str:
    """``"ok"`` when the judge is reachable (an openai server answers ``GET /models`` below HTTP 500;
    another judge can be built), else why not."""
    if spec.get("backend") == "openai":
        try:
            r = httpx.get(spec["base_url"].rstrip("/") + "/models", timeout=3)
            return "ok" if r.status_code < 500 else f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            return f"unreachable: {type(e).__name__}"
    try:
        make_judge(spec)
        return "ok"
    except SlicelabError as e:
        return f"unavailable: {e}"
