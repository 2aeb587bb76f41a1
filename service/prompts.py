"""Judge prompt templates: versioned YAML + Jinja under ``prompts/templates/``.

A template renders to chat messages: a static system message (instructions and
label definitions, byte-identical for every item so prefix caches reuse it),
then a user message that ends with the item. :func:`request_hash` fingerprints
exactly what is sent (messages + response format); every label row records it.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from slicelab.prompts import PROMPTS_DIR
from slicelab.service import defaults
from slicelab.service.errors import TaxonomyError
from slicelab.service.samples import Document, EvalSample
from slicelab.service.taxonomy import Kind, Taxonomy

TEMPLATES_DIR = PROMPTS_DIR / "templates"
DEFAULT_TEMPLATE = {"eval": "eval-label", "document": "document-label"}

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


class PromptTemplate(BaseModel):
    """One prompt template file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    version: str
    kind: Kind
    description: str
    system: str
    user: str

    @property
    def ref(self) -> str:
        """``id@version``, as recorded on label rows."""
        return f"{self.id}@{self.version}"

    @property
    def content_hash(self) -> str:
        """sha256 prefix of the template text (system + user), part of the judge configuration."""
        return hashlib.sha256((self.system + "\0" + self.user).encode("utf-8")).hexdigest()[:16]


def template_paths() -> list[Path]:
    """Every template file under ``prompts/templates/``, sorted."""
    return sorted(TEMPLATES_DIR.glob("*.yaml"))


@lru_cache(maxsize=32)
def load_template(name_or_path: str) -> PromptTemplate:
    """Load a template by id (newest version wins) or by file path.

    Raises:
        TaxonomyError: no such template (names the ids available), or the file is invalid.
    """
    path = Path(name_or_path)
    if not path.suffix:
        found = [p for p in template_paths() if _read(p).id == name_or_path]
        if not found:
            ids = sorted({_read(p).id for p in template_paths()})
            raise TaxonomyError(f"no prompt template {name_or_path!r}; available: {', '.join(ids)}")
        return max((_read(p) for p in found), key=lambda t: _version_key(t.version))
    return _read(path)


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in version.split("."))


def _read(path: Path) -> PromptTemplate:
    try:
        return PromptTemplate.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as e:
        raise TaxonomyError(f"{path}: invalid prompt template: {e}") from e


def clip_head(text: str, limit: int) -> str:
    """Keep the first ``limit`` characters, marking a cut."""
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit} characters cut]"


def clip_tail(text: str, limit: int) -> str:
    """Keep the last ``limit`` characters (where a final answer sits), marking a cut."""
    return text if len(text) <= limit else f"[{len(text) - limit} characters cut ...]\n" + text[-limit:]


def input_cut(item: EvalSample | Document) -> tuple[bool, int]:
    """Whether the judge sees the item's question (document text) cut, and how many of its characters it sees.

    The prompt keeps the first :data:`service.defaults.MAX_FIELD_CHARS` characters
    of a question or document text (:func:`render_messages`).

    Returns:
        ``(input_truncated, input_chars_kept)``; chars kept is the whole length when not cut.
    """
    text = item.question if isinstance(item, EvalSample) else item.text
    return len(text) > defaults.MAX_FIELD_CHARS, min(len(text), defaults.MAX_FIELD_CHARS)


def render_messages(
    template: PromptTemplate,
    taxonomy: Taxonomy,
    item: EvalSample | Document,
    *,
    with_failure_mode: bool = False,
    exemplars: list[dict[str, str]] | None = None,
) -> list[dict[str, str]]:
    """Render the chat messages for one item.

    Args:
        template: the prompt template (its ``kind`` must match the item).
        taxonomy: supplies the axes and label definitions.
        item: the sample or document to label.
        with_failure_mode: include the model output and ask for ``failure_mode``.
        exemplars: optional ``{"item_text", "labels_json"}`` dicts shown before the item.

    Returns:
        ``[{"role": "system", ...}, {"role": "user", ...}]``.

    Raises:
        TaxonomyError: the template uses a variable that is not provided (named).
    """
    # Every axis is defined in the system message, failure_mode included, so the
    # static prefix is the same for every item; only the user turn asks for it.
    axes = list(taxonomy.axes(template.kind))
    ctx: dict[str, Any] = {"axes": axes, "exemplars": exemplars or [], "with_failure_mode": with_failure_mode}
    if isinstance(item, EvalSample):
        ctx |= {
            "sample": item,
            "question": clip_head(item.question, defaults.MAX_FIELD_CHARS),
            "reference_answer": clip_head(item.reference_answer, 500) or "(none given)",
            "model_output": clip_tail(item.model_output or "", defaults.MAX_OUTPUT_TAIL_CHARS),
        }
    else:
        ctx |= {"document": item, "text": clip_head(item.text, defaults.MAX_FIELD_CHARS)}
    try:
        system = _compiled(template.system).render(**ctx)
        user = _compiled(template.user).render(**ctx)
    except jinja2.UndefinedError as e:
        raise TaxonomyError(f"template {template.ref}: {e.message}") from e
    return [{"role": "system", "content": system.strip() + "\n"}, {"role": "user", "content": user.strip()}]


@lru_cache(maxsize=64)
def _compiled(source: str) -> jinja2.Template:
    """A template source compiled once per process (compiling costs milliseconds, rendering microseconds)."""
    return _ENV.from_string(source)


def request_hash(messages: list[dict[str, str]], response_format: dict[str, Any]) -> str:
    """sha256 (first 16 hex digits) of the canonical JSON of messages + response format."""
    blob = json.dumps({"messages": messages, "response_format": response_format}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def schema_hash(schema: dict[str, Any]) -> str:
    """sha256 (first 16 hex digits) of a JSON schema's canonical JSON."""
    return hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()[:16]
