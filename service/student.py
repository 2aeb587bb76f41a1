"""The distilled student of a shard run: one cheap classifier per document axis, learned from judge labels.

Features: the document cut to the token budget (:func:`service.shards.truncate`),
hashed word unigrams and bigrams (:class:`service.features.HashedNgrams`:
``2**n_features_log2`` columns, counts, L2-normalized rows; nothing to fit, so
features cost the same for every batch and never grow with the corpus). Model
per single-label axis: multinomial logistic regression (scikit-learn
``LogisticRegression``, L2, balanced class weights); for ``demonstrated_operations``
one binary logistic regression per operation (one-vs-rest). Weights are kept only
for the feature columns the training documents use, so a saved student is a few MB
and scoring a batch is one sparse-times-dense product.

Saved students live in ``$SLICELAB_HOME/students/<hash>/`` (``student.joblib`` +
``meta.json``); the hash is the sha256 prefix of the joblib file's bytes and is
the model version recorded on every row the student labels.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from slicelab.calibration.gate import GateConfig, verdict
from slicelab.calibration.records import home
from slicelab.service import defaults
from slicelab.service.errors import ConfigError
from slicelab.service.features import HashedNgrams
from slicelab.service.shards import truncate
from slicelab.service.taxonomy import AxisDef, Taxonomy, load_taxonomy

#: Bumped when the saved format changes (old students then refuse to load).
STUDENT_FORMAT = 1
#: Probability at or above which an operation is predicted present.
OPERATION_THRESHOLD = 0.5


@dataclass(frozen=True)
class StudentSettings:
    """How a student is built.

    Attributes:
        max_tokens: token budget documents are cut to (tokens, 4 characters each).
        n_features_log2: hashed feature columns, as a power of two.
        C: inverse L2 regularization strength of every logistic regression.
        class_weight: ``"balanced"`` (classes weighted by inverse frequency) or None.
    """

    max_tokens: int = defaults.SHARD_MAX_TOKENS
    n_features_log2: int = 20
    C: float = 1.0
    class_weight: str | None = "balanced"


class ShardStudent:
    """Per-axis classifiers for documents. Fit with :meth:`fit`, label with :meth:`predict`."""

    def __init__(self, settings: StudentSettings | None = None, taxonomy: Taxonomy | None = None):
        self.settings = settings or StudentSettings()
        self.taxonomy = taxonomy or load_taxonomy()
        self.axes: list[AxisDef] = list(self.taxonomy.axes("document"))
        self.vectorizer = HashedNgrams(n_features=2 ** self.settings.n_features_log2)
        self.models: dict[str, Any] = {}
        self.n_train = 0

    @property
    def provenance(self) -> dict[str, str]:
        return self.taxonomy.provenance()

    def __getstate__(self) -> dict[str, Any]:
        # the taxonomy is data on disk: keep its hash, not the object (whose path differs per checkout)
        state = {k: v for k, v in self.__dict__.items() if k not in ("taxonomy", "axes", "_scorer")}
        return state | {"taxonomy_hash": self.taxonomy.content_hash}

    def __setstate__(self, state: dict[str, Any]) -> None:
        expected = state.pop("taxonomy_hash")
        self.__dict__.update(state)
        self.taxonomy = load_taxonomy()
        if self.taxonomy.content_hash != expected:
            raise ConfigError(f"this student was trained on taxonomy {expected}; the loaded taxonomy is "
                              f"{self.taxonomy.content_hash}: train a new student")
        self.axes = list(self.taxonomy.axes("document"))

    def features(self, texts: list[str]):
        """Sparse matrix ``(len(texts), 2**n_features_log2)`` of the cut texts."""
        return self.vectorizer.transform([truncate(t, self.settings.max_tokens)[0] for t in texts])

    def fit(self, texts: list[str], labels: list[dict[str, Any]]) -> ShardStudent:
        """Learn every axis from documents and their labels (``axis -> id``, operations: list of ids).

        Raises:
            ConfigError: fewer than 2 documents, or lengths differ.
        """
        if len(texts) != len(labels) or len(texts) < 2:
            raise ConfigError(f"a student needs at least 2 labeled documents (got {len(texts)} texts, "
                              f"{len(labels)} label sets)")
        X = self.features(texts)
        s = self.settings
        for axis in self.axes:
            if axis.kind == "operations":
                self.models[axis.name] = {op: _fit(X, [op in (lab.get(axis.name) or []) for lab in labels], s)
                                          for op in axis.ids}
            else:
                rows = [i for i, lab in enumerate(labels) if lab.get(axis.name) is not None]
                self.models[axis.name] = _fit(X[rows], [labels[i][axis.name] for i in rows], s) if rows else None
        self.n_train = len(texts)
        self._scorer = None
        return self

    def predict(self, texts: list[str], axes: list[str] | None = None
                ) -> tuple[list[dict[str, Any]], list[dict[str, float]]]:
        """Labels and probabilities for a batch of documents.

        Args:
            texts: the documents (cut to the budget here).
            axes: the axes to predict (default: all).

        Returns:
            ``(labels, probs)``, one dict per text: ``axis -> id`` (operations: ids ordered by
            probability, those at or above :data:`OPERATION_THRESHOLD`, at most ``max_items``) and
            ``axis -> probability of that answer`` (operations: the least certain of the per-operation
            decisions, ``min(max(p, 1 - p))``).
        """
        wanted = [a for a in self.axes if axes is None or a.name in axes]
        labels: list[dict[str, Any]] = [{} for _ in texts]
        probs: list[dict[str, float]] = [{} for _ in texts]
        if not texts:
            return labels, probs
        if self.__dict__.get("_scorer") is None:
            self._scorer = _Scorer(self.models, 2 ** self.settings.n_features_log2)
        Z = self._scorer.scores(self.features(texts))
        for axis in wanted:
            model = self.models.get(axis.name)
            if model is None:
                continue
            if axis.kind == "operations":
                P = np.column_stack([_proba_true(model[op], Z, self._scorer.cols[(axis.name, op)])
                                     for op in axis.ids])
                conf = np.min(np.maximum(P, 1 - P), axis=1)
                order = np.argsort(-P, axis=1, kind="stable")
                for i in range(len(texts)):
                    ops = [axis.ids[j] for j in order[i] if P[i, j] >= OPERATION_THRESHOLD][: axis.max_items]
                    if not ops and axis.min_items > 0:
                        ops = [axis.ids[int(order[i, 0])]]
                    labels[i][axis.name] = ops
                    probs[i][axis.name] = float(conf[i])
            else:
                classes, P = _proba(model, Z, self._scorer.cols[(axis.name, None)])
                best = P.argmax(axis=1)
                p_best = P[np.arange(len(best)), best]
                for i, j in enumerate(best):
                    labels[i][axis.name] = classes[j]
                    probs[i][axis.name] = float(p_best[i])
        return labels, probs


@dataclass
class _Linear:
    """A fitted logistic regression over the hashed feature columns its training rows used.

    Attributes:
        classes: class labels in column order.
        cols: the hashed feature columns that have a weight, shape ``(n_cols,)``.
        coef: their weights, shape ``(n_cols, n_coef)`` (``n_coef`` is 1 for two classes).
        b: intercepts, shape ``(n_coef,)``.
    """

    classes: list
    cols: np.ndarray
    coef: np.ndarray
    b: np.ndarray

    def proba(self, z: np.ndarray) -> np.ndarray:
        """Class probabilities from decision values ``z = X @ W`` (without intercept), shape
        ``(n, len(classes))``: sigmoid for two classes, softmax for more (what
        ``LogisticRegression.predict_proba`` computes)."""
        z = z + self.b
        if len(self.classes) == 2:
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.column_stack([1.0 - p1, p1])
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


class _Scorer:
    """Every model's weights stacked densely over the feature columns any model uses.

    Scoring a batch is then one sparse-times-dense product: the batch's hashed columns are
    renumbered to the used ones (columns no model uses are dropped: their weight is 0). Memory: ``n_used * n_coef_total`` float64, where ``n_used`` grows with the
    training sample, never with the labeled shard.
    """

    def __init__(self, models: dict[str, Any], n_features: int):
        linear = {}
        for axis, model in models.items():
            for op, m in (model.items() if isinstance(model, dict) else [(None, model)]):
                if isinstance(m, _Linear):
                    linear[(axis, op)] = m
        used = np.unique(np.concatenate([m.cols for m in linear.values()] or [np.empty(0, np.int64)]))
        self.remap = np.full(n_features, -1, dtype=np.int32)  # hashed column -> used column (4 bytes each)
        self.remap[used] = np.arange(len(used), dtype=np.int32)
        self.W = np.zeros((len(used), sum(m.coef.shape[1] for m in linear.values())))
        self.cols, start = {}, 0
        for key, m in linear.items():
            k = m.coef.shape[1]
            self.W[np.searchsorted(used, m.cols), start:start + k] = m.coef
            self.cols[key] = slice(start, start + k)
            start += k
        for axis, model in models.items():  # constant models score nothing
            for op in (model if isinstance(model, dict) else [None]):
                self.cols.setdefault((axis, op), slice(0, 0))
        self.n_used = len(used)

    def scores(self, X) -> np.ndarray:
        """Decision values of every model, shape ``(n, n_coef_total)``, for a CSR batch ``X``."""
        from scipy.sparse import csr_matrix

        cols = self.remap[X.indices]
        keep = cols >= 0
        cum = np.concatenate([[0], np.cumsum(keep)])
        Xc = csr_matrix((X.data[keep], cols[keep], cum[X.indptr]), shape=(X.shape[0], self.n_used))
        return np.asarray(Xc @ self.W)


def _fit(X, y: list, s: StudentSettings):
    """Fit one logistic regression on the columns the training rows use, then map it back to all columns.

    Fitting on the used columns only keeps L-BFGS fast (a model over 2**20 columns is mostly zeros
    that it would still iterate over) and gives the same solution: a column that is zero in every
    training row gets weight 0 under L2 regularization.
    """
    from sklearn.linear_model import LogisticRegression  # training only: workers never import scikit-learn

    classes = sorted(set(y), key=str)
    if len(classes) == 1:
        return ("constant", classes[0])
    X = X.tocsc()
    used = np.flatnonzero(np.diff(X.indptr))
    model = LogisticRegression(C=s.C, max_iter=2000, class_weight=s.class_weight).fit(X[:, used].tocsr(), y)
    return _Linear([c.item() if hasattr(c, "item") else c for c in model.classes_], used.astype(np.int64),
                   np.ascontiguousarray(model.coef_.T), model.intercept_.copy())


def _proba(model, Z: np.ndarray, cols: slice) -> tuple[list, np.ndarray]:
    if isinstance(model, tuple):
        return [model[1]], np.ones((Z.shape[0], 1))
    return model.classes, model.proba(Z[:, cols])


def _proba_true(model, Z: np.ndarray, cols: slice) -> np.ndarray:
    classes, P = _proba(model, Z, cols)
    return P[:, classes.index(True)] if True in classes else np.zeros(Z.shape[0])


# --------------------------------------------------------------------------- measuring


def axis_metrics(axis: AxisDef, truth: list[Any], pred: list[Any], *, n_boot: int, seed: int = 0) -> dict[str, Any]:
    """Agreement of predictions with reference labels on one axis (items whose reference is None are left out).

    Single-label axes: :func:`calibration.metrics.single_label_metrics`; operations:
    :func:`calibration.metrics.operation_set_metrics` (its ``primary`` part is what the gate reads).
    """
    from slicelab.calibration.metrics import operation_set_metrics, single_label_metrics

    keep = [i for i, t in enumerate(truth) if t is not None]
    t, p = [truth[i] for i in keep], [pred[i] for i in keep]
    if axis.kind == "operations":
        return operation_set_metrics(t, p, axis.ids, n_boot=n_boot, seed=seed)
    return single_label_metrics(t, p, axis.ids, n_boot=n_boot, seed=seed)


def measure(student: ShardStudent, texts: list[str], truth: list[dict[str, Any]], gate: GateConfig, *,
            n_boot: int = defaults.STUDENT_N_BOOT, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Student vs reference labels on every axis, with the gate's verdict.

    Returns:
        ``axis -> {"metrics": full metrics, "summary": {n, accuracy, kappa, kappa_ci_low,
        kappa_ci_high, macro_f1}, "verdict": calibration.gate.verdict output}`` (operation axes:
        summary and verdict of the primary operation, as in calibration).
    """
    pred, _ = student.predict(texts)
    out = {}
    for axis in student.axes:
        m = axis_metrics(axis, [lab.get(axis.name) for lab in truth], [p.get(axis.name) for p in pred],
                         n_boot=n_boot, seed=seed)
        gated = m["primary"] if axis.kind == "operations" else m
        ci = gated.get("cohen_kappa_ci") or [None, None]
        out[axis.name] = {
            "metrics": m,
            "summary": {"n": gated["n"], "accuracy": gated["accuracy"], "kappa": gated["cohen_kappa"],
                        "kappa_ci_low": ci[0], "kappa_ci_high": ci[1], "macro_f1": gated["macro_f1"]},
            "verdict": verdict(gated, gate.threshold(axis.name)),
        }
    return out


def primary_or_none(ops: list[str] | None) -> str | None:
    """The primary operation of a list (``__none__`` for an empty list, None for None)."""
    from slicelab.calibration.metrics import NONE_CLASS

    return None if ops is None else (ops[0] if ops else NONE_CLASS)


# --------------------------------------------------------------------------- saving


def students_dir() -> Path:
    """``$SLICELAB_HOME/students``."""
    return home() / "students"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_student(student: ShardStudent, meta: dict[str, Any]) -> tuple[str, Path]:
    """Save a student under ``students_dir()/<hash>/``; return ``(hash, folder)``.

    ``meta`` (JSON: training data, metrics, verdicts) is written beside it as
    ``meta.json`` with ``hash``, ``settings``, the taxonomy provenance and ``created_at``
    added. Saving the same student twice gives the same hash and folder.
    """
    root = students_dir()
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".student-{os.getpid()}-{time.time_ns()}.joblib"
    joblib.dump({"format": STUDENT_FORMAT, "student": student}, tmp)
    digest = _sha256(tmp)[:16]
    folder = root / digest
    folder.mkdir(exist_ok=True)
    os.replace(tmp, folder / "student.joblib")
    full = {"hash": digest, "format": STUDENT_FORMAT, "settings": asdict(student.settings),
            "n_train": student.n_train, **student.provenance,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **meta}
    (folder / "meta.json").write_text(json.dumps(full, indent=2, allow_nan=False), encoding="utf-8")
    return digest, folder


_LOADED: dict[str, tuple[ShardStudent, dict[str, Any]]] = {}


def load_student(digest: str, folder: Path | None = None) -> tuple[ShardStudent, dict[str, Any]]:
    """Load a saved student by hash (cached per process); verifies the file still has that hash.

    Args:
        digest: the student's hash (its folder name).
        folder: where it is, when not under :func:`students_dir` (e.g. another machine's home).

    Raises:
        ConfigError: no such student (the message lists the known hashes), its bytes no longer
            match the hash, or it was saved in another format.
    """
    if digest in _LOADED:
        return _LOADED[digest]
    folder = folder or students_dir() / digest
    path = folder / "student.joblib"
    if not path.is_file():
        known = sorted(p.parent.name for p in students_dir().glob("*/student.joblib"))
        raise ConfigError(f"no student {digest!r} in {students_dir()}; known: {', '.join(known) or 'none'}")
    if _sha256(path)[:16] != digest:
        raise ConfigError(f"{path}: its bytes do not match hash {digest!r} (the file was changed)")
    saved = joblib.load(path)
    if not isinstance(saved, dict) or saved.get("format") != STUDENT_FORMAT:
        raise ConfigError(f"{path}: saved in another student format; expected {STUDENT_FORMAT}")
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    _LOADED[digest] = (saved["student"], meta)
    return _LOADED[digest]


def list_students() -> list[dict[str, Any]]:
    """Metadata of every saved student, newest first."""
    metas = [json.loads(p.read_text(encoding="utf-8")) for p in students_dir().glob("*/meta.json")]
    return sorted(metas, key=lambda m: m.get("created_at", ""), reverse=True)
