"""Output paths: the format follows the suffix, and a suffix that is no output format is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slicelab.service.errors import ConfigError
from slicelab.service.output import check_output


@pytest.mark.parametrize("name,fmt,expected", [
    ("labels.parquet", None, "parquet"), ("labels.pq", None, "parquet"), ("labels.jsonl", None, "jsonl"),
    ("labels", None, "parquet"), ("labels", "jsonl", "jsonl"), ("labels.out", "jsonl", "jsonl"),
])
def test_format_from_suffix_or_flag(tmp_path: Path, name: str, fmt: str | None, expected: str):
    assert check_output(tmp_path / name, fmt) == expected


@pytest.mark.parametrize("name,fmt,message", [
    ("labels.csv", None, "suffix .csv is not an output format"),
    ("labels.parquet", "jsonl", "make them agree"),
    ("labels.parquet", "xlsx", "unknown output format"),
])
def test_bad_output_names_are_refused_naming_the_option(tmp_path: Path, name: str, fmt: str | None, message: str):
    with pytest.raises(ConfigError, match=message) as e:
        check_output(tmp_path / name, fmt)
    assert "--output" in str(e.value) or "--format" in str(e.value)


def test_ids_stay_strings_through_jsonl_output_and_join_results(tmp_path: Path, redis_url, judge_server):
    """ids "001".."003" come back as "001".."003" (not 1..3) from every output format, so results join."""
    from slicelab.service.output import read_table
    from slicelab.service.results import load_results
    from tests.conftest import run_cli

    inp = tmp_path / "in.jsonl"
    rows = [{"id": f"00{i}", "question": f"What is {i} + {i}?", "reference_answer": str(2 * i)} for i in (1, 2, 3)]
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps({"sample_id": r["id"], "run": "m", "correct": True}) + "\n" for r in rows))
    for name, fmt in (("labels.jsonl", "jsonl"), ("labels.parquet", "parquet")):
        out = tmp_path / name
        r = run_cli("label-benchmark", str(inp), "-o", str(out), "--format", fmt, "--judge-url",
                    judge_server.base_url, "--judge-model", "m", timeout_s=180)
        assert r.returncode == 0, r.stderr
        labels = read_table(out)
        assert list(labels["id"]) == ["001", "002", "003"]
        assert list(labels["reference_answer"]) == ["2", "4", "6"]  # text that looks like a number stays text
        joined = labels.merge(load_results([results]), left_on="id", right_on="sample_id")
        assert len(joined) == 3


def test_numeric_ids_read_the_same_from_every_format():
    from slicelab.service.samples import id_text

    assert [id_text(v) for v in ("001", 1, 1.0, 2.5, "x/1")] == ["001", "1", "1", "2.5", "x/1"]
