"""Label items in-process with a labeler trained on a bundled gold pool (no LLM, no queue).

The k-NN and student labelers (:mod:`service.labelers`) learn from the exemplar-pool
split of the bundled gold set of the items' kind. The table they produce has the
columns of a ``label-benchmark`` run (:func:`service.output.labeled_row`) plus the
``gate_<axis>`` columns of :func:`service.slices.apply_gate`; without a calibration
record every axis is ``ungated``, so slicing these labels needs ``--allow-ungated``
(and says so in its output) unless a record is passed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from slicelab.service.errors import ConfigError
from slicelab.service.samples import Document, EvalSample, Rejected

#: Labelers this module can train, by name: ``per_axis`` (:func:`make_best_labeler`) trains the bundled
#: calibration record's per-axis choice on its pool split, leaving the labeled items out; ``selected``
#: (:func:`selected_labeler`) uses that choice where it needs no LLM and applies the record's gate verdicts.
LABELERS = ("knn", "student", "per_axis", "selected")
#: Labelers that run in-process without an LLM.
CHEAP = ("knn", "student", "shape", "cues")


def make_labeler(kind: str, labeler: str = "knn", *, seed: int = 0, extra_gold: tuple[str | Path, ...] = ()):
    """A k-NN or student labeler trained on the pool split of the bundled gold set of ``kind``.

    Args:
        extra_gold: more gold sets of the same kind (same format), every item of which joins the
            pool (items whose id the pool already has are skipped).

    Raises:
        ConfigError: unknown ``kind`` or ``labeler`` (the message lists the allowed names), or an
            extra gold set of another kind.
    """
    from slicelab.calibration.gold import BUNDLED, GOLD, load_gold
    from slicelab.service.labelers import KNNLabeler, StudentLabeler

    if kind not in BUNDLED:
        raise ConfigError(f"kind: unknown item kind {kind!r}; allowed: {', '.join(BUNDLED)}")
    if labeler not in LABELERS or labeler == "selected":
        allowed = ", ".join(x for x in LABELERS if x != "selected")
        raise ConfigError(f"labeler: unknown labeler {labeler!r}; allowed: {allowed}")
    if labeler == "per_axis":
        if extra_gold:
            raise ConfigError("extra_gold: the per_axis labeler learns from the bundled gold sets only")
        return make_best_labeler(kind, seed=seed)
    gold = load_gold(BUNDLED[kind])
    pool, _ = gold.split(seed=seed)
    items, labels = [gold.items[i] for i in pool], {i: gold.labels[GOLD][i] for i in pool}
    for path in extra_gold:
        more = load_gold(path)
        if more.kind != kind:
            raise ConfigError(f"--gold {path}: a {more.kind} gold set; {kind} items need a gold set of kind {kind}")
        new = [i for i in more.items if i not in labels and i in more.labels[GOLD]]
        items += [more.items[i] for i in new]
        labels |= {i: more.labels[GOLD][i] for i in new}
    cls = KNNLabeler if labeler == "knn" else StudentLabeler
    return cls(items, labels, pool_settings={"gold": BUNDLED[kind].name, "seed": seed,
                                             **({"extra_gold": [Path(p).name for p in extra_gold]} if extra_gold else {})})


def make_best_labeler(kind: str, *, seed: int = 0, exclude: frozenset[str] = frozenset()):
    """The best labelers without an LLM per axis, as the bundled calibration record selects them.

    The record (:func:`calibration.offline.bundled_record`, built on first use) measures k-NN,
    student, answer-shape and operation-cue labelers on the held-out split of the bundled gold
    sets (v1 and v2 merged) and selects, per axis, the one with the best lower bound of Cohen's
    kappa (:mod:`calibration.selection`). The pool labelers learn from the record's pool split,
    as :func:`service.labeler_factory.per_axis_spec` does; the judge is not used.

    Args:
        exclude: item ids left out of the pool (so the items being labeled are never their own
            exemplars or training examples).

    Raises:
        ConfigError: unknown ``kind``.
    """
    from slicelab.calibration.gold import BUNDLED_ALL, GOLD, load_gold
    from slicelab.calibration.offline import bundled_record
    from slicelab.service.labelers import KNNLabeler, PerAxisLabeler, StudentLabeler
    from slicelab.service.shape_labeler import CueLabeler, ShapeLabeler

    if kind not in BUNDLED_ALL:
        raise ConfigError(f"kind: unknown item kind {kind!r}; allowed: {', '.join(BUNDLED_ALL)}")
    record = bundled_record(kind)
    gold = load_gold([str(p) for p in BUNDLED_ALL[kind]])
    pool, _ = gold.split(seed=seed, holdout_frac=record["split"]["holdout_frac"])
    pool = [i for i in pool if i not in exclude]
    items, labels = [gold.items[i] for i in pool], {i: gold.labels[GOLD][i] for i in pool}
    settings = {"gold": [Path(p).name for p in BUNDLED_ALL[kind]], "seed": seed, "calibration_id": record["id"]}
    names = set(record["selection"].values())
    labelers = {name: cls(items, labels, pool_settings=settings)
                for name, cls in (("knn", KNNLabeler), ("student", StudentLabeler)) if name in names}
    labelers |= {"shape": ShapeLabeler(), "cues": CueLabeler()}
    return PerAxisLabeler(labelers, record["selection"])


def label_items(items: list[EvalSample | Document | Rejected], *, kind: str, labeler: str = "knn",
                record: dict[str, Any] | None = None, seed: int = 0,
                extra_gold: tuple[str | Path, ...] = ()) -> pd.DataFrame:
    """Label items with a pool labeler; one output row per item (rejected inputs included).

    Args:
        items: samples or documents (and :class:`Rejected` records from the readers).
        kind: ``"eval"`` or ``"document"``.
        labeler: ``"knn"``, ``"student"``, ``"per_axis"`` (:func:`make_best_labeler`; the items
            themselves are left out of its pool) or ``"selected"`` (:func:`selected_labeler`; ``record``
            then defaults to the bundled calibration record and its gate verdicts are applied).
        record: a calibration record (``{"id", "verdicts": {axis: pass|fail}}``) whose
            verdicts become the ``gate_<axis>`` columns; None leaves every axis ``ungated``.
        extra_gold: more gold sets for the labeler's pool (:func:`make_labeler`).

    Returns:
        The labeled table (``service.output`` columns, ``calibration_id``, ``gate_<axis>``).
    """
    from slicelab.service.output import labeled_row, rejected_row
    from slicelab.service.slices import apply_gate
    from slicelab.service.store import code_version
    from slicelab.service.taxonomy import load_taxonomy

    tax = load_taxonomy()
    if labeler == "per_axis" and not extra_gold:
        lab = make_best_labeler(kind, seed=seed, exclude=frozenset(i.id for i in items if not isinstance(i, Rejected)))
    elif labeler == "selected":
        lab, record = selected_labeler(kind, record)
    else:
        lab = make_labeler(kind, labeler, seed=seed, extra_gold=tuple(extra_gold))
    prov = {**tax.provenance(), "code_version": code_version(), "run_key": f"pool-{labeler}-{lab.config_hash()}"}
    rows = [rejected_row(i, tax, kind, prov) if isinstance(i, Rejected) else labeled_row(i, lab.label(i), tax, prov)
            for i in items]
    return apply_gate(pd.DataFrame(rows), record, tax, kind)


def label_file(path: str | Path, output: str | Path, *, kind: str, labeler: str = "knn",
               limit: int | None = None, benchmark: str | None = None,
               extra_gold: tuple[str | Path, ...] = ()) -> pd.DataFrame:
    """Read a benchmark or document file (any :mod:`service.readers` format), label it, write Parquet/JSONL.

    Args:
        benchmark: benchmark name for eval records that carry none (e.g. ``"bbh"``); the
            labelers use it as a similarity cue.
        extra_gold: more gold sets for the labeler's pool (:func:`make_labeler`).

    Returns:
        The table written to ``output`` (format from its suffix).
    """
    from slicelab.service.output import check_output, write_table
    from slicelab.service.readers import read_documents, read_eval_samples

    output = Path(output)
    fmt = check_output(output, None, Path(path))
    items = (read_eval_samples(path, limit=limit, benchmark=benchmark) if kind == "eval"
             else read_documents(path, limit=limit))
    df = label_items(list(items), kind=kind, labeler=labeler, extra_gold=tuple(extra_gold))
    write_table(df, output, fmt)
    return df


def selected_labeler(kind: str, record: dict[str, Any] | None = None):
    """Per axis, the labeler a calibration record selected, where it runs without an LLM.

    An axis whose selected labeler needs the LLM judge (``judge``, ``judge_sc``, ``cascade``) is
    labeled by the k-NN labeler instead and its gate verdict becomes ``ungated``.

    Args:
        record: a calibration record with ``selection`` (default: the record of the labelers
            without an LLM on the bundled gold sets, :func:`calibration.offline.bundled_record`).

    Returns:
        ``(labeler, gate_record)``: a :class:`service.labelers.PerAxisLabeler` and
        ``{"id", "verdicts", "selection"}`` for :func:`service.slices.apply_gate`, ``selection``
        being axis → the labeler used.
    """
    from slicelab.calibration.selection import used_selection, used_verdicts
    from slicelab.service.labeler_factory import gold_pool, per_axis_spec
    from slicelab.service.labelers import KNNLabeler, PerAxisLabeler, StudentLabeler
    from slicelab.service.shape_labeler import CueLabeler, ShapeLabeler

    if record is None:
        from slicelab.calibration.offline import bundled_record

        record = bundled_record(kind)
    chosen, verdicts = used_selection(record), used_verdicts(record)
    use = {a: name if name in CHEAP else "knn" for a, name in chosen.items()}
    pool = per_axis_spec({}, record)["pool"]
    items, labels = gold_pool(pool)
    labelers: dict[str, Any] = {"knn": KNNLabeler(items, labels, pool_settings=dict(pool)),
                                "shape": ShapeLabeler(), "cues": CueLabeler()}
    if "student" in use.values():
        labelers["student"] = StudentLabeler(items, labels, pool_settings=dict(pool))
    gate = {"id": record["id"], "selection": use,
            "verdicts": {a: verdicts.get(a, "ungated") if use[a] == chosen[a] else "ungated" for a in use}}
    return PerAxisLabeler(labelers, use), gate
