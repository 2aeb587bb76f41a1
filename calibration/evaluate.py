"""Per-axis agreement on a gold set's held-out split: judge vs gold beside the ceiling and baselines.

For every taxonomy axis of the gold set's kind:

- ``judge``: the judge's (modal) label vs the adjudicated gold label;
- ``annotators``: annotator_a vs annotator_b on the same items (the ceiling);
- ``baselines``: the pool's majority label, and the nearest-exemplar labeler
  (gold labels of the most similar pool item, TF-IDF cosine, no LLM);
- ``krippendorff_alpha`` over annotator_a, annotator_b and the judge
  (nominal; ordinal for ordered axes; on the primary operation for operation axes);
- ``coverage``: judge accuracy vs coverage at confidence thresholds (confidence =
  the modal label's share over ``samples`` judge runs per item);
- ``alt_test``: per labeler, the alternative annotator test against the two
  annotators (winning rate ω, advantage probability ρ; Calderon et al., ACL 2025);
- ``verdict``: the gate's pass/fail for the axis (kappa bound, alt-test, both or
  either, as ``gate.yaml``'s ``require`` says).

Judge failures (no labels) are counted as the invalid class, never dropped.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from slicelab.calibration.alt_test import alt_test
from slicelab.calibration.gate import GateConfig, combine, verdict
from slicelab.calibration.gold import GOLD, GoldSet
from slicelab.calibration.metrics import (
    INVALID,
    NONE_CLASS,
    coverage_curve,
    krippendorff_alpha,
    operation_set_metrics,
    single_label_metrics,
)
from slicelab.service.exemplars import ExemplarIndex
from slicelab.service.labelers import modal
from slicelab.service.taxonomy import AxisDef, Taxonomy

#: Confidence thresholds of the accuracy-vs-coverage curve.
COVERAGE_THRESHOLDS = [0.0, 0.5, 0.6, 0.8, 1.0]


def _primary(ops: list[str] | None) -> str | None:
    if ops is None:
        return None
    return ops[0] if ops else NONE_CLASS


def evaluate(
    gold: GoldSet,
    pool: list[str],
    heldout: list[str],
    judge_labels: dict[str, list[dict[str, Any] | None]],
    taxonomy: Taxonomy,
    gate: GateConfig,
    *,
    other_labelers: dict[str, dict[str, dict[str, Any] | None]] | None = None,
    pool_set: GoldSet | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Metrics and verdict per axis.

    Args:
        gold: the gold set; pool / heldout: its split (item ids).
        judge_labels: item id → one label dict per judge sample (None where the judge failed).
        other_labelers: labeler name → item id → label dict, for labelers measured beside
            the judge (k-NN, student, cascade...). Each gets the same metrics as the judge.
        pool_set: the gold set the pool ids refer to (default ``gold``; another file with
            ``--exemplars``).

    Returns:
        axis name → ``{"kind", "n", "judge", "labelers", "selected", "annotators", "baselines",
        "krippendorff_alpha", "coverage", "alt_test", "verdict", "judge_verdict", "labeler_verdicts"}``:
        ``alt_test`` maps every labeler to its alternative annotator test
        (:func:`calibration.alt_test.alt_test` as a dict; None with fewer than two annotators); ``labelers`` maps every
        labeler (the judge included) to its metrics; ``selected`` is the labeler with the best
        lower 95% bound of Cohen's kappa (primary operation for operation axes; ties go to the
        cheaper labeler, see ``COST_ORDER``); ``verdict`` gates the selected labeler, ``judge_verdict``
        the judge alone, ``labeler_verdicts`` maps each labeler to its pass/fail word.
    """
    ps = pool_set or gold
    pl = ps.labels[GOLD]
    index = ExemplarIndex([ps.items[i] for i in pool], {i: pl[i] for i in pool})
    nearest = {i: index.nearest_labels(gold.items[i]) for i in heldout}
    out: dict[str, dict[str, Any]] = {}
    for axis in taxonomy.axes(gold.kind):
        majority = Counter(_key(axis, pl[i].get(axis.name)) for i in pool if pl[i].get(axis.name) is not None)
        baselines = {"majority": _unkey(majority.most_common(1)[0][0] if majority else None),
                     "nearest_exemplar": {i: nearest[i].get(axis.name) for i in heldout}}
        out[axis.name] = _axis_result(gold, axis, heldout, judge_labels, other_labelers or {}, baselines, gate,
                                      metric_fn(axis, n_boot, seed))
    return out


def _axis_result(gold: GoldSet, axis: AxisDef, heldout: list[str], judge_labels: dict[str, list[dict[str, Any] | None]],
                 other_labelers: dict[str, dict[str, dict[str, Any] | None]], baselines: dict[str, Any],
                 gate: GateConfig, metric) -> dict[str, Any]:
    """The metrics and verdicts of one axis (see :func:`evaluate`).

    ``baselines``: ``majority`` (the pool's majority label) and ``nearest_exemplar`` (item id →
    the nearest pool item's label); ``metric``: :func:`metric_fn` of the axis.
    """
    gl = gold.labels[GOLD]
    items = axis_items(gold, axis, heldout)
    judged = {i: judge_modal(judge_labels, i, axis.name) for i in items}
    judge_preds = [judged[i][0] for i in items]
    truth = [gl[i].get(axis.name) for i in items]
    result: dict[str, Any] = {"kind": axis.kind, "n": len(items)}
    result["judge"] = metric(truth, judge_preds)
    result["labelers"] = {"judge": result["judge"]}
    for name, labels in other_labelers.items():
        predicted = [(labels.get(i) or {}).get(axis.name) for i in items]
        if items and all(p is None for p in predicted):
            continue  # a labeler of other axes (e.g. shape): not a candidate here
        result["labelers"][name] = metric(truth, predicted)
    result["baselines"] = {"majority": metric(truth, [baselines["majority"] for _ in items]),
                           "nearest_exemplar": metric(truth, [baselines["nearest_exemplar"][i] for i in items])}
    annotators = _annotator_agreement(gold, axis, items, metric)
    if annotators is not None:
        result["annotators"] = annotators
    result["krippendorff_alpha"] = _judge_alpha(gold, axis, items, judged)
    correct = [_key(axis, judged[i][0]) == _key(axis, gl[i].get(axis.name)) for i in items]
    result["coverage"] = coverage_curve(correct, [judged[i][1] for i in items], COVERAGE_THRESHOLDS)
    predicted = {"judge": dict(zip(items, judge_preds))}
    predicted |= {n: {i: (labels.get(i) or {}).get(axis.name) for i in items}
                  for n, labels in other_labelers.items() if n in result["labelers"]}
    result["alt_test"] = _alt_tests(gold, axis, items, predicted, gate)
    return result | _verdicts(result, axis, gate)


def axis_items(gold: GoldSet, axis: AxisDef, heldout: list[str]) -> list[str]:
    """The held-out items scored on one axis: those with a gold label on it (every item on an operation
    axis, whose empty list is a label, unless the axis applies only under a condition), in ``heldout`` order."""
    gl = gold.labels[GOLD]
    items = [i for i in heldout if gl[i].get(axis.name) is not None or axis.kind == "operations"]
    if axis.only_when:
        items = [i for i in items if gl[i].get(axis.name) is not None]
    return items


def judge_modal(judge_labels: dict[str, list[dict[str, Any] | None]], item_id: str, axis: str) -> tuple[Any, float]:
    """The judge's modal label of one item on one axis over its samples, and its share (a failed or
    missing sample counts as None; see :func:`service.labelers.modal`)."""
    return modal([(lab or {}).get(axis) for lab in judge_labels.get(item_id, [None])])


def _annotator_agreement(gold: GoldSet, axis: AxisDef, items: list[str], metric) -> dict[str, Any] | None:
    """Agreement of the two annotators who rated the most of ``items`` on one axis (ties: name order), with
    ``pair``: their names (None with fewer than two). A reviewer who relabeled some items of an exported
    gold set does not displace the pair who labeled them all."""
    ranked = sorted(gold.annotators, key=lambda a: -sum(i in gold.labels[a] for i in items))
    a_name, b_name = sorted((ranked + [None, None])[:2], key=lambda a: (a is None, a or ""))
    if not (a_name and b_name):
        return None
    rated = [i for i in items if i in gold.labels[a_name] and i in gold.labels[b_name]]  # both wrote a row
    both = [i for i in rated if gold.labels[a_name][i].get(axis.name) is not None
            and gold.labels[b_name][i].get(axis.name) is not None or axis.kind == "operations"]
    agreement = metric([gold.labels[a_name][i].get(axis.name) for i in both],
                       [gold.labels[b_name][i].get(axis.name) for i in both])
    agreement["pair"] = [a_name, b_name]
    return agreement


def _judge_alpha(gold: GoldSet, axis: AxisDef, items: list[str], judged: dict[str, tuple[Any, float]]
                 ) -> dict[str, Any]:
    """Krippendorff's alpha over the annotators and the judge on one axis, with its ``level``."""
    raters = {r: {i: _alpha_value(axis, gold.labels[r].get(i, {}).get(axis.name)) for i in items}
              for r in gold.annotators}
    # a judge failure is a rating in the invalid class (a disagreement), not a missing rating;
    # on an ordinal scale it has no place, so there it stays missing
    fill = None if axis.ordered else INVALID
    raters["judge"] = {i: _alpha_value(axis, judged[i][0]) or fill for i in items}
    level = "ordinal" if axis.ordered else "nominal"
    alpha = krippendorff_alpha(raters, level=level, **({"value_order": axis.ids} if axis.ordered else {}))
    alpha["level"] = level
    return alpha


def _verdicts(result: dict[str, Any], axis: AxisDef, gate: GateConfig) -> dict[str, Any]:
    """``selected``, ``verdict``, ``judge_verdict`` and ``labeler_verdicts`` of one axis's result."""
    threshold = gate.threshold(axis.name)

    def gated_verdict(name: str) -> dict[str, Any]:
        return combine(verdict(gated_metrics(result["labelers"][name], axis.kind), threshold),
                       result["alt_test"].get(name), gate.require)

    selected = select_labeler(result["labelers"], axis.kind)
    return {"selected": selected, "verdict": gated_verdict(selected), "judge_verdict": gated_verdict("judge"),
            "labeler_verdicts": {n: gated_verdict(n)["verdict"] for n in result["labelers"]}}


def _alt_tests(gold: GoldSet, axis: AxisDef, items: list[str], predicted: dict[str, dict[str, Any]],
               gate: GateConfig) -> dict[str, dict[str, Any] | None]:
    """The alternative annotator test of every labeler on one axis (None: fewer than two annotators).

    Annotators are the gold set's independent annotators (never the adjudicated ``gold`` row);
    operation axes compare primary operations. Scoring is accuracy against the remaining annotators.
    """
    if len(gold.annotators) < 2:
        return {n: None for n in predicted}
    humans: dict[str, dict[str, Any]] = {}
    for a in gold.annotators:
        values = {i: _alpha_value(axis, (gold.labels[a].get(i) or {}).get(axis.name)) for i in items}
        humans[a] = {i: v for i, v in values.items() if v is not None}
    rule = gate.alt_test
    return {n: alt_test({i: _alpha_value(axis, p.get(i)) for i in items}, humans, epsilon=rule.epsilon,
                        q=rule.q, min_items_per_annotator=rule.min_items).to_dict()
            for n, p in predicted.items()}


def gated_metrics(metrics: dict[str, Any], kind: str) -> dict[str, Any]:
    """The metrics the gate reads: those of the primary operation on an operation axis, else ``metrics``."""
    return metrics["primary"] if kind == "operations" else metrics


def _kappa_low(metrics: dict[str, Any], kind: str) -> float:
    ci = gated_metrics(metrics, kind).get("cohen_kappa_ci")
    return ci[0] if ci else float("-inf")


#: Labelers from cheapest to dearest: ties in the selection go to the cheaper one
#: (``judge_sc``, the self-consistent judge, makes k judge calls per item).
COST_ORDER = ("shape", "cues", "knn", "student", "cascade", "judge", "judge_sc")


def select_labeler(labelers: dict[str, dict[str, Any]], kind: str) -> str:
    """The labeler with the best lower 95% bound of Cohen's kappa; ties go to the cheaper one."""
    order = sorted(labelers, key=lambda n: COST_ORDER.index(n) if n in COST_ORDER else len(COST_ORDER))
    return max(order, key=lambda n: (_kappa_low(labelers[n], kind), -order.index(n)))


def metric_fn(axis: AxisDef, n_boot: int, seed: int):
    """``metric(truth, predicted) -> dict`` for one axis: :func:`calibration.metrics.operation_set_metrics`
    on an operation axis, else :func:`calibration.metrics.single_label_metrics` (``n_boot`` bootstrap
    resamples, seeded with ``seed``)."""
    if axis.kind == "operations":
        return lambda t, p: operation_set_metrics(t, p, axis.ids, n_boot=n_boot, seed=seed)
    return lambda t, p: single_label_metrics(t, p, axis.ids, n_boot=n_boot, seed=seed)


def _key(axis: AxisDef, v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _unkey(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _alpha_value(axis: AxisDef, v: Any) -> str | None:
    if axis.kind == "operations":
        return None if v is None else (v[0] if v else NONE_CLASS)
    return v
