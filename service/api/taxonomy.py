"""``GET /v1/taxonomy``: the label vocabulary (needs the ``tag`` scope)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from slicelab.service.api.auth import RequireScope
from slicelab.service.api.state import ApiState, api_state

router = APIRouter(tags=["taxonomy"])


@router.get("/v1/taxonomy")
def get_taxonomy(_: str = Depends(RequireScope("tag")), state: ApiState = Depends(api_state)) -> dict:
    """The label vocabulary with its version, hash and JSON schemas."""
    taxonomy = state.taxonomy
    return {**taxonomy.provenance(),
            "schemas": {"eval": taxonomy.json_schema("eval", with_failure_mode=True),
                        "document": taxonomy.json_schema("document")},
            "axes": {k: [{"name": a.name, "kind": a.kind, "labels": a.ids} for a in taxonomy.axes(k)]
                     for k in ("eval", "document")}}
