"""Per benchmark: its own agreement on the held-out split beside its leave-one-benchmark-out figure.

A calibration measures every labeler on the held-out items of all benchmarks together. For a
benchmark with gold items of its own, two numbers answer different questions:

- *own* agreement: the selected labeler of an axis, trained on the full pool (which holds this
  benchmark's pool items), measured on this benchmark's held-out items only. It says how far
  this benchmark's labels can be trusted now that it has gold items.
- *leave-one-benchmark-out* (LOBO, :func:`calibration.run.leave_one_benchmark_out`): the same
  labeler trained on the other benchmarks only. It says what to expect with no gold item
  from the benchmark.

Own κ well above LOBO κ means the benchmark's gold items made its labels better. Both are
Cohen's kappa (operation axes: of the primary operation) computed by the metrics the axis
results use (:func:`calibration.evaluate.metric_fn`), so the figures are comparable.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from slicelab.calibration.evaluate import axis_items, judge_modal, metric_fn
from slicelab.calibration.gold import GOLD, GoldSet
from slicelab.service.taxonomy import AxisDef, Taxonomy

#: Fewer held-out items than this on a benchmark (or scored on an axis): too few to judge its agreement.
MIN_HELDOUT = 10
#: Bootstrap resamples of each per-benchmark kappa interval (at most).
PER_BENCHMARK_BOOT = 200


def benchmark_family(source: str) -> str:
    """The benchmark a gold source belongs to: a trailing year is dropped (``aime2025`` → ``aime``)."""
    return re.sub(r"(?<=\D)(19|20)\d\d$", "", source or "")


def summary(metrics: dict[str, Any], kind: str) -> dict[str, Any]:
    """n, accuracy, kappa with its 95% interval and macro-F1 (operation axes: of the primary)."""
    m = metrics["primary"] if kind == "operations" else metrics
    ci = m.get("cohen_kappa_ci") or [None, None]
    return {"n": m["n"], "accuracy": m["accuracy"], "kappa": m["cohen_kappa"], "kappa_ci_low": ci[0],
            "kappa_ci_high": ci[1], "macro_f1": m["macro_f1"]}


def per_benchmark(gold: GoldSet, pool: list[str], heldout: list[str],
                  judge_labels: dict[str, list[dict[str, Any] | None]],
                  other_labelers: dict[str, dict[str, dict[str, Any] | None]], selection: dict[str, str],
                  taxonomy: Taxonomy, *, lobo: dict[str, Any] | None = None, pool_set: GoldSet | None = None,
                  n_boot: int = PER_BENCHMARK_BOOT, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Each benchmark's own agreement on its held-out items, per axis, for the axis's selected labeler.

    Args:
        gold, pool, heldout: the gold set and its split (item ids; ``pool`` refers to ``pool_set``,
            default ``gold``), as :func:`calibration.evaluate.evaluate` takes them.
        judge_labels: item id → one label dict per judge sample (the judge's modal label is scored;
            ``{}`` when the judge was not run).
        other_labelers: labeler name → item id → label dict on the held-out items.
        selection: axis → the selected labeler (the record's ``selection``).
        lobo: the record's ``leave_one_benchmark_out`` (None: not computed).
        n_boot: bootstrap resamples of each kappa interval (at most :data:`PER_BENCHMARK_BOOT`).

    Returns:
        benchmark (:func:`benchmark_family` of the item source) → ``{"n_heldout", "n_pool", "axes"}``;
        ``axes``: axis → ``{"labeler", "n" (items scored on the axis), "kappa", "kappa_ci_low",
        "kappa_ci_high", "accuracy", "macro_f1", "lobo_kappa", "lobo_accuracy", "lobo_n"}`` (operation axes: the primary
        operation; ``kappa_undefined``: why kappa is None where it is). ``lobo_*`` are the
        leave-one-benchmark-out figures of the same labeler and benchmark, None where the record has none
        (the LLM judge and the cascade are never left out). Every benchmark of the pool or held-out
        items has an entry.
    """
    ps = pool_set or gold
    family = {i: benchmark_family(gold.sources[i]) for i in heldout}
    pool_counts = Counter(benchmark_family(ps.sources[i]) for i in pool)
    out: dict[str, dict[str, Any]] = {}
    for bench in sorted(set(family.values()) | set(pool_counts)):
        items = [i for i in heldout if family[i] == bench]
        axes = {}
        for axis in taxonomy.axes(gold.kind):
            name = selection.get(axis.name)
            if name is None:
                continue
            axes[axis.name] = _own(gold, axis, axis_items(gold, axis, items), name, judge_labels,
                                   other_labelers.get(name), min(n_boot, PER_BENCHMARK_BOOT), seed)
            axes[axis.name] |= _lobo_figure(lobo, name, axis.name, bench)
        out[bench] = {"n_heldout": len(items), "n_pool": pool_counts.get(bench, 0), "axes": axes}
    return out


def _own(gold: GoldSet, axis: AxisDef, items: list[str], labeler: str,
         judge_labels: dict[str, list[dict[str, Any] | None]], labels: dict[str, dict[str, Any] | None] | None,
         n_boot: int, seed: int) -> dict[str, Any]:
    """One labeler's agreement with gold on one axis over ``items`` (the axis's scored items of a benchmark)."""
    if labeler == "judge":
        predicted = [judge_modal(judge_labels, i, axis.name)[0] for i in items]
    else:
        predicted = [((labels or {}).get(i) or {}).get(axis.name) for i in items]
    metrics = metric_fn(axis, n_boot, seed)([gold.labels[GOLD][i].get(axis.name) for i in items], predicted)
    row = {"labeler": labeler} | summary(metrics, axis.kind)
    if row["kappa"] is None:
        m = metrics["primary"] if axis.kind == "operations" else metrics
        row["kappa_undefined"] = (m.get("undefined") or {}).get("cohen_kappa") or "undefined"
    return row


def _lobo_figure(lobo: dict[str, Any] | None, labeler: str, axis: str, bench: str) -> dict[str, Any]:
    """``lobo_kappa``, ``lobo_accuracy`` and ``lobo_n`` of one labeler, axis and benchmark from a
    leave-one-benchmark-out result."""
    entry = (((lobo or {}).get(labeler) or {}).get(axis) or {}).get("by_source", {}).get(bench) or {}
    return {"lobo_kappa": entry.get("kappa"), "lobo_accuracy": entry.get("accuracy"), "lobo_n": entry.get("n")}
