"""Per-benchmark own agreement in calibration records and reports, beside leave-one-benchmark-out."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from sklearn.metrics import cohen_kappa_score

from slicelab.calibration.gold import BUNDLED_ALL, GOLD, load_gold
from slicelab.calibration.offline import calibrate_offline
from slicelab.calibration.per_benchmark import MIN_HELDOUT
from slicelab.calibration.records import read_record, save_record
from slicelab.calibration.report import write_report
from slicelab.calibration.run import cheap_labelers
from slicelab.service.taxonomy import load_taxonomy

#: Bundled sources → benchmark, written out (``aime2025`` joins ``aime``).
BENCHMARK = {"aime": "aime", "aime2025": "aime", "bbh": "bbh", "gsm8k": "gsm8k", "math500": "math500"}


@pytest.fixture(scope="module")
def gold():
    return load_gold([str(p) for p in BUNDLED_ALL["eval"]])


@pytest.fixture(scope="module")
def record():
    """An offline record on the bundled evaluation gold (v1 + v2), leave-one-benchmark-out included."""
    return calibrate_offline(BUNDLED_ALL["eval"], n_boot=100)


@pytest.fixture(scope="module")
def selected(gold, record):
    """Axis → the record's selected labeler trained on the record's pool again (each labeler once)."""
    taxonomy = load_taxonomy()
    pool, _ = gold.split(seed=record["split"]["seed"], holdout_frac=record["split"]["holdout_frac"])
    makers, trained = cheap_labelers(gold.kind), {}
    for name in set(record["selection"].values()):
        trained[name] = makers[name]([gold.items[i] for i in pool], {i: gold.labels[GOLD][i] for i in pool}, taxonomy)
    return {axis: trained[name] for axis, name in record["selection"].items()}


def _predictions(gold, labeler, axis: str, items: list[str]) -> list:
    return [labeler.predict(gold.items[i])[0].get(axis) for i in items]


def test_record_counts_each_benchmarks_held_out_and_pool_items(gold, record):
    pool, held = gold.split(seed=0, holdout_frac=0.5)
    n_held = Counter(BENCHMARK[gold.sources[i]] for i in held)
    n_pool = Counter(BENCHMARK[gold.sources[i]] for i in pool)
    pb = record["per_benchmark"]
    assert set(pb) == set(record["leave_one_benchmark_out"]["sources"]) == {"aime", "bbh", "gsm8k", "math500"}
    assert {b: e["n_heldout"] for b, e in pb.items()} == dict(n_held)
    assert {b: e["n_pool"] for b, e in pb.items()} == dict(n_pool)
    for bench, entry in pb.items():
        assert list(entry["axes"]) == list(record["axes"])
        for axis, a in entry["axes"].items():
            assert a["labeler"] == record["selection"][axis]
    # over all benchmarks, an axis scores as many items as the axis metrics do
    for axis, m in record["axes"].items():
        assert sum(e["axes"][axis]["n"] for e in pb.values()) == m["n"], axis


def test_own_kappa_is_cohens_kappa_on_the_benchmarks_held_out_items(gold, record, selected):
    _, held = gold.split(seed=0, holdout_frac=0.5)
    for bench in ("bbh", "math500"):
        items = [i for i in held if BENCHMARK[gold.sources[i]] == bench]
        for axis in ("task_type", "background_condition"):
            a = record["per_benchmark"][bench]["axes"][axis]
            truth = [gold.labels[GOLD][i][axis] for i in items]
            predicted = _predictions(gold, selected[axis], axis, items)
            assert a["n"] == len(items)
            assert a["kappa"] == pytest.approx(cohen_kappa_score(truth, predicted)), (bench, axis)
            assert a["accuracy"] == pytest.approx(sum(t == p for t, p in zip(truth, predicted)) / len(items))
        # operation axes: Cohen's kappa of the primary operation
        axis = "solving_operations"
        a = record["per_benchmark"][bench]["axes"][axis]
        truth = [gold.labels[GOLD][i][axis][0] for i in items]
        predicted = [p[0] for p in _predictions(gold, selected[axis], axis, items)]
        assert a["kappa"] == pytest.approx(cohen_kappa_score(truth, predicted)), bench


def test_lobo_kappa_is_the_records_leave_one_benchmark_out_figure(record):
    lobo = record["leave_one_benchmark_out"]
    found = 0
    for bench, entry in record["per_benchmark"].items():
        for axis, a in entry["axes"].items():
            figure = ((lobo.get(a["labeler"]) or {}).get(axis) or {}).get("by_source", {}).get(bench)
            expected = figure["kappa"] if figure else None
            assert a["lobo_kappa"] == expected, (bench, axis)
            assert a["lobo_accuracy"] == (figure["accuracy"] if figure else None), (bench, axis)
            found += expected is not None
    assert found >= 4  # shape, cues, k-NN and student all have leave-one-benchmark-out figures


def test_record_without_lobo_keeps_own_agreement(gold):
    rec = calibrate_offline([BUNDLED_ALL["eval"][0]], n_boot=50, lobo=False)
    assert rec["leave_one_benchmark_out"] is None
    pb = rec["per_benchmark"]
    assert all(a["lobo_kappa"] is None for e in pb.values() for a in e["axes"].values())
    assert pb["aime"]["n_heldout"] < MIN_HELDOUT <= pb["bbh"]["n_heldout"]  # v1 holds 8 AIME items


def test_record_round_trips_and_report_shows_the_table(record, tmp_path, monkeypatch):
    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path / "home"))
    folder = save_record(record)
    assert read_record(folder / "record.json")["per_benchmark"] == json.loads(json.dumps(record["per_benchmark"]))
    paths = write_report(record, tmp_path / "report")
    page = paths["html"].read_text(encoding="utf-8")
    assert "Per benchmark: own agreement vs leave-one-benchmark-out" in page
    assert page.index("Leave-one-benchmark-out") < page.index("Per benchmark:") < page.index("Labelers per axis")
    table = re.search(r'<table class="per-benchmark">.*?</table>', page, re.S).group(0)
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S)
    pb = record["per_benchmark"]
    assert len(rows) == sum(len(e["axes"]) for e in pb.values())
    a = pb["bbh"]["axes"]["task_type"]
    row = next(r for r in rows if ">bbh<" in r and ">task_type<" in r)
    assert f"{a['kappa']:.2f} [{a['kappa_ci_low']:.2f}, {a['kappa_ci_high']:.2f}]" in row
    if a["lobo_kappa"] is not None:
        assert f"{a['lobo_kappa']:.2f}" in row and f"{a['kappa'] - a['lobo_kappa']:+.2f}" in row
    # AIME: 18 items (v1 + v2) → 9 held out, too few to judge; said in the table and above it
    assert pb["aime"]["n_heldout"] < MIN_HELDOUT
    aime = [r for r in rows if ">aime<" in r]
    assert aime and all("too few held-out items to judge" in r for r in aime)
    assert f"Too few held-out items to judge: aime ({pb['aime']['n_heldout']} held-out)" in page
    assert not any("too few held-out items" in r for r in rows if ">bbh<" in r)

    md = paths["md"].read_text(encoding="utf-8")
    assert "## Per benchmark: own agreement vs leave-one-benchmark-out" in md
    assert "| benchmark | axis | n held-out, (scored on the axis) | labeler, selected for the axis |" in md
    # one class on a benchmark's axis: κ undefined there, the row says to compare accuracies
    gsm = next(ln for ln in md.splitlines() if ln.startswith("| gsm8k | task_type |"))
    assert pb["gsm8k"]["axes"]["task_type"]["kappa"] is None and "compare accuracies" in gsm
    line = next(ln for ln in md.splitlines() if ln.startswith("| bbh | task_type |"))
    assert f"{a['kappa']:.2f} [{a['kappa_ci_low']:.2f}, {a['kappa_ci_high']:.2f}]" in line
    assert sum("too few held-out items to judge" in ln for ln in md.splitlines() if ln.startswith("| aime |")) \
        == len(pb["aime"]["axes"])
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["per_benchmark"] == json.loads(json.dumps(pb))


def test_record_without_per_benchmark_still_loads_and_renders(record, tmp_path, monkeypatch):
    old = {k: v for k, v in json.loads(json.dumps(record)).items() if k != "per_benchmark"}
    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path / "home"))
    assert "per_benchmark" not in read_record(save_record(old) / "record.json")
    paths = write_report(old, tmp_path / "report")
    page = paths["html"].read_text(encoding="utf-8")
    assert "predates per-benchmark agreement" in page and 'class="per-benchmark"' not in page
    assert "predates per-benchmark agreement" in paths["md"].read_text(encoding="utf-8")
