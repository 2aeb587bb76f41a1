"""Load the taxonomy YAML under ``prompts/`` and generate label models from it.

The YAML is the single source of the label vocabulary: the pydantic label
models, their JSON schema (sent to the judge as the response format) and the
prompt's label definitions are all generated from it. Every label row records
the taxonomy ``name``, ``version`` and ``content_hash``.
"""

from __future__ import annotations

import hashlib
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from slicelab.prompts import PROMPTS_DIR
from slicelab.service.errors import TaxonomyError, UnknownLabelError

#: The two kinds of item the taxonomy labels.
Kind = Literal["eval", "document"]
DEFAULT_TAXONOMY = PROMPTS_DIR / "taxonomy-v1.yaml"


class LabelDef(BaseModel):
    """One label id with its meaning (and, optionally, how to decide it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    meaning: str
    decide_by: str | None = None


class AxisDef(BaseModel):
    """One label axis: ``single`` (exactly one id) or ``operations`` (ordered set of ids)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    kind: Literal["single", "operations"]
    description: str
    labels: tuple[LabelDef, ...]
    ordered: bool = False
    only_when: Literal["scored_wrong"] | None = None
    min_items: int = 1
    max_items: int = 1

    @property
    def ids(self) -> list[str]:
        """Label ids in taxonomy order (for ordered axes: lowest first)."""
        return [label.id for label in self.labels]


class TaxonomySection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str
    axes: tuple[AxisDef, ...]


class TaxonomyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    version: str
    operations: tuple[LabelDef, ...]
    eval: TaxonomySection
    document: TaxonomySection


class Taxonomy:
    """A loaded taxonomy: its vocabulary, provenance and generated label models.

    Args:
        path: a taxonomy YAML file.

    Raises:
        TaxonomyError: the file is missing, is not YAML, or does not match the schema
            (the message names the path and the failing field).
    """

    def __init__(self, path: Path = DEFAULT_TAXONOMY):
        self.path = Path(path)
        try:
            raw = self.path.read_bytes()
            data = yaml.safe_load(raw)
            self.spec = TaxonomyFile.model_validate(data)
        except OSError as e:
            raise TaxonomyError(f"{self.path}: cannot read taxonomy: {e}") from e
        except yaml.YAMLError as e:
            raise TaxonomyError(f"{self.path}: not valid YAML: {e}") from e
        except ValidationError as e:
            raise TaxonomyError(f"{self.path}: invalid taxonomy: {e}") from e
        #: sha256 of the file bytes, first 16 hex digits.
        self.content_hash = hashlib.sha256(raw).hexdigest()[:16]
        self._check_unique()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return self.spec.version

    def provenance(self) -> dict[str, str]:
        """The taxonomy fields every label row carries."""
        return {
            "taxonomy_name": self.name,
            "taxonomy_version": self.version,
            "taxonomy_hash": self.content_hash,
        }

    def axes(self, kind: Kind) -> tuple[AxisDef, ...]:
        """The axes of one kind (``"eval"`` or ``"document"``), in taxonomy order."""
        return self.spec.eval.axes if kind == "eval" else self.spec.document.axes

    def axis(self, kind: Kind, name: str) -> AxisDef:
        """One axis by name. Raises TaxonomyError naming the allowed axes."""
        for a in self.axes(kind):
            if a.name == name:
                return a
        allowed = ", ".join(a.name for a in self.axes(kind))
        raise TaxonomyError(f"{kind} taxonomy has no axis {name!r}; axes: {allowed}")

    def check_label(self, kind: Kind, axis: str, value: str) -> str:
        """Return ``value`` if it is a label id of ``axis``, else raise UnknownLabelError."""
        ids = self.axis(kind, axis).ids
        if value not in ids:
            raise UnknownLabelError(axis, value, ids)
        return value

    def label_model(self, kind: Kind, *, with_failure_mode: bool = False) -> type[BaseModel]:
        """The pydantic model of one label, generated from the YAML (cached).

        Single axes become ``Literal[...]`` of their ids (enums in the JSON
        schema); operation axes become a list of such ids with the axis's item
        bounds, de-duplicated in order before validation (primary first).
        ``failure_mode`` is included only when ``with_failure_mode`` is true.
        """
        return self._label_models[(kind, with_failure_mode)]

    def json_schema(self, kind: Kind, *, with_failure_mode: bool = False) -> dict[str, Any]:
        """JSON schema of :meth:`label_model` (what is sent as the response format)."""
        return self.label_model(kind, with_failure_mode=with_failure_mode).model_json_schema()

    @cached_property
    def _label_models(self) -> dict[tuple[str, bool], type[BaseModel]]:
        models = {}
        for kind in ("eval", "document"):
            for with_fm in (False, True):
                models[(kind, with_fm)] = self._build_model(kind, with_fm)
        return models

    def _build_model(self, kind: Kind, with_failure_mode: bool) -> type[BaseModel]:
        fields: dict[str, Any] = {}
        validators = {}
        for axis in self.axes(kind):
            if axis.only_when == "scored_wrong" and not with_failure_mode:
                continue
            ids = Literal[tuple(axis.ids)]  # type: ignore[valid-type]
            if axis.kind == "single":
                fields[axis.name] = (ids, Field(description=axis.description))
            else:
                fields[axis.name] = (
                    list[ids],
                    Field(description=axis.description, min_length=axis.min_items, max_length=axis.max_items),
                )
                validators[f"dedupe_{axis.name}"] = field_validator(axis.name, mode="before")(_dedupe)
        suffix = "WithFailureMode" if with_failure_mode else ""
        name = f"{'Eval' if kind == 'eval' else 'Document'}Labels{suffix}"
        return create_model(
            name,
            __config__=ConfigDict(extra="forbid"),
            __validators__=validators,
            **fields,
        )

    def _check_unique(self) -> None:
        for kind in ("eval", "document"):
            for axis in self.axes(kind):
                ids = axis.ids
                dupes = sorted({i for i in ids if ids.count(i) > 1})
                if dupes:
                    raise TaxonomyError(f"{self.path}: axis {axis.name!r} repeats label ids {dupes}")


def _dedupe(value: Any) -> Any:
    """Drop repeated list items, keeping the first occurrence (so the primary stays first)."""
    if isinstance(value, list):
        seen: list[Any] = []
        for item in value:
            if item not in seen:
                seen.append(item)
        return seen
    return value


@lru_cache(maxsize=8)
def load_taxonomy(path: str | Path = DEFAULT_TAXONOMY) -> Taxonomy:
    """Load (and cache) a taxonomy file. See :class:`Taxonomy` for errors raised."""
    return Taxonomy(Path(path))
