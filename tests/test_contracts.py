"""Typed contracts: the calibration record and the judge spec keep their on-disk form and their hashes."""

from __future__ import annotations

import json
import shutil

import pytest

from slicelab.calibration.records import latest_for_config, load_record, save_record
from slicelab.service.errors import ConfigError
from slicelab.service.judge import check_spec, judge_spec
from slicelab.service.labeler_factory import make_judge, per_axis_spec
from tests.conftest import ROOT

#: A record written by slicelab 0.1 (calibrate against a served judge; items cut to two).
OLD_RECORD = ROOT / "tests" / "data" / "calibration_records" / "cal-served-judge.json"

#: Configuration hashes measured on the code before the judge spec had a schema: an unchanged
#: judge must keep its hash, or no labeling run would find its calibration record again.
HASHES = {
    "embedded": ({}, "11b3e10e459c94d4"),
    "embedded, 120 tokens, greedy": ({"max_tokens": 120, "temperature": 0.0}, "6ab2b210970428d0"),
    "served": ({"judge_url": "http://127.0.0.1:9/v1", "judge_model": "m"}, "b72b1abf95cb8f2f"),
    "served, self-consistent": ({"judge_url": "http://127.0.0.1:9/v1", "judge_model": "m", "max_tokens": 200,
                                 "temperature": 0.0, "self_consistency": 5}, "45f9913930902661"),
}


def _install(record: dict, home) -> None:
    folder = home / "calibrations" / record["id"]
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps(record))


def test_a_record_written_by_an_older_version_loads_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path))
    old = json.loads(OLD_RECORD.read_text())
    _install(old, tmp_path)
    assert load_record(old["id"]) == old
    assert latest_for_config(old["judge_config_hash"], "eval") == old
    # older still: before per-axis selection, judge verdicts and labeler timings were recorded
    older = {k: v for k, v in old.items() if k not in ("selection", "judge_verdicts", "labelers", "items")}
    older["id"] = "cal-older"
    _install(older, tmp_path)
    assert load_record("cal-older") == older


def test_a_broken_record_is_refused_naming_the_file_and_field(tmp_path, monkeypatch):
    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path))
    bad = json.loads(OLD_RECORD.read_text())
    del bad["verdicts"]
    bad["split"]["n_pool"] = "fifty"
    _install(bad, tmp_path)
    with pytest.raises(ConfigError, match=r"cal-f1302a2d-20261207T043422/record.json: field (verdicts|split.n_pool)"):
        load_record(bad["id"])
    with pytest.raises(ConfigError, match="record.json"):  # a run looking for its record says which file is broken
        latest_for_config("anything", "eval")
    with pytest.raises(ConfigError, match="calibration record to save: field"):
        save_record(bad | {"id": "cal-new"})
    assert not (tmp_path / "calibrations" / "cal-new").exists()


@pytest.mark.parametrize("name", list(HASHES))
def test_an_unchanged_judge_keeps_its_configuration_hash(name):
    options, expected = HASHES[name]
    assert make_judge(judge_spec(**options)).config_hash() == expected


def test_per_axis_labelers_from_an_old_record_keep_their_configuration_hash(monkeypatch):
    monkeypatch.chdir(ROOT)  # the record names its gold set relative to the repository
    spec = per_axis_spec(judge_spec(judge_url="http://127.0.0.1:9/v1", judge_model="m"), json.loads(OLD_RECORD.read_text()))
    assert check_spec(spec) == spec
    assert make_judge(spec).config_hash() == "f3dcafaa1a471fac"


def test_judge_specs_are_checked_where_they_enter():
    assert judge_spec(judge_url="http://x/v1", judge_model="m", concurrency=4) == {
        "backend": "openai", "base_url": "http://x/v1", "model": "m", "concurrency": 4}
    with pytest.raises(ConfigError, match="field max_token"):  # a misspelled field, from a hand-edited manifest
        make_judge({"backend": "openai", "base_url": "http://x/v1", "model": "m", "max_token": 5})
    with pytest.raises(ConfigError, match="field self_consistency.k"):
        check_spec({"backend": "embedded", "self_consistency": {"k": 0, "temperature": 0.7}})
    with pytest.raises(ConfigError, match="field judge.backend"):
        check_spec({"backend": "per_axis", "judge": {"backend": "magic"}, "selection": {}, "calibration_id": "c",
                    "pool": {"gold": "g.jsonl", "holdout_frac": 0.5}})
