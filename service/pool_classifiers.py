"""Labelers trained on a gold-labeled pool, without an LLM.

- :class:`KNNLabeler` — nearest-exemplar vote over the pool (TF-IDF cosine); per axis, ``k``
  and the weighting (uniform or by similarity) are chosen by leave-one-out accuracy on the pool.
- :class:`StudentLabeler` — a classifier per axis trained on the pool (TF-IDF word 1-2-grams +
  character 2-5-grams + operation-cue scores, logistic regression; one-vs-rest for the
  non-primary operations).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics.pairwise import linear_kernel

from slicelab.service.exemplars import base_id, item_text
from slicelab.service.labeler_base import Labeler, axes_for, item_kind, operations_label, target_class
from slicelab.service.samples import Document, EvalSample
from slicelab.service.taxonomy import AxisDef, Taxonomy

#: k values and weightings tried by the k-NN labeler's leave-one-out selection.
KNN_KS = (1, 3, 5, 7, 9)
KNN_WEIGHTS = ("uniform", "similarity")


class _PoolLabeler(Labeler):
    """Shared set-up: a pool of gold-labeled items of one kind."""

    def __init__(self, items: list[EvalSample | Document], labels: dict[str, dict[str, Any]],
                 taxonomy: Taxonomy | None = None, pool_settings: dict[str, Any] | None = None):
        super().__init__(taxonomy)
        if not items:
            raise ValueError("labeler pool is empty")
        self.items, self.labels = list(items), labels
        self.kind = item_kind(self.items[0])
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
                        truth = target_class(axis, self.labels[item_id])
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
            target = target_class(axis, self.labels[self.ids[j]])
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
        for axis in axes_for(self.taxonomy, item):
            k, w = self.choice[axis.name]
            best, share, extra = self._vote(axis, sims, k, w, exclude=base_id(item.id))
            labels[axis.name], conf[axis.name] = operations_label(axis, best, extra), share
        return labels, conf

    def config(self) -> dict[str, Any]:
        return super().config() | {"choice": {a: list(v) for a, v in self.choice.items()}}


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
            rows = [j for j, i in enumerate(self.ids) if target_class(axis, self.labels[i]) is not None]
            y = [target_class(axis, self.labels[self.ids[j]]) for j in rows]
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
        for axis in axes_for(self.taxonomy, item):
            x = x_ops if axis.kind == "operations" else x_words
            best, p = _predict(self.models[axis.name], x)
            extra = []
            if axis.kind == "operations":
                for op, model in self.secondary[axis.name].items():
                    is_op, q = _predict(model, x)
                    if is_op is True and q >= 0.5 and op != best:
                        extra.append(op)
            labels[axis.name], conf[axis.name] = operations_label(axis, best, extra), p
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
