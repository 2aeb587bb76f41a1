"""``POST /v1/tag``: label one item with the configured judge (needs the ``tag`` scope).

The response model names the taxonomy's label models, so the router is made per taxonomy
(:func:`tag_router`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from slicelab.calibration.records import latest_for_config
from slicelab.service.api.auth import RequireScope
from slicelab.service.api.limits import label_within
from slicelab.service.api.problems import Problem, field_errors
from slicelab.service.api.settings import Settings
from slicelab.service.api.state import ApiState, api_state
from slicelab.service.judge import JudgeResult
from slicelab.service.samples import Document, EvalSample
from slicelab.service.taxonomy import Taxonomy


class TagRequest(BaseModel):
    """One evaluation sample (``kind: eval``) or one pretraining document (``kind: document``)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["eval", "document"] = "eval"
    item: dict[str, Any] = Field(description="EvalSample fields (id, question, reference_answer, model_output, "
                                             "correct...) or Document fields (id, text, source, url)")


def tag_router(taxonomy: Taxonomy) -> APIRouter:
    """The router of ``POST /v1/tag``, its response's ``labels`` typed by ``taxonomy``'s label models."""
    labels = (taxonomy.label_model("eval", with_failure_mode=True) | taxonomy.label_model("eval")
              | taxonomy.label_model("document") | None)
    response = create_model("TagResponse", id=(str, ...), status=(str, ...), labels=(labels, ...),
                            error=(str | None, ...), gate=(dict[str, str], ...), calibration_id=(str | None, ...),
                            provenance=(dict[str, Any], ...))
    router = APIRouter(tags=["tag"])
    router.add_api_route("/v1/tag", tag, methods=["POST"], response_model=response,
                         responses={413: {"description": "a text field is too long"},
                                    504: {"description": "judge timeout"}})
    return router


async def tag(req: TagRequest, _: str = Depends(RequireScope("tag")), state: ApiState = Depends(api_state)):
    """Label one item with the configured judge; 504 when no answer came within the tag timeout.

    At most the judge's concurrency (``concurrency`` of the openai judge) judge calls run
    at once; a request waiting for its turn counts against its own timeout.
    """
    cfg = state.settings
    deadline = time.monotonic() + cfg.tag_timeout_s
    item = _item(req, cfg)
    judge = await asyncio.to_thread(state.judge)  # built once, off the event loop
    try:
        result = await label_within(state.pool, lambda: judge.label(item), deadline)
    except TimeoutError:
        raise Problem(504, "Judge timeout", f"the judge did not answer within {cfg.tag_timeout_s} s") from None
    _count(state, result)
    record = await asyncio.to_thread(latest_for_config, judge.config_hash(), req.kind)
    verdicts = (record or {}).get("judge_verdicts") or (record or {}).get("verdicts") or {}
    return {"id": item.id, "status": str(result.status), "labels": result.labels, "error": result.error,
            "gate": {a.name: verdicts.get(a.name, "ungated") for a in state.taxonomy.axes(req.kind)},
            "calibration_id": (record or {}).get("id"),
            "provenance": {**state.taxonomy.provenance(), "prompt_ref": result.prompt_ref,
                           "request_hash": result.request_hash, "model": result.model,
                           "backend": result.backend, "attempts": result.attempts}}


def _item(req: TagRequest, cfg: Settings) -> EvalSample | Document:
    """The request's item, validated.

    Raises:
        Problem: 413 for a text field over ``cfg.max_text_chars``; 422 naming each invalid ``item.<field>``.
    """
    for name, value in req.item.items():
        if isinstance(value, str) and len(value) > cfg.max_text_chars:
            raise Problem(413, "Text field too large", f"item.{name}: {len(value)} characters; "
                          f"limit is {cfg.max_text_chars}", limit=cfg.max_text_chars, field=f"item.{name}")
    cls = EvalSample if req.kind == "eval" else Document
    try:
        return cls.model_validate({"id": "request", **req.item})
    except ValidationError as e:
        raise field_errors(list(e.errors()), prefix="item.") from None


def _count(state: ApiState, result: JudgeResult) -> None:
    """Add one judge answer to the metrics (status, latency, tokens)."""
    state.metrics.labels.labels(str(result.status)).inc()
    state.metrics.latency.observe(result.latency_s)
    state.metrics.tokens.labels("prompt").inc(result.prompt_tokens)
    state.metrics.tokens.labels("completion").inc(result.completion_tokens)
