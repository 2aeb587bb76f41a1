"""Labelers without an LLM, and labelers that combine others — all behind ``label(item) -> JudgeResult``.

- :class:`KNNLabeler` — nearest-exemplar vote over a gold-labeled pool (TF-IDF
  cosine); per axis, ``k`` and the weighting (uniform or by similarity) are
  chosen by leave-one-out accuracy on the pool.
- :class:`StudentLabeler` — a classifier per axis trained on the pool
  (TF-IDF word 1-2-grams + character 2-5-grams + operation-cue scores, logistic
  regression; one-vs-rest for the non-primary operations).
- :class:`CascadeLabeler` — per axis, a cheap labeler's answer when its
  confidence clears a threshold, the LLM judge's otherwise (one judge call per
  item at most).
- :class:`PerAxisLabeler` — per axis, the labeler calibration selected.
- :class:`SelfConsistentJudge` — an LLM judge sampled ``k`` times at a temperature
  above zero; per axis the majority label, with its vote share as confidence.

Every result records, per axis, which labeler produced the label and its
confidence (``extra["labeler_by_axis"]``, ``extra["confidence_by_axis"]``).
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from typing import Any

import numpy as np
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics.pairwise import linear_kernel

from slicelab.service.exemplars import base_id, item_text
from slicelab.service.judge.base import JudgeResult, apply_failure_rules
from slicelab.service.samples import Document, EvalSample, Status
from slicelab.service.taxonomy import AxisDef, Kind, Taxonomy, load_taxonomy

#: Class standing for "no operation" (an empty operation list) inside classifiers.
NONE_OP = "__none__"
#: k values and weightings tried by the k-NN labeler's leave-one-out selection.
KNN_KS = (1, 3, 5, 7, 9)
KNN_WEIGHTS = ("uniform", "similarity")


def modal(values: list[Any]) -> tuple[Any, float]:
    """The most common non-None value and its share of all values (ties: first seen).

    Lists are compared as tuples. Returns ``(None, 0.0)`` when every value is None.
    """
    keyed = [tuple(v) if isinstance(v, list) else v for v in values]
    counts = Counter(k for k in keyed if k is not None)
    if not counts:
        return None, 0.0
    best = max(counts, key=lambda k: (counts[k], -keyed.index(k)))
    value = list(best) if isinstance(best, tuple) else best
    return value, counts[best] / len(values)


def _kind(item: EvalSample | Document) -> Kind:
    return "eval" if isinstance(item, EvalSample) else "document"


def _axes_for(taxonomy: Taxonomy, item: EvalSample | Document) -> list[AxisDef]:
    wrong = isinstance(item, EvalSample) and item.scored_wrong
    return [a for a in taxonomy.axes(_kind(item)) if wrong or not a.only_when]


def _target(axis: AxisDef, labels: dict[str, Any]) -> str | None:
    """The class a pool item has on an axis (operations: the primary, or NONE_OP)."""
    v = labels.get(axis.name)
    if axis.kind == "operations":
        return None if v is None else (v[0] if v else NONE_OP)
    return v


class Labeler(ABC):
    """A labeler: ``label(item) -> JudgeResult`` with per-axis labeler names and confidences."""

    backend: str = "abstract"
    model: str = ""

    def __init__(self, taxonomy: Taxonomy | None = None):
        self.taxonomy = taxonomy or load_taxonomy()

    @abstractmethod
    def predict(self, item: EvalSample | Document) -> tuple[dict[str, Any], dict[str, float]]:
        """Labels and per-axis confidence (0-1) for one item."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """What identifies this labeler's output."""

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()[:16]

    def label(self, item: EvalSample | Document) -> JudgeResult:
        t0 = time.perf_counter()
        labels, conf = self.predict(item)
        labels, fm_source = apply_failure_rules(item, labels, self.backend)
        return JudgeResult(
            status=Status.labeled, labels=labels, raw_texts=[json.dumps(labels)], finish_reason=None,
            prompt_tokens=0, completion_tokens=0, attempts=1, model=self.model, backend=self.backend,
            error=None, latency_s=time.perf_counter() - t0, request_hash="", prompt_ref="",
            failure_mode_source=fm_source,
            extra={"labeler_by_axis": {a: self.backend for a in labels},
                   "confidence_by_axis": {a: round(c, 4) for a, c in conf.items()}},
        )


class _PoolLabeler(Labeler):
    """Shared set-up: a pool of gold-labeled items of one kind."""

    def __init__(self, items: list[EvalSample | Document], labels: dict[str, dict[str, Any]],
                 taxonomy: Taxonomy | None = None, pool_settings: dict[str, Any] | None = None):
        super().__init__(taxonomy)
        if not items:
            raise ValueError("labeler pool is empty")
        self.items, self.labels = list(items), labels
        self.kind = _kind(self.items[0])
        self.pool_settings = pool_settings or {}
        self.ids = [i.id for i in self.items]

    def config(self) -> dict[str, Any]:
        return {"backend": self.backend, "pool": self.pool_settings, **self.taxonomy.provenance()}


class KNNLabeler(_PoolLabeler):
    """k-NN vote over the pool (TF-IDF word 1-2-gram cosine)."""

    backend = "knn"
    model = "tfidf-knn"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        self.matrix = self.vectorizer.fit_transform([item_text(i) for i in self.items])
        self.choice = self._choose()

    def _choose(self) -> dict[str, tuple[int, str]]:
        """Per axis, the (k, weighting) with the best leave-one-out accuracy on the pool (ties: smaller k)."""
        sims = linear_kernel(self.matrix, self.matrix)
        np.fill_diagonal(sims, -np.inf)
        choice = {}
        for axis in self.taxonomy.axes(self.kind):
            best, best_acc = (1, "uniform"), -1.0
            for k in KNN_KS:
                for w in KNN_WEIGHTS:
                    hits = n = 0
                    for j, item_id in enumerate(self.ids):
                        truth = _target(axis, self.labels[item_id])
                        if truth is None:
                            continue
                        pred = self._vote(axis, sims[j], k, w, exclude=item_id)[0]
                        hits += pred == truth
                        n += 1
                    acc = hits / n if n else 0.0
                    if acc > best_acc + 1e-12:
                        best, best_acc = (k, w), acc
            choice[axis.name] = best
        return choice

    def _vote(self, axis: AxisDef, sims: np.ndarray, k: int, weighting: str, exclude: str | None = None):
        order = np.argsort(-sims, kind="stable")
        votes: dict[str, float] = defaultdict(float)
        secondary: dict[str, float] = defaultdict(float)
        taken = total = 0.0
        for j in order:
            if self.ids[j] == exclude or not np.isfinite(sims[j]):
                continue
            target = _target(axis, self.labels[self.ids[j]])
            if target is None:
                continue
            w = 1.0 if weighting == "uniform" else max(float(sims[j]), 1e-6)
            votes[target] += w
            if axis.kind == "operations":
                for op in self.labels[self.ids[j]][axis.name][1:]:
                    secondary[op] += w
            total += w
            taken += 1
            if taken == k:
                break
        if not votes:
            return None, 0.0, []
        best = max(votes, key=lambda c: (votes[c], -list(votes).index(c)))
        extra = [op for op, w in sorted(secondary.items(), key=lambda x: -x[1]) if w / total >= 0.5 and op != best]
        return best, votes[best] / total, extra

    def predict(self, item):
        sims = linear_kernel(self.vectorizer.transform([item_text(item)]), self.matrix).ravel()
        labels, conf = {}, {}
        for axis in _axes_for(self.taxonomy, item):
            k, w = self.choice[axis.name]
            best, share, extra = self._vote(axis, sims, k, w, exclude=base_id(item.id))
            labels[axis.name], conf[axis.name] = _finish(axis, best, extra), share
        return labels, conf

    def config(self) -> dict[str, Any]:
        return super().config() | {"choice": {a: list(v) for a, v in self.choice.items()}}


def _finish(axis: AxisDef, best: str | None, extra: list[str]) -> Any:
    if axis.kind != "operations":
        return best
    if best is None or best == NONE_OP:
        return [] if axis.min_items == 0 else [axis.ids[0]]
    return [best, *extra][: axis.max_items]


class StudentLabeler(_PoolLabeler):
    """Logistic regression per axis over TF-IDF word and character n-grams of the item text."""

    backend = "student"
    model = "tfidf-logreg"

    #: Per item kind: features and regularization, chosen on the bundled gold pools.
    #: Short evaluation items carry format cues in characters and bigrams; documents
    #: are long and few, so unigrams without stop words and balanced classes do better.
    SETTINGS = {
        "eval": {"word_ngrams": (1, 2), "stop_words": None, "char": True, "C": 10.0, "class_weight": None},
        "document": {"word_ngrams": (1, 1), "stop_words": "english", "char": False, "C": 1.0,
                     "class_weight": "balanced"},
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.settings = self.SETTINGS[self.kind]
        texts = [item_text(i) for i in self.items]
        self.word = TfidfVectorizer(ngram_range=self.settings["word_ngrams"], sublinear_tf=True,
                                    stop_words=self.settings["stop_words"])
        self.char = (TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, max_features=50000)
                     if self.settings["char"] else None)
        blocks = [self.word.fit_transform(texts)] + ([self.char.fit_transform(texts)] if self.char else [])
        X_words = hstack(blocks).tocsr()
        X_ops = hstack([X_words, cue_features(self.items)]).tocsr()  # cue scores help the operation axes only
        C, cw = self.settings["C"], self.settings["class_weight"]
        self.models: dict[str, Any] = {}
        self.secondary: dict[str, dict[str, Any]] = {}
        for axis in self.taxonomy.axes(self.kind):
            rows = [j for j, i in enumerate(self.ids) if _target(axis, self.labels[i]) is not None]
            y = [_target(axis, self.labels[self.ids[j]]) for j in rows]
            X = X_ops if axis.kind == "operations" else X_words
            self.models[axis.name] = _fit(X[rows], y, C, cw)
            if axis.kind == "operations":
                self.secondary[axis.name] = {}
                for op in axis.ids:
                    has = [op in self.labels[self.ids[j]][axis.name][1:] for j in rows]
                    if sum(has) >= 2:
                        self.secondary[axis.name][op] = _fit(X[rows], has, C, cw)

    def _features(self, item):
        t = [item_text(item)]
        words = hstack([self.word.transform(t)] + ([self.char.transform(t)] if self.char else [])).tocsr()
        return words, hstack([words, cue_features([item])]).tocsr()

    def predict(self, item):
        x_words, x_ops = self._features(item)
        labels, conf = {}, {}
        for axis in _axes_for(self.taxonomy, item):
            x = x_ops if axis.kind == "operations" else x_words
            best, p = _predict(self.models[axis.name], x)
            extra = []
            if axis.kind == "operations":
                for op, model in self.secondary[axis.name].items():
                    is_op, q = _predict(model, x)
                    if is_op is True and q >= 0.5 and op != best:
                        extra.append(op)
            labels[axis.name], conf[axis.name] = _finish(axis, best, extra), p
        return labels, conf

    def config(self) -> dict[str, Any]:
        return super().config() | {"settings": {k: list(v) if isinstance(v, tuple) else v
                                                for k, v in self.settings.items()}}


def cue_features(items: list[EvalSample | Document]):
    """Sparse ``(len(items), n_operations)`` block: ``log(1 + score)`` of each operation's cues.

    Scores from :func:`service.op_cues.op_scores` (evaluation items: the question and the
    benchmark category; documents: the first 4,000 characters). Dense numeric cues let the
    classifier weigh them against the words, which TF-IDF marker tokens cannot.
    """
    from scipy.sparse import csr_matrix

    from slicelab.service.op_cues import CUES, category_of, op_scores

    rows = []
    for item in items:
        if isinstance(item, EvalSample):
            scores = op_scores(item.question, category_of(item.id, item.extra))
        else:
            scores = op_scores(item.text[:4000])
        rows.append([scores[op] for op in CUES])
    return csr_matrix(np.log1p(np.asarray(rows, dtype=float)))


def _fit(X, y: list, C: float, class_weight: str | None = None):
    classes = sorted(set(y), key=str)
    if len(classes) == 1:
        return ("constant", classes[0])
    if len(classes) == 2:  # liblinear (it also penalises the intercept): much faster for two classes, sparse features
        return LogisticRegression(C=C, max_iter=3000, class_weight=class_weight, solver="liblinear").fit(X, y)
    return LogisticRegression(C=C, max_iter=3000, class_weight=class_weight).fit(X, y)


def _predict(model, x) -> tuple[Any, float]:
    if isinstance(model, tuple):
        return model[1], 1.0
    p = model.predict_proba(x)[0]
    j = int(np.argmax(p))
    cls = model.classes_[j]
    return (cls.item() if hasattr(cls, "item") else cls), float(p[j])


class CombinedLabeler(Labeler):
    """Per axis, take the label of one of several labelers, recording which."""

    backend = "combined"

    def __init__(self, labelers: dict[str, Any], taxonomy: Taxonomy | None = None):
        super().__init__(taxonomy)
        self.labelers = labelers
        self.model = "+".join(f"{n}:{getattr(lab, 'model', '')}" for n, lab in labelers.items())

    def predict(self, item):  # pragma: no cover - label() is overridden
        raise NotImplementedError

    def _merge(self, item, pick: dict[str, str], results: dict[str, JudgeResult], t0: float) -> JudgeResult:
        labels: dict[str, Any] = {}
        by_axis, conf = {}, {}
        for axis, name in pick.items():
            r = results[name]
            if r.labels is None or axis not in r.labels:
                continue
            labels[axis] = r.labels[axis]
            by_axis[axis] = name
            conf[axis] = r.extra.get("confidence_by_axis", {}).get(axis)
        judged = [r for r in results.values() if r.backend not in ("knn", "student", "shape", "cues")]
        main = judged[0] if judged else next(iter(results.values()))
        complete = set(labels) == set(pick)
        status = Status.labeled if complete else main.status
        labels_out, fm_source = apply_failure_rules(item, labels if complete else None, by_axis.get("failure_mode", ""))
        return JudgeResult(
            status=status, labels=labels_out, raw_texts=[t for r in results.values() for t in r.raw_texts],
            finish_reason=main.finish_reason, prompt_tokens=sum(r.prompt_tokens for r in results.values()),
            completion_tokens=sum(r.completion_tokens for r in results.values()),
            attempts=sum(r.attempts for r in results.values()), model=self.model, backend=self.backend,
            error=None if complete else main.error, latency_s=time.perf_counter() - t0,
            request_hash=main.request_hash, prompt_ref=main.prompt_ref, failure_mode_source=fm_source,
            extra={**main.extra, "labeler_by_axis": by_axis, "confidence_by_axis": conf},
        )

    def config(self) -> dict[str, Any]:
        return {"backend": self.backend, "labelers": {n: lab.config() for n, lab in self.labelers.items()}}


class PerAxisLabeler(CombinedLabeler):
    """Per axis, the labeler calibration selected (``selection``: axis → labeler name)."""

    backend = "per_axis"

    def __init__(self, labelers: dict[str, Any], selection: dict[str, str], taxonomy: Taxonomy | None = None):
        super().__init__(labelers, taxonomy)
        unknown = sorted(set(selection.values()) - set(labelers))
        if unknown:
            raise ValueError(f"selection names labelers {unknown}; available: {sorted(labelers)}")
        self.selection = selection

    def label(self, item):
        t0 = time.perf_counter()
        axes = [a.name for a in _axes_for(self.taxonomy, item)]
        pick = {a: self.selection.get(a, "judge") for a in axes}
        results = {name: self.labelers[name].label(item) for name in sorted(set(pick.values()))}
        return self._merge(item, pick, results, t0)

    def config(self) -> dict[str, Any]:
        return super().config() | {"selection": self.selection}


class CascadeLabeler(CombinedLabeler):
    """A cheap labeler's answer per axis when its confidence is at least ``threshold``, else the judge's."""

    backend = "cascade"

    def __init__(self, cheap: Labeler, judge: Any, threshold: float, taxonomy: Taxonomy | None = None):
        super().__init__({"cheap": cheap, "judge": judge}, taxonomy)
        self.cheap, self.judge, self.threshold = cheap, judge, threshold

    def label(self, item):
        t0 = time.perf_counter()
        cheap = self.cheap.label(item)
        conf = cheap.extra["confidence_by_axis"]
        pick = {a: ("cheap" if conf.get(a, 0.0) >= self.threshold else "judge") for a in cheap.labels}
        results = {"cheap": cheap}
        if "judge" in pick.values():
            results["judge"] = self.judge.label(item)
        result = self._merge(item, pick, results, t0)
        result.extra["labeler_by_axis"] = {a: (self.cheap.backend if n == "cheap" else "judge")
                                           for a, n in result.extra["labeler_by_axis"].items()}
        return result

    def config(self) -> dict[str, Any]:
        return super().config() | {"threshold": self.threshold}


#: Labeler name of the self-consistent judge in calibration tables, selections and rows.
SELF_CONSISTENT = "judge_sc"


class SelfConsistentJudge:
    """Self-consistency for an LLM judge: ``k`` sampled replies, a majority vote per axis.

    Wang et al. 2023, "Self-Consistency Improves Chain of Thought Reasoning in
    Language Models" (ICLR): sample several replies at a temperature above zero
    and keep the answer most of them agree on. Here each axis is voted on
    separately over the replies that validated:

    - single-label axes: the commonest label; ties go to the label of the
      earliest sample;
    - operation axes (an ordered list, primary first): the primary operation by
      the same majority vote over each reply's first item (an empty list votes
      for "no operation"), then every other operation listed by more than half
      of the valid replies, commonest first (ties: first seen), up to the
      axis's ``max_items``.

    Confidence per axis is the vote share of the chosen (primary) label over all
    ``k`` samples, so a reply that failed to validate counts against it. It is
    recorded like the other labelers' (``extra["confidence_by_axis"]``, output
    column ``confidence_<axis>``), with ``judge_sc`` as the labeler of every axis.

    Sample ``j`` of an item gets the seed ``sample_seed(item, j)`` (31 bits, from
    sha256 of ``seed``, the item id and ``j``): replies differ between samples and
    a rerun reproduces them on backends that take a seed (``takes_seed = True``
    on the judge, e.g. the embedded llama.cpp judge). Other backends get ``k``
    separate requests without a seed.

    Args:
        judge: the LLM judge (a :class:`service.judge.base.Judge`), already set to
            the sampling temperature (> 0 for replies to differ).
        k: samples per item, >= 1.
        seed: base of the per-sample seeds.

    Raises:
        ValueError: ``k`` < 1.
    """

    backend = SELF_CONSISTENT

    def __init__(self, judge: Any, k: int, seed: int = 0):
        if k < 1:
            raise ValueError(f"self-consistency needs k >= 1 samples, got {k}")
        self.judge, self.k, self.seed = judge, k, seed
        self.taxonomy: Taxonomy = judge.taxonomy
        self.model = judge.model

    def config(self) -> dict[str, Any]:
        """The judge's config (temperature included) plus ``self_consistency``: k and seed."""
        return self.judge.config() | {"self_consistency": {"k": self.k, "seed": self.seed}}

    def config_hash(self) -> str:
        """sha256 prefix of :meth:`config` (differs from the judge's own, and by k)."""
        return hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()[:16]

    def sample_seed(self, item: EvalSample | Document, j: int) -> int:
        """The seed of sample ``j`` (0-based) of ``item``: a 31-bit integer."""
        digest = hashlib.sha256(f"{self.seed}:{base_id(item.id)}:{j}".encode()).digest()
        return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF

    def _sample(self, item: EvalSample | Document, seed: int) -> JudgeResult:
        """One full judge labeling (with its own retries on invalid replies) under ``seed``."""
        send = self.judge._send
        if getattr(self.judge, "takes_seed", False):
            def send(messages, model_cls):
                return self.judge._send(messages, model_cls, seed=seed)
        steps = self.judge.label_steps(item)
        try:
            request = next(steps)
            while True:
                request = steps.send(send(*request))
        except StopIteration as done:
            return done.value

    def label(self, item: EvalSample | Document) -> JudgeResult:
        """Label one item from ``k`` samples.

        Returns:
            ``labeled`` when at least one sample validated, with the voted labels;
            otherwise the commonest status of the samples (ties: earliest) and the
            error of its first sample, with no labels. Raw texts of every attempt
            of every sample are kept in order; token counts and attempts are summed.
            Never raises for judge-side problems.
        """
        t0 = time.perf_counter()
        seeds = [self.sample_seed(item, j) for j in range(self.k)]
        samples = [self._sample(item, s) for s in seeds]
        valid = [r.labels if r.status == Status.labeled else None for r in samples]
        labels, conf = self.vote(item, valid)
        first = samples[0]
        if labels is not None:
            status, error = Status.labeled, None
        else:
            status = modal([r.status for r in samples])[0]
            error = next(r.error for r in samples if r.status == status)
        labels, fm_source = apply_failure_rules(item, labels, "judge")
        return JudgeResult(
            status=status, labels=labels, raw_texts=[t for r in samples for t in r.raw_texts],
            finish_reason=samples[-1].finish_reason, prompt_tokens=sum(r.prompt_tokens for r in samples),
            completion_tokens=sum(r.completion_tokens for r in samples),
            attempts=sum(r.attempts for r in samples), model=self.model, backend=self.judge.backend,
            error=error, latency_s=time.perf_counter() - t0, request_hash=first.request_hash,
            prompt_ref=first.prompt_ref, failure_mode_source=fm_source,
            extra={**first.extra, "labeler_by_axis": {a: self.backend for a in labels or {}},
                   "confidence_by_axis": conf,
                   "self_consistency": {"k": self.k, "valid": sum(v is not None for v in valid), "seeds": seeds}},
        )

    def label_many(self, items: list[EvalSample | Document]) -> list[JudgeResult]:
        """:meth:`label` for each item, in input order."""
        return [self.label(item) for item in items]

    def predict(self, item: EvalSample | Document) -> tuple[dict[str, Any], dict[str, float]]:
        """Voted labels (empty when no sample validated) and per-axis vote share of one item."""
        result = self.label(item)
        return result.labels or {}, result.extra["confidence_by_axis"]

    def vote(self, item: EvalSample | Document,
             samples: list[dict[str, Any] | None]) -> tuple[dict[str, Any] | None, dict[str, float]]:
        """Per-axis majority vote over sample labels (None: a sample that did not validate).

        Returns:
            ``(labels, confidence)``: labels is None when no sample validated;
            confidence maps each axis to its vote share over ``len(samples)`` (0-1, 4 decimals).
        """
        valid = [s for s in samples if s is not None]
        if not valid:
            return None, {}
        labels, conf = {}, {}
        for axis in _axes_for(self.taxonomy, item):
            values = [None if s is None else s.get(axis.name) for s in samples]
            if all(v is None for v in values):
                continue
            if axis.kind != "operations":
                labels[axis.name], share = modal(values)
            else:
                best, share = modal([_target(axis, {axis.name: v}) for v in values])
                listed = [op for v in values if v for op in dict.fromkeys(v)]
                counts = Counter(listed)
                extra = sorted((op for op in counts if op != best and counts[op] > len(valid) / 2),
                               key=lambda op: (-counts[op], listed.index(op)))
                labels[axis.name] = _finish(axis, best, extra)
            conf[axis.name] = round(share, 4)
        return labels, conf
