"""``slicelab calibrate``: run the judge on a gold set's held-out items through the queue, score, gate, store."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

from redis import Redis

from calibration.evaluate import evaluate
from calibration.gate import GATE_FILE, load_gate
from calibration.gold import GOLD, load_gold
from calibration.records import calibrations_dir, save_record
from service.judge import make_judge
from service.runner import LocalWorkers, collect, execute, prepare_run
from service.samples import EvalSample
from service.taxonomy import load_taxonomy

#: Characters of item text kept per item in the record (for the disagreement review).
ITEM_TEXT_CHARS = 1500


def sample_id(item_id: str, j: int) -> str:
    """Id of the j-th judge sample of an item (``--samples k`` labels each item k times)."""
    return f"{item_id}#s{j}"


def run_calibration(
    gold_path: Path,
    judge: dict[str, Any],
    redis_url: str,
    *,
    samples: int = 1,
    split_seed: int = 0,
    holdout_frac: float = 0.5,
    limit: int | None = None,
    workers: int = 1,
    threads_per_worker: int = 1,
    gate_path: Path = GATE_FILE,
    n_boot: int = 1000,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Label the held-out split ``samples`` times, compute per-axis metrics and verdicts, save the record.

    Returns:
        The calibration record (also saved under ``$SLICELAB_HOME/calibrations/<id>/``).
    """
    taxonomy = load_taxonomy()
    gold = load_gold(gold_path, taxonomy)
    pool, heldout = gold.split(seed=split_seed, holdout_frac=holdout_frac)
    if limit:
        heldout = heldout[:limit]
    config = make_judge(judge)
    config_hash = config.config_hash()
    items = [gold.items[i].model_copy(update={"id": sample_id(i, j)}) for i in heldout for j in range(samples)]
    work = calibrations_dir() / "runs" / f"{config_hash}-{gold.sha256[:8]}-s{split_seed}"
    plan = prepare_run(iter(items), input_path=gold_path, out_path=work / "labels.parquet", kind=gold.kind,
                       judge=judge, judge_config_hash=config_hash, chunk_size=4,
                       options={"samples": samples, "split_seed": split_seed, "holdout_frac": holdout_frac,
                                "limit": limit, "calibration": True})
    if on_start:
        on_start(plan.n_items)
    local = LocalWorkers(redis_url, "slicelab", workers, log_path=plan.store.root / "workers.log",
                         threads_per_worker=threads_per_worker) if workers and plan.pending else None
    try:
        if plan.pending:
            execute(plan, Redis.from_url(redis_url), workers=local, on_progress=on_progress)
    finally:
        if local:
            local.stop()
    df = collect(plan)
    df["item_id"] = df["id"].str.rsplit("#s", n=1).str[0]
    axes = [a.name for a in taxonomy.axes(gold.kind)]
    judge_labels: dict[str, list] = {}
    for _, row in df.iterrows():
        labels = {a: _plain(row[a]) for a in axes} if row["status"] == "labeled" else None
        judge_labels.setdefault(row["item_id"], []).append(labels)
    metrics = evaluate(gold, pool, heldout, judge_labels, taxonomy, load_gate(gate_path), n_boot=n_boot)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    record = {
        "id": f"cal-{config_hash[:8]}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}",
        "created_at": created,
        "kind": gold.kind,
        "gold": {"path": str(gold_path), "sha256": gold.sha256, "n_items": len(gold.items),
                 "annotators": gold.annotators},
        "split": {"seed": split_seed, "holdout_frac": holdout_frac, "stratify": "source",
                  "n_pool": len(pool), "n_heldout": len(heldout)},
        "judge": config.config(),
        "judge_config_hash": config_hash,
        "samples": samples,
        "gate": load_gate(gate_path).model_dump(),
        "status_counts": {k: int(v) for k, v in df["status"].value_counts().items()},
        "seconds_per_label": _seconds_per_label(df),
        "axes": metrics,
        "verdicts": {a: m["verdict"]["verdict"] for a, m in metrics.items()},
        "items": _items(gold, heldout, judge_labels, df, axes),
    }
    save_record(record)
    return record


def _plain(v: Any) -> Any:
    """A Parquet cell as a plain value: arrays → lists, NaN → None."""
    if v is None or isinstance(v, str):
        return v
    if hasattr(v, "__len__"):
        return list(v)
    return None if isinstance(v, float) and math.isnan(v) else v


def _seconds_per_label(df) -> float | None:
    lat = df.loc[df["status"] == "labeled", "judge_latency_s"] if "judge_latency_s" in df else []
    return round(float(lat.median()), 3) if len(lat) else None


def _items(gold, heldout, judge_labels, df, axes) -> list[dict[str, Any]]:
    """Per held-out item: text, gold and annotator labels, judge's modal labels, confidence, raw output."""
    from calibration.evaluate import modal

    first = df.groupby("item_id").first()
    out = []
    for i in heldout:
        item = gold.items[i]
        text = item.question if isinstance(item, EvalSample) else item.text
        judged, conf = {}, {}
        for a in axes:
            judged[a], conf[a] = modal([(lab or {}).get(a) for lab in judge_labels.get(i, [None])])
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
