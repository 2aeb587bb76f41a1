"""Reading a diagnosis JSON (``slicelab diagnose -o``) for ``slicelab sample``, checked before any work.

Only what sampling uses must be well-formed: ``verdict`` (one of :data:`VERDICTS`)
and, for ``data_intervention``, ``interventions``: a list of objects with
``rule_id``, ``filter`` (document label filter), ``action`` (``upsample`` with
``weight`` or ``targeted_sampling`` with ``token_budget``), ``operations`` and
``weak_slices``. Other keys, at the top and in each intervention, are kept as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from slicelab.service.errors import ConfigError
from slicelab.service.mapping import DocFilter, TargetedSampling, Upsample

#: Verdicts a diagnosis may carry.
VERDICTS = ("data_intervention", "non_data", "insufficient_evidence", "broad_regression", "unexplained_regression")


class Intervention(BaseModel):
    """One data intervention of a diagnosis (extra keys allowed)."""

    model_config = ConfigDict(extra="allow")
    rule_id: str = Field(min_length=1)
    filter: DocFilter
    action: Annotated[Upsample | TargetedSampling, Field(discriminator="type")]
    operations: list[str]
    weak_slices: list[str] = Field(default_factory=list)


class Diagnosis(BaseModel):
    """The parts of a diagnosis that sampling reads (extra keys allowed)."""

    model_config = ConfigDict(extra="allow")
    verdict: Literal[VERDICTS]  # type: ignore[valid-type]
    interventions: list[Intervention] | None = None

    @model_validator(mode="after")
    def _interventions_for_data(self) -> "Diagnosis":
        if self.verdict == "data_intervention" and self.interventions is None:
            raise ValueError("verdict 'data_intervention' needs 'interventions': a list of objects with rule_id, "
                             "filter, action, operations, weak_slices")
        return self


def load_diagnosis(path: str | Path) -> dict[str, Any]:
    """Read and validate a diagnosis JSON.

    Returns:
        The diagnosis as a plain dict (interventions normalised: filter fields that were
        not given are None, actions carry their ``type``); unknown keys kept.

    Raises:
        ConfigError: unreadable JSON, not an object, or a malformed ``verdict`` /
            ``interventions``; the message names the file, the field path
            (``interventions.0.action``), what was found and what is expected.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"--diagnosis {path}: not a readable JSON file: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--diagnosis {path}: a JSON {type(data).__name__}, expected the object written by "
                          "`slicelab diagnose`")
    try:
        diag = Diagnosis.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"--diagnosis {path}: {_errors(e)}") from None
    return diag.model_dump()


def _errors(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-")) or "(top)"
        got = err.get("input")
        shown = f" (got {type(got).__name__} {_short(got)})" if err["type"] != "missing" else ""
        parts.append(f"{where}: {err['msg']}{shown}")
    return "; ".join(parts)


def _short(v: Any) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
