"""Review-page actions: export a new gold version, re-calibrate on it (an RQ task, followed on a page that
refreshes itself until it ends), and seed a review from an eval file under the data root."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response
from rq import Queue, Worker
from starlette.exceptions import HTTPException

from slicelab.calibration import review_store
from slicelab.calibration.records import load_record
from slicelab.service.api.calibrations import calibration_job, enqueue_calibration
from slicelab.service.api.paths import safe_path
from slicelab.service.api.state import ApiState, api_state
from slicelab.service.api.ui.render import UiRoute, page, see_other
from slicelab.service.api.ui.review_view import whole_number
from slicelab.service.api.ui.reviews import get_review
from slicelab.service.api.ui.session import Session, page_session, post_session

router = APIRouter(route_class=UiRoute, include_in_schema=False)
#: Seconds between reloads of a running task's page.
REFRESH_S = 2
#: RQ states in which a task has not ended yet.
RUNNING = ("queued", "started", "deferred", "scheduled")


@router.post("/ui/reviews/{review_id}/export")
def export(review_id: str, session: Session = Depends(post_session)) -> Response:
    """Write a new gold version with the session reviewer's decisions and show where it is."""
    from slicelab.calibration import review_sets  # the calibration stack (scipy, scikit-learn): only when used

    review = get_review(review_id)
    path = review_sets.export_gold(review_id, session.reviewer)
    return page("exported", session=session, review=review, path=str(path),
                progress=review_store.progress(review_id, session.reviewer))


@router.post("/ui/reviews/{review_id}/recalibrate")
def recalibrate(review_id: str, limit: str = Form(""), lobo: str = Form(""), session: Session = Depends(post_session),
                state: ApiState = Depends(api_state)) -> Response:
    """Export a new gold version, then calibrate the configured judge on it (the task of POST /v1/calibrations)."""
    from slicelab.calibration import review_sets  # the calibration stack (scipy, scikit-learn): only when used

    get_review(review_id)
    n = whole_number(limit, "limit")
    state.answering_redis()  # nothing is exported when the task cannot be enqueued
    path = review_sets.export_gold(review_id, session.reviewer)
    job = enqueue_calibration(state, path, limit=n, lobo=bool(lobo))
    return see_other(f"/ui/tasks/{job.id}")


def gate_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Per axis of a calibration record: the selected labeler, the gate metric, its value, bound and n, the verdict."""
    from slicelab.calibration.report_content import number, selected_labeler  # the calibration stack: only when used

    rows = []
    for axis, m in record.get("axes", {}).items():
        v = m.get("verdict") or {}
        rows.append({"axis": axis, "labeler": selected_labeler(record, axis, m), "metric": v.get("metric") or "—",
                     "value": number(v.get("value"), 3), "bound": number(v.get("bound")), "n": v.get("n", "—"),
                     "verdict": v.get("verdict") or record.get("verdicts", {}).get(axis, "?"),
                     "reason": v.get("reason", "")})
    return rows


@router.get("/ui/tasks/{task_id}")
def task(task_id: str, session: Session = Depends(page_session), state: ApiState = Depends(api_state)) -> Response:
    """A calibration task: reloads itself while it runs; then the new record's gate table, or the error."""
    job = calibration_job(state, task_id)
    if job is None:
        raise HTTPException(404, f"no calibration task {task_id!r} (unknown, or expired from Redis)")
    status = job.get_status().value
    context: dict[str, Any] = {"task_id": task_id, "task_state": status, "gold": str(job.args[0]), "record": None,
                               "rows": [], "error": None, "note": None, "refresh": None}
    if status in RUNNING:
        context["refresh"] = REFRESH_S
        if not Worker.count(queue=Queue(state.settings.queue, connection=state.redis())):
            context["note"] = f"no worker is listening on queue {state.settings.queue!r} (`slicelab worker`)"
    elif status == "finished":
        record = load_record(job.return_value())
        context.update(record=record, rows=gate_rows(record))
    else:
        result = job.latest_result()
        text = (result.exc_string if result is not None else "") or ""
        context["error"] = text.strip().splitlines()[-1] if text.strip() else f"the task ended as {status}"
    return page("task", session=session, **context)


@router.get("/ui/seed")
def seed_form(session: Session = Depends(page_session), state: ApiState = Depends(api_state)) -> Response:
    """The form that seeds gold items for a benchmark from an eval samples file under the data root."""
    return page("seed", session=session, data_root=str(state.settings.data_root))


@router.post("/ui/seed")
def seed(path: str = Form(...), n: str = Form("40"), benchmark: str = Form(""), kind: str = Form("eval"),
         session: Session = Depends(post_session), state: ApiState = Depends(api_state)) -> Response:
    """Pick ``n`` items of the file to label (coverage first, then labeler disagreement) and open the review."""
    from slicelab.calibration import review_sets  # the calibration stack (scipy, scikit-learn): only when used

    if kind not in ("eval", "document"):
        raise HTTPException(422, f"kind: expected eval or document, got {kind!r}")
    count = whole_number(n, "n", high=1000) or 40
    target = safe_path(state.settings.data_root, path.strip())
    review = review_sets.create_seed_review(target, n=count, benchmark=benchmark.strip() or None, kind=kind)
    return see_other(f"/ui/reviews/{review.id}")
