"""Calibrate the labelers that need no LLM (k-NN, student, shape) on gold sets, with no judge call.

The record has the shape of a ``slicelab calibrate`` record (per axis metrics, alt-test,
selection, verdicts, leave-one-benchmark-out), with ``judge`` set to None: the judge was
not measured, so it is left out of the choice and an axis it labels is ``ungated``.
:func:`bundled_record` builds one from the bundled gold sets (v1 and v2) and
keeps it under ``$SLICELAB_HOME/calibrations/``: a labeling run with no calibration of
its own uses it to pick, per axis, a labeler without an LLM that passed the gate.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from slicelab.calibration.evaluate import evaluate, gated_metrics, select_labeler
from slicelab.calibration.gate import GATE_FILE, combine, load_gate, verdict
from slicelab.calibration.gold import BUNDLED_ALL, GOLD, load_gold
from slicelab.calibration.per_benchmark import per_benchmark
from slicelab.calibration.records import calibrations_dir, read_record, save_record
from slicelab.calibration.run import cheap_labelers, leave_one_benchmark_out
from slicelab.service.taxonomy import load_taxonomy

#: Id prefix of records built from the bundled gold sets (one per kind and gold digest).
BUNDLED_PREFIX = "bundled"


def calibrate_offline(gold_paths: list[str | Path], *, split_seed: int = 0, holdout_frac: float = 0.5,
                      gate_path: Path = GATE_FILE, n_boot: int = 1000, lobo: bool = True,
                      record_id: str | None = None) -> dict[str, Any]:
    """Measure the labelers without an LLM on the held-out split of ``gold_paths`` (merged), select and gate.

    Returns:
        A calibration record (not saved): ``kind``, ``gold``, ``split``, ``judge`` (None),
        ``axes`` (:func:`calibration.evaluate.evaluate`), ``selection``, ``verdicts``,
        ``judge_verdicts``, ``labelers.seconds_per_label``, ``leave_one_benchmark_out`` and ``per_benchmark``
        (:func:`calibration.per_benchmark.per_benchmark`).
    """
    taxonomy = load_taxonomy()
    gold = load_gold([str(p) for p in gold_paths], taxonomy)
    pool, heldout = gold.split(seed=split_seed, holdout_frac=holdout_frac)
    pool_items = [gold.items[i] for i in pool]
    pool_labels = {i: gold.labels[GOLD][i] for i in pool}
    others, timing = {}, {}
    for name, make in cheap_labelers(gold.kind).items():
        labeler = make(pool_items, pool_labels, taxonomy)
        t0 = time.perf_counter()
        others[name] = {i: labeler.predict(gold.items[i])[0] for i in heldout}
        timing[name] = round((time.perf_counter() - t0) / max(1, len(heldout)), 6)
    gate = load_gate(gate_path)
    metrics = evaluate(gold, pool, heldout, {}, taxonomy, gate, other_labelers=others, n_boot=n_boot)
    for axis, m in metrics.items():  # the judge was not run: keep it out of the choice
        for key in ("labelers", "alt_test", "labeler_verdicts"):
            m[key].pop("judge", None)
        m["selected"] = select_labeler(m["labelers"], m["kind"])
        m["verdict"] = combine(verdict(gated_metrics(m["labelers"][m["selected"]], m["kind"]), gate.threshold(axis)),
                               m["alt_test"].get(m["selected"]), gate.require)
    selection = {a: m["selected"] for a, m in metrics.items()}
    lobo_result = leave_one_benchmark_out(gold, taxonomy, n_boot=min(n_boot, 200)) if lobo else None
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "id": record_id or f"offline-{gold.kind}-{gold.sha256[:8]}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}",
        "created_at": created,
        "kind": gold.kind,
        "gold": {"path": [str(p) for p in gold_paths], "sha256": gold.sha256, "n_items": len(gold.items),
                 "annotators": gold.annotators},
        "split": {"seed": split_seed, "holdout_frac": holdout_frac, "stratify": "source",
                  "n_pool": len(pool), "n_heldout": len(heldout), "exemplars": None},
        "judge": None,
        "judge_config_hash": None,
        "gate": gate.model_dump(),
        "labelers": {"seconds_per_label": timing, "cascade": {"cheap": "knn", "threshold": None,
                                                              "share_to_judge": {"any_axis": 0.0}}},
        "axes": metrics,
        "selection": selection,
        "verdicts": {a: m["verdict"]["verdict"] for a, m in metrics.items()},
        "judge_verdicts": {a: "ungated" for a in metrics},  # not measured here
        "leave_one_benchmark_out": lobo_result,
        "per_benchmark": per_benchmark(gold, pool, heldout, {}, others, selection, taxonomy, lobo=lobo_result,
                                       n_boot=n_boot),
    }


def bundled_record(kind: str, *, n_boot: int = 1000) -> dict[str, Any]:
    """The record of the labelers without an LLM on the bundled gold sets of ``kind``, built on first use.

    Stored as ``$SLICELAB_HOME/calibrations/bundled-<kind>-<digest>/record.json``; later calls
    read it back. The digest covers the gold files, the gate file and the code version, so new
    gold, thresholds or labeler code give a new record.
    """
    import hashlib

    from slicelab.service.store import code_version

    paths = BUNDLED_ALL[kind]
    digest = hashlib.sha256(b"".join(Path(p).read_bytes() for p in paths) + GATE_FILE.read_bytes()
                            + code_version().encode()).hexdigest()
    record_id = f"{BUNDLED_PREFIX}-{kind}-{digest[:12]}"
    path = calibrations_dir() / record_id / "record.json"
    if path.is_file():
        return read_record(path)
    record = calibrate_offline(paths, n_boot=n_boot, lobo=False, record_id=record_id)
    save_record(record)
    return record
