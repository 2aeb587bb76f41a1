"""``slicelab calibrate``: run the judge on a gold set's held-out items through the queue, score, gate, store."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from redis import Redis

from slicelab.calibration.evaluate import evaluate, judge_modal
from slicelab.calibration.gate import GATE_FILE, load_gate
from slicelab.calibration.gold import GOLD, GoldSet, load_gold
from slicelab.calibration.per_benchmark import benchmark_family, per_benchmark, summary
from slicelab.calibration.records import calibrations_dir, save_record
from slicelab.service import defaults
from slicelab.service.errors import ConfigError
from slicelab.service.exemplars import base_id, sample_id
from slicelab.service.judge import self_consistency_entry
from slicelab.service.labeler_factory import make_judge
from slicelab.service.labelers import KNNLabeler, StudentLabeler
from slicelab.service.runner import LocalWorkers, collect, execute, prepare_run
from slicelab.service.samples import EvalSample
from slicelab.service.taxonomy import Taxonomy, load_taxonomy

#: Cascade: the k-NN label is kept when its vote share is at least this, else the judge decides.
CASCADE_THRESHOLD = 0.8
#: Characters of item text kept per item in the record (for the disagreement review).
ITEM_TEXT_CHARS = 1500


def run_calibration(
    gold_path: Path,
    judge: dict[str, Any],
    redis_url: str,
    *,
    exemplars_path: Path | None = None,
    samples: int = 1,
    split_seed: int = 0,
    holdout_frac: float = 0.5,
    limit: int | None = None,
    workers: int = 1,
    threads_per_worker: int = 1,
    gate_path: Path = GATE_FILE,
    cascade_threshold: float = CASCADE_THRESHOLD,
    n_boot: int = 1000,
    inline: bool = False,
    lobo: bool = True,
    self_consistency: int = 0,
    sc_temperature: float = defaults.SC_TEMPERATURE,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Measure every labeler on a gold set, select one per axis, gate it, and save the record.

    The LLM judge labels the evaluation items ``samples`` times through the queue; the
    k-NN and student labelers (trained on the exemplar pool) and the cascade
    (k-NN when its vote share >= ``cascade_threshold``, else the judge) are measured
    on the same items in-process. With ``self_consistency`` k > 0 the
    self-consistent judge (``judge_sc``: k samples at ``sc_temperature``, majority
    vote per axis; Wang et al. 2023, ICLR) labels every evaluation item once more
    through the queue and is measured as its own labeler. Without ``exemplars_path`` the gold set is split
    (seeded, stratified) into pool and held-out items; with it, every gold item is
    evaluated and the pool is every item of ``exemplars_path``. No evaluation item is
    ever its own exemplar (pools exclude the item's id).

    Returns:
        The calibration record (also saved under ``$SLICELAB_HOME/calibrations/<id>/``).

    Raises:
        ConfigError: ``exemplars_path`` holds another item kind than ``gold_path``, or
            ``self_consistency`` > 1 with ``sc_temperature`` <= 0.
    """
    taxonomy = load_taxonomy()
    split = _split_gold(gold_path, exemplars_path, taxonomy, split_seed, holdout_frac, limit)
    config = make_judge(judge)
    plans, sc_labeler = _plan_runs(split, judge, config.config_hash(), samples=samples, limit=limit,
                                   self_consistency=self_consistency, sc_temperature=sc_temperature)
    if on_start:
        on_start(sum(p.n_items for p in plans))
    _label_through_queue(plans, redis_url, workers=workers, threads_per_worker=threads_per_worker,
                         inline=inline, on_progress=on_progress)
    df = collect(plans[0])
    df["item_id"] = df["id"].map(base_id)
    axes = [a.name for a in taxonomy.axes(split.gold.kind)]
    judge_labels = _judge_labels(df, axes)
    others, timing, to_judge = _cheap_and_cascade(split, taxonomy, df, judge_labels, axes, cascade_threshold)
    labelers = {"seconds_per_label": timing,
                "cascade": {"cheap": "knn", "threshold": cascade_threshold, "share_to_judge": to_judge}}
    if sc_labeler is not None:
        others["judge_sc"], timing["judge_sc"], labelers["judge_sc"] = _self_consistent_result(
            collect(plans[1]), sc_labeler, axes, self_consistency, sc_temperature)
    gate = load_gate(gate_path)
    metrics = evaluate(split.gold, split.pool, split.heldout, judge_labels, taxonomy, gate,
                       other_labelers=others, pool_set=split.pool_set, n_boot=n_boot)
    record = _record(split, config, samples=samples, gate=gate, df=df, labelers=labelers, metrics=metrics,
                     judge_labels=judge_labels, others=others, axes=axes, taxonomy=taxonomy, lobo=lobo, n_boot=n_boot)
    save_record(record)
    return record


@dataclass
class _Split:
    """A gold set split into exemplar pool and held-out items (ids), and where both came from."""

    gold_path: Path
    gold: GoldSet
    exemplars_path: Path | None
    pool_set: GoldSet
    pool: list[str]
    heldout: list[str]
    seed: int
    holdout_frac: float


def _split_gold(gold_path: Path, exemplars_path: Path | None, taxonomy: Taxonomy, split_seed: int, holdout_frac: float,
                limit: int | None) -> _Split:
    """Load the gold set and split it (seeded, stratified), or take the pool from ``exemplars_path``.

    Raises:
        ConfigError: ``exemplars_path`` holds another item kind than ``gold_path``.
    """
    gold = load_gold(gold_path, taxonomy)
    if exemplars_path:
        pool_set = load_gold(exemplars_path, taxonomy)
        if pool_set.kind != gold.kind:
            raise ConfigError(f"--exemplars {exemplars_path} holds {pool_set.kind} items, --gold holds {gold.kind}")
        pool, heldout = sorted(pool_set.items), sorted(gold.items)
    else:
        pool_set = gold
        pool, heldout = gold.split(seed=split_seed, holdout_frac=holdout_frac)
    if limit:
        heldout = heldout[:limit]
    return _Split(gold_path, gold, exemplars_path, pool_set, pool, heldout, split_seed, holdout_frac)


def _plan_runs(split: _Split, judge: dict[str, Any], config_hash: str, *, samples: int, limit: int | None,
               self_consistency: int, sc_temperature: float) -> tuple[list, Any]:
    """The label runs of a calibration: the judge on every held-out item ``samples`` times, and with
    ``self_consistency`` k > 0 the self-consistent judge once per item. Returns ``(plans, sc_labeler or None)``."""
    gold = split.gold
    items = [gold.items[i].model_copy(update={"id": sample_id(i, j)}) for i in split.heldout for j in range(samples)]
    options = {"samples": samples, "split_seed": split.seed, "holdout_frac": split.holdout_frac,
               "limit": limit, "calibration": True, "exemplars": str(split.exemplars_path or "")}

    def plan_for(spec: dict[str, Any], spec_hash: str, run_items: list):
        work = (calibrations_dir() / "runs"
                / f"{spec_hash}-{gold.sha256[:8]}-{split.pool_set.sha256[:8]}-s{split.seed}")
        return prepare_run(iter(run_items), input_path=split.gold_path, out_path=work / "labels.parquet",
                           kind=gold.kind, judge=spec, judge_config_hash=spec_hash, chunk_size=4, options=options)

    plans = [plan_for(judge, config_hash, items)]
    sc_labeler = None
    if self_consistency:
        sc_spec = judge | {"self_consistency": self_consistency_entry(self_consistency, sc_temperature)}
        sc_labeler = make_judge(sc_spec)
        plans.append(plan_for(sc_spec, sc_labeler.config_hash(), [gold.items[i] for i in split.heldout]))
    return plans, sc_labeler


def _judge_labels(df, axes: list[str]) -> dict[str, list[dict[str, Any] | None]]:
    """Item id → the judge's labels per sample (None where the sample was not labeled)."""
    judge_labels: dict[str, list] = {}
    for _, row in df.iterrows():
        labels = {a: _plain(row[a]) for a in axes} if row["status"] == "labeled" else None
        judge_labels.setdefault(row["item_id"], []).append(labels)
    return judge_labels


def _cheap_and_cascade(split: _Split, taxonomy: Taxonomy, df, judge_labels: dict[str, list], axes: list[str],
                       cascade_threshold: float) -> tuple[dict[str, dict], dict[str, float | None], dict[str, float]]:
    """The labelers without an LLM (:func:`cheap_labelers`, trained on the pool) and the cascade on the held-out items.

    Returns:
        ``(labels per labeler and item, seconds per label per labeler (the judge's too), share of items
        the cascade sent to the judge)``.
    """
    gold, pool_set = split.gold, split.pool_set
    pool_items = [pool_set.items[i] for i in split.pool]
    pool_labels = {i: pool_set.labels[GOLD][i] for i in split.pool}
    cheap, timing = {}, {"judge": _seconds_per_label(df)}
    for name, make in cheap_labelers(gold.kind).items():
        labeler = make(pool_items, pool_labels, taxonomy)
        t0 = time.perf_counter()
        cheap[name] = {i: labeler.predict(gold.items[i]) for i in split.heldout}
        timing[name] = round((time.perf_counter() - t0) / max(1, len(split.heldout)), 5)
    modal_judge = {i: {a: judge_modal(judge_labels, i, a)[0] for a in axes}
                   if any(judge_labels.get(i, [None])) else None for i in split.heldout}
    cascade, to_judge = _cascade(cheap["knn"], modal_judge, cascade_threshold, axes)
    timing["cascade"] = round(timing["knn"] + (timing["judge"] or 0.0) * to_judge["any_axis"], 5)
    others = {name: {i: lab for i, (lab, _) in by_item.items()} for name, by_item in cheap.items()}
    others["cascade"] = cascade
    return others, timing, to_judge


def _self_consistent_result(df_sc, sc_labeler, axes: list[str], k: int, temperature: float
                            ) -> tuple[dict[str, dict | None], float | None, dict[str, Any]]:
    """The self-consistent judge's labels per item, its seconds per label, and its record entry."""
    labels = {row["id"]: {a: _plain(row[a]) for a in axes} if row["status"] == "labeled" else None
              for _, row in df_sc.iterrows()}
    info = {"k": k, "temperature": temperature, "seed": sc_labeler.seed, "config_hash": sc_labeler.config_hash(),
            "status_counts": {s: int(v) for s, v in df_sc["status"].value_counts().items()},
            "output_tokens_per_label": _median(df_sc, "judge_completion_tokens")}
    return labels, _seconds_per_label(df_sc), info


def _record(split: _Split, config, *, samples: int, gate, df, labelers: dict[str, Any], metrics: dict[str, Any],
            judge_labels: dict[str, list], others: dict[str, dict], axes: list[str], taxonomy: Taxonomy, lobo: bool,
            n_boot: int) -> dict[str, Any]:
    """The calibration record (see :func:`run_calibration`); ``others``: the other labelers' held-out labels."""
    gold, config_hash = split.gold, config.config_hash()
    lobo_result = (leave_one_benchmark_out(gold, taxonomy, n_boot=min(n_boot, 200))
                   if lobo and not split.exemplars_path else None)
    selection = {a: m["selected"] for a, m in metrics.items()}
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "id": f"cal-{config_hash[:8]}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}",
        "created_at": created,
        "kind": gold.kind,
        "gold": {"path": str(split.gold_path), "sha256": gold.sha256, "n_items": len(gold.items),
                 "annotators": gold.annotators},
        "split": {"seed": split.seed, "holdout_frac": split.holdout_frac, "stratify": "source",
                  "n_pool": len(split.pool), "n_heldout": len(split.heldout),
                  "exemplars": {"path": str(split.exemplars_path), "sha256": split.pool_set.sha256}
                  if split.exemplars_path else None},
        "judge": config.config(),
        "judge_config_hash": config_hash,
        "samples": samples,
        "gate": gate.model_dump(),
        "status_counts": {k: int(v) for k, v in df["status"].value_counts().items()},
        "seconds_per_label": labelers["seconds_per_label"]["judge"],
        "output_tokens_per_label": _median(df, "judge_completion_tokens"),
        "labelers": labelers,
        "axes": metrics,
        "selection": selection,
        "verdicts": {a: m["verdict"]["verdict"] for a, m in metrics.items()},
        "judge_verdicts": {a: m["judge_verdict"]["verdict"] for a, m in metrics.items()},
        **({"judge_sc_verdicts": {a: m["labeler_verdicts"]["judge_sc"] for a, m in metrics.items()}}
           if "judge_sc" in labelers else {}),
        "leave_one_benchmark_out": lobo_result,
        "per_benchmark": per_benchmark(gold, split.pool, split.heldout, judge_labels, others, selection, taxonomy,
                                       lobo=lobo_result, pool_set=split.pool_set, n_boot=n_boot),
        "items": _items(gold, split.heldout, judge_labels, df, axes),
    }


def _label_through_queue(plans: list, redis_url: str, *, workers: int, threads_per_worker: int, inline: bool,
                         on_progress: Callable[[int], None] | None) -> None:
    """Label the pending chunks of each run plan: in this process when ``inline``, else through the queue."""
    if inline:  # inside an RQ job already (the REST API): label here instead of waiting on other workers
        from slicelab.service.chunk_labeling import label_chunk

        for plan in plans:
            for c in plan.pending:
                label_chunk(str(plan.store.root), c)
        return
    pending = [p for p in plans if p.pending]
    local = LocalWorkers(redis_url, "slicelab", workers, log_path=pending[0].store.root / "workers.log",
                         threads_per_worker=threads_per_worker) if workers and pending else None
    try:
        for plan in pending:
            execute(plan, Redis.from_url(redis_url), workers=local, on_progress=on_progress)
    finally:
        if local:
            local.stop()


def _cascade(cheap: dict[str, tuple[dict, dict]], judge: dict[str, dict | None], threshold: float,
             axes: list[str]) -> tuple[dict[str, dict | None], dict[str, float]]:
    """Cascade labels: the cheap label per axis when its confidence >= threshold, else the judge's.

    Returns:
        ``(labels per item, share of items sent to the judge per axis and for any axis)``.
    """
    out, sent = {}, {a: 0 for a in axes}
    any_sent = 0
    for i, (labels, conf) in cheap.items():
        merged, needs_judge = {}, False
        for a, v in labels.items():
            if conf.get(a, 0.0) >= threshold:
                merged[a] = v
            else:
                needs_judge = True
                sent[a] += 1
                merged[a] = (judge.get(i) or {}).get(a)
        any_sent += needs_judge
        out[i] = merged
    n = max(1, len(cheap))
    return out, {**{a: round(c / n, 4) for a, c in sent.items()}, "any_axis": round(any_sent / n, 4)}


def cheap_labelers(kind: str) -> dict[str, Callable[..., Any]]:
    """Labelers without an LLM measured beside the judge, by name: ``make(pool_items, pool_labels, taxonomy)``.

    k-NN and student learn from the pool; ``shape`` (evaluation items only) reads the
    answer shape and ``cues`` the operation cues, both ignoring the pool.
    """
    from slicelab.service.shape_labeler import CueLabeler, ShapeLabeler

    makers: dict[str, Callable[..., Any]] = {"knn": KNNLabeler, "student": StudentLabeler,
                                             "cues": lambda items, labels, taxonomy: CueLabeler(taxonomy)}
    if kind == "eval":
        makers["shape"] = lambda items, labels, taxonomy: ShapeLabeler(taxonomy)
    return makers


def leave_one_benchmark_out(gold, taxonomy, *, n_boot: int = 200) -> dict[str, Any]:
    """Metrics of the labelers without an LLM when every item is labeled from pools of other benchmarks only.

    What to expect on a benchmark no gold item comes from. Sources of one benchmark
    (:func:`benchmark_family`) are held out together. Per labeler and axis: n, accuracy,
    Cohen's kappa and its bootstrap interval over all items (each labeled once, its own
    benchmark held out), and ``by_source``: the same per held-out benchmark (interval
    from ``min(n_boot, 100)`` resamples). ``nearest_exemplar`` is the 1-NN baseline
    (gold labels of the most similar pool item, TF-IDF cosine).
    """
    from slicelab.calibration.evaluate import metric_fn
    from slicelab.service.exemplars import ExemplarIndex

    gl = gold.labels[GOLD]
    makers = cheap_labelers(gold.kind)
    preds: dict[str, dict[str, dict]] = {name: {} for name in [*makers, "nearest_exemplar"]}
    family = {i: benchmark_family(gold.sources[i]) for i in gold.items}
    sources = sorted(set(family.values()))
    for source in sources:
        test = [i for i in gold.items if family[i] == source]
        train = [i for i in gold.items if family[i] != source]
        if not train or not test:
            continue
        pool_items, pool_labels = [gold.items[i] for i in train], {i: gl[i] for i in train}
        for name, make in makers.items():
            labeler = make(pool_items, pool_labels, taxonomy)
            for i in test:
                preds[name][i] = labeler.predict(gold.items[i])[0]
        index = ExemplarIndex(pool_items, pool_labels)
        for i in test:
            preds["nearest_exemplar"][i] = index.nearest_labels(gold.items[i])
    out: dict[str, Any] = {"sources": sources}
    for name, by_item in preds.items():
        out[name] = {}
        for axis in taxonomy.axes(gold.kind):
            items = [i for i in by_item if gl[i].get(axis.name) is not None or axis.kind == "operations"]
            metric = metric_fn(axis, n_boot, 0)
            row = summary(metric([gl[i].get(axis.name) for i in items], [by_item[i].get(axis.name) for i in items]),
                          axis.kind)
            row["by_source"] = {}
            for source in sources:
                part = [i for i in items if family[i] == source]
                if part:
                    m = metric_fn(axis, min(n_boot, 100), 0)([gl[i].get(axis.name) for i in part],
                                                              [by_item[i].get(axis.name) for i in part])
                    row["by_source"][source] = summary(m, axis.kind)
            out[name][axis.name] = row
    return out


def table(record: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per axis: the selected labeler, and per labeler n, accuracy, kappa, kappa_ci_low,
    kappa_ci_high, macro_f1 and seconds_per_label (the ``--json`` output of ``slicelab calibrate``)."""
    spl = record["labelers"]["seconds_per_label"]
    return {axis: {"selected": a["selected"],
                   "labelers": {name: summary(m, a["kind"]) | {"seconds_per_label": spl.get(name)}
                                for name, m in a["labelers"].items()}}
            for axis, a in record["axes"].items()}


def _plain(v: Any) -> Any:
    """A Parquet cell as a plain value: arrays → lists, NaN → None."""
    if v is None or isinstance(v, str):
        return v
    if hasattr(v, "__len__"):
        return list(v)
    return None if isinstance(v, float) and math.isnan(v) else v


def _median(df, column: str) -> float | None:
    values = df.loc[df["status"] == "labeled", column] if column in df else []
    return float(values.median()) if len(values) else None


def _seconds_per_label(df) -> float | None:
    lat = df.loc[df["status"] == "labeled", "judge_latency_s"] if "judge_latency_s" in df else []
    return round(float(lat.median()), 3) if len(lat) else None


def _items(gold, heldout, judge_labels, df, axes) -> list[dict[str, Any]]:
    """Per held-out item: text, gold and annotator labels, judge's modal labels, confidence, raw output."""
    first = df.groupby("item_id").first()
    out = []
    for i in heldout:
        item = gold.items[i]
        text = item.question if isinstance(item, EvalSample) else item.text
        judged, conf = {}, {}
        for a in axes:
            judged[a], conf[a] = judge_modal(judge_labels, i, a)
        row = first.loc[i] if i in first.index else None
        raw = row["judge_raw_output"] if row is not None else []
        out.append({
            "id": i,
            "text": text[:ITEM_TEXT_CHARS],
            "gold": gold.labels[GOLD][i],
            "annotators": {a: gold.labels[a].get(i) for a in gold.annotators},
            "judge": judged,
            "confidence": conf,
            "status": row["status"] if row is not None else "missing",
            "raw_output": (list(raw)[-1] if len(raw) else "") if raw is not None else "",
        })
    return out
