"""Few-shot exemplars: the k gold-labeled items most similar to the one being labeled.

Similarity is cosine over TF-IDF vectors of word 1-2-grams (scikit-learn).
The item being labeled is never its own exemplar (excluded by id). The same
index gives the nearest-exemplar baseline labeler: the gold labels of the most
similar exemplar, no LLM.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import linear_kernel

from slicelab.service.prompts import clip_head
from slicelab.service.samples import Document, EvalSample

#: Characters of an exemplar's text shown in the prompt.
EXEMPLAR_CHARS = 400
#: Characters of an item's text used for similarity.
SIMILARITY_CHARS = 3000


_OPTION = re.compile(r"^\(?[A-Z]\)?$")
_INT = re.compile(r"^-?\d+$")
_NUMBER = re.compile(r"^-?[\d.,/]+$|\\frac|\\sqrt|\^|\\pi")
_VERDICTS = {"true", "false", "yes", "no", "valid", "invalid", "plausible", "implausible"}


_SAMPLE_SUFFIX = re.compile(r"#s\d+$")


def sample_id(item_id: str, j: int) -> str:
    """Id of the j-th repeated judge sample of an item (``calibrate --samples k``)."""
    return f"{item_id}#s{j}"


def base_id(item_id: str) -> str:
    """The item id without a repeated-sample suffix (``"x#s2"`` → ``"x"``)."""
    return _SAMPLE_SUFFIX.sub("", item_id)


def answer_shape(reference: str) -> str:
    """A coarse shape of a reference answer: option, verdict, integer, math, sequence, phrase or empty."""
    ref = reference.strip()
    if not ref:
        return "empty"
    if _OPTION.match(ref):
        return "option"
    if ref.lower() in _VERDICTS:
        return "verdict"
    if _INT.match(ref.replace(",", "")):
        return "integer"
    if _NUMBER.search(ref):
        return "math"
    return "sequence" if len(ref.split()) > 3 else "phrase"


def baseline_text(item: EvalSample | Document) -> str:
    """The text of the nearest-exemplar baseline and of prompt exemplars' similarity.

    Evaluation samples: marker tokens for benchmark, task, reference-answer shape
    and listed options, then question and reference. Documents: source and URL
    host markers, then the document's start.
    """
    if isinstance(item, EvalSample):
        options = "xoptions" if re.search(r"(?m)^\(?[A-Z]\)\s", item.question) or "Options:" in item.question else ""
        marks = f"xbench{_tok(item.benchmark)} xtask{_tok(item.task)} xref{answer_shape(item.reference_answer)} {options}"
        return f"{marks}\n{item.question}\n{item.reference_answer}"[:SIMILARITY_CHARS]
    return f"xsrc{_tok(item.source)}\n{item.text}"[:SIMILARITY_CHARS]


def item_text(item: EvalSample | Document) -> str:
    """The text the k-NN and student labelers work on: :func:`baseline_text` plus cross-benchmark markers.

    Evaluation samples also carry the answer-shape markers of
    :func:`service.answer_shape.shape_markers` (task type, output constraint, rule)
    and the operation cues and category markers of :func:`service.op_cues.cue_markers`;
    documents carry the operation cues of their start. These markers are what an
    item of a benchmark the pool never saw shares with the pool.
    """
    from slicelab.service.answer_shape import shape_markers
    from slicelab.service.op_cues import background_markers, category_of, cue_markers

    base = baseline_text(item)
    if isinstance(item, EvalSample):
        marks = shape_markers(item.question, item.reference_answer)
        cues = cue_markers(item.question, category_of(item.id, item.extra))
        return f"{marks} {cues} {background_markers(item.question)}\n{base}"
    return f"{cue_markers(item.text[:SIMILARITY_CHARS])}\n{base}"


def _tok(value: str) -> str:
    return re.sub(r"[^a-z0-9]", "", (value or "").lower())


@dataclass
class Exemplar:
    id: str
    similarity: float
    item: EvalSample | Document
    labels: dict[str, Any]


class ExemplarIndex:
    """TF-IDF index over a pool of gold-labeled items.

    Args:
        items: the pool (exemplar split of a gold set), each with an ``id``.
        labels: item id → gold label dict.

    Raises:
        ValueError: an empty pool, or an item without gold labels.
    """

    def __init__(self, items: list[EvalSample | Document], labels: dict[str, dict[str, Any]]):
        if not items:
            raise ValueError("exemplar pool is empty")
        missing = [i.id for i in items if i.id not in labels]
        if missing:
            raise ValueError(f"exemplar pool items without gold labels: {missing[:5]}")
        self.items = list(items)
        self.labels = labels
        self.ids = [i.id for i in self.items]
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        self.matrix = self.vectorizer.fit_transform([baseline_text(i) for i in self.items])

    def nearest(self, item: EvalSample | Document, k: int) -> list[Exemplar]:
        """The ``k`` most similar pool items, most similar first, never ``item`` itself
        (by id, ignoring a repeated-sample suffix)."""
        sims = linear_kernel(self.vectorizer.transform([baseline_text(item)]), self.matrix).ravel()
        order = np.argsort(-sims, kind="stable")
        out = []
        own = base_id(item.id)
        for j in order:
            if self.ids[j] == own:
                continue
            out.append(Exemplar(self.ids[j], float(sims[j]), self.items[j], self.labels[self.ids[j]]))
            if len(out) == k:
                break
        return out

    def nearest_labels(self, item: EvalSample | Document) -> dict[str, Any]:
        """Nearest-exemplar baseline: the gold labels of the most similar other pool item."""
        return dict(self.nearest(item, 1)[0].labels)


def prompt_exemplars(exemplars: list[Exemplar], fields: list[str]) -> list[dict[str, str]]:
    """Exemplars as the prompt template expects them: ``{"item_text", "labels_json"}``.

    Args:
        fields: the label fields to show (those of the schema the judge must fill).
    """
    out = []
    for ex in exemplars:
        if isinstance(ex.item, EvalSample):
            text = clip_head(ex.item.question, EXEMPLAR_CHARS) + f"\nReference answer: {ex.item.reference_answer[:100]}"
        else:
            text = clip_head(ex.item.text, EXEMPLAR_CHARS)
        labels = {f: ex.labels.get(f) for f in fields if ex.labels.get(f) is not None or f != "failure_mode"}
        out.append({"item_text": text, "labels_json": json.dumps(labels)})
    return out
