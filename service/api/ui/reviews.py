"""``/ui/reviews``: the review list, a review's overview and its item pages (decisions saved as made)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from slicelab.calibration import review_store
from slicelab.calibration.records import calibrations_dir, load_record, read_record
from slicelab.service.api.state import ApiState, api_state
from slicelab.service.api.ui.render import UiRoute, page, see_other
from slicelab.service.api.ui.review_view import axis_rows, columns, form_labels, whole_number
from slicelab.service.api.ui.session import Session, page_session, post_session
from slicelab.service.errors import ConfigError, RecordError

router = APIRouter(route_class=UiRoute, include_in_schema=False)


async def form_data(request: Request) -> FormData:
    """Route dependency: the request's form (parsed once, shared with :func:`post_session`)."""
    return await request.form()


def get_review(review_id: str) -> Any:
    """The ReviewSet ``review_id``.

    Raises:
        HTTPException: 404 for an unknown or malformed id (the domain's message).
    """
    try:
        return review_store.load_review(review_id)
    except RecordError as e:
        raise HTTPException(404, str(e)) from e


def get_item(review: Any, number: str) -> tuple[int, Any]:
    """``(n, item n)`` of a page path's item number (1-based, review order).

    Raises:
        HTTPException: 422 for a number that is not ASCII digits (:func:`review_view.whole_number`),
            404 outside 1..len(items).
    """
    n = whole_number(number, "item number", low=0, high=999_999_999)
    if n is None or not 1 <= n <= len(review.items):
        raise HTTPException(404, f"review {review.id} has items 1 to {len(review.items)}, not {number}")
    return n, review.items[n - 1]


def calibration_records() -> list[dict[str, Any]]:
    """The calibration records on disk, newest first: ``{id, created_at, kind, gold, n_heldout, judge}``
    (records that do not load are left out)."""
    out = []
    for path in calibrations_dir().glob("*/record.json"):
        try:
            rec = read_record(path)
        except ConfigError:
            continue
        gold = rec["gold"]["path"]
        out.append({"id": rec["id"], "created_at": rec["created_at"], "kind": rec["kind"],
                    "gold": ", ".join(p.rsplit("/", 1)[-1] for p in (gold if isinstance(gold, list) else [gold])),
                    "n_heldout": rec["split"]["n_heldout"], "judge": (rec.get("judge") or {}).get("model") or "none"})
    return sorted(out, key=lambda r: r["created_at"], reverse=True)


@router.get("/ui/reviews")
def reviews(session: Session = Depends(page_session)) -> Response:
    """The reviews with their progress, and the form that starts a review of a calibration record."""
    return page("reviews", session=session, reviews=review_store.list_reviews(), records=calibration_records())


@router.post("/ui/reviews")
def create_review(record_id: str = Form(...), labeler: str = Form(""),
                  session: Session = Depends(post_session)) -> Response:
    """Start a review of a calibration record's held-out items and open it."""
    from slicelab.calibration import review_sets  # the calibration stack (scipy, scikit-learn): only when used

    if not record_id.replace("-", "").isalnum():
        raise HTTPException(404, f"no calibration record {record_id!r}")
    review = review_sets.create_calibration_review(load_record(record_id), labeler=labeler or None)
    return see_other(f"/ui/reviews/{review.id}")


@router.get("/ui/reviews/{review_id}")
def review_overview(review_id: str, session: Session = Depends(page_session)) -> Response:
    """A review's items in review order, each with whether it was reviewed; export and re-calibrate forms."""
    review = get_review(review_id)
    decided = review_store.decisions(review_id)
    rows = []
    for n, item in enumerate(review.items, start=1):
        dec = decided.get(item.id, {})
        changed = any(d["label"] != item.prefill.get(a) for a, d in dec.items())
        rows.append({"n": n, "item": item, "reviewed": bool(dec), "changed": changed})
    first_open = next((r["n"] for r in rows if not r["reviewed"]), 1)
    return page("review", session=session, review=review, rows=rows, progress=review_store.progress(review_id),
                first_open=first_open)


@router.get("/ui/reviews/{review_id}/items/{n}")
def review_item(review_id: str, n: str, request: Request, session: Session = Depends(page_session),
                state: ApiState = Depends(api_state)) -> Response:
    """Item ``n`` of a review: its text and labels, and one decision field per axis."""
    review = get_review(review_id)
    n, item = get_item(review, n)
    decided = review_store.decisions(review_id).get(item.id, {})
    return page("item", session=session, review=review, item=item, n=n, progress=review_store.progress(review_id),
                axes=axis_rows(state.taxonomy, review, item, decided), columns=[c["name"] for c in columns(item)],
                saved=request.query_params.get("saved"))


@router.post("/ui/reviews/{review_id}/items/{n}")
def save_item(review_id: str, n: str, session: Session = Depends(post_session),
              form: FormData = Depends(form_data), state: ApiState = Depends(api_state)) -> Response:
    """Save the decisions of item ``n`` as the session's reviewer.

    With form field ``only`` (the page's script, on each change) only that axis is saved and the
    answer is JSON ``{"saved": axis, "progress": ...}``; without it (Enter or the Save button)
    every axis is saved and the next item opens (the overview after the last).
    """
    review = get_review(review_id)
    n, item = get_item(review, n)
    only = str(form.get("only") or "") or None
    labels = form_labels(state.taxonomy, review, item, form, only=only)
    review_store.save_decision(review_id, item.id, labels, session.reviewer)
    if only:
        return JSONResponse({"saved": only, "progress": review_store.progress(review_id)})
    if n < len(review.items):
        return see_other(f"/ui/reviews/{review_id}/items/{n + 1}?saved={n}")
    return see_other(f"/ui/reviews/{review_id}")
