"""Parquet results read column by column give the rows the record-by-record read gives; ``runs`` and
``scores_only`` read less, never different values."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slicelab.service.errors import ConfigError, RecordError
from slicelab.service.results import GENERATION_FIELDS, TEXT_COLUMNS, load_results
from slicelab.service.results_columnar import WHITESPACE, read_columnar

FINISH = ["stop", "EOS", " Length ", "max_tokens", "", None, "weird"]


def records(n_runs: int = 3, n: int = 40) -> list[dict]:
    """Rows with every kind of value the columnar read handles: missing text, finish_reason spellings,
    a fallback finish_reason_inferred, counts kept or replaced, set-up fields that vary."""
    out = []
    for r in range(n_runs):
        for i in range(n):
            out.append({"sample_id": f"s{i:03d}", "run": f"ckpt-{r}", "correct": (i + r) % 3 == 0,
                        "output": None if i % 11 == 0 else f"step {i} … the answer is {i % 5}",
                        "extracted_answer": None if i % 4 == 0 else str(i % 5),
                        "finish_reason": FINISH[i % len(FINISH)],
                        "finish_reason_inferred": "length" if i % 2 else None,
                        "output_chars": None if i % 3 == 0 else (-1 if i % 7 == 0 else i * 10),
                        "completion_tokens": i,
                        "prompt_style": "cot" if r < 2 else ("direct" if i % 2 else None),
                        "temperature": 0.0 if r else 0.7, "max_gen_toks": 512 + 256 * r})
    return out


def write(tmp_path: Path, rows: list[dict], *, row_group_size: int | None = None) -> tuple[Path, Path]:
    """The same rows as JSONL (read record by record) and Parquet."""
    jsonl, parquet = tmp_path / "results.jsonl", tmp_path / "results.parquet"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), parquet, row_group_size=row_group_size)
    return jsonl, parquet


def same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.drop(columns="source_file"), b.drop(columns="source_file"))
    assert a.attrs == b.attrs


def test_parquet_read_by_columns_equals_the_record_read(tmp_path):
    jsonl, parquet = write(tmp_path, records(), row_group_size=50)
    assert read_columnar(parquet, ("sample_id",), ("run",), marker_columns=GENERATION_FIELDS) is not None
    by_record, by_column = load_results(jsonl), load_results(parquet)
    same(by_record, by_column)
    assert by_column["source_line"].tolist() == list(range(1, 121))
    assert set(by_column["finish_reason"].dropna()) == {"stop", "length", "weird"}
    assert [by_column.attrs["setup"][r]["prompt_template"] for r in ("ckpt-0", "ckpt-2")] == ["cot", "direct"]


def test_runs_reads_only_those_runs(tmp_path):
    jsonl, parquet = write(tmp_path, records(n_runs=5), row_group_size=40)  # one row group per run
    for path in (jsonl, parquet):
        full = load_results(path)
        two = load_results(path, runs=["ckpt-3", "ckpt-1"])
        expected = full[full["run"].isin(["ckpt-1", "ckpt-3"])].reset_index(drop=True)
        pd.testing.assert_frame_equal(two, expected)
        assert set(two.attrs["setup"]) == {"ckpt-1", "ckpt-3"}
        assert two.attrs["setup"]["ckpt-3"] == full.attrs["setup"]["ckpt-3"]


def test_a_requested_run_that_no_file_holds_lists_the_runs_present(tmp_path):
    for path in write(tmp_path, records()):
        with pytest.raises(ConfigError, match="run 'ckpt-9' is not in the results; runs present: ckpt-0, ckpt-1, ckpt-2"):
            load_results(path, runs=["ckpt-0", "ckpt-9"])


def test_scores_only_leaves_the_text_out(tmp_path):
    for path in write(tmp_path, records()):
        full, scores = load_results(path), load_results(path, scores_only=True)
        assert scores[list(TEXT_COLUMNS)].isna().all().all()
        pd.testing.assert_frame_equal(scores.drop(columns=list(TEXT_COLUMNS)), full.drop(columns=list(TEXT_COLUMNS)))


@pytest.mark.parametrize("edit", [
    lambda rows: rows[:5] + [dict(rows[5], correct=None)] + rows[6:],          # no correct, no score
    lambda rows: rows + [dict(rows[3])],                                         # a repeated (sample, run)
    lambda rows: rows[:7] + [dict(rows[7], sample_id="  ")] + rows[8:],         # a blank id
    lambda rows: [dict(r, n_samples=1, n_correct=2 if i == 9 else int(r["correct"])) for i, r in enumerate(rows)],
])
def test_a_value_the_columns_cannot_take_gives_the_record_read_error(tmp_path, edit):
    rows = edit(records())
    jsonl, parquet = write(tmp_path, rows)
    with pytest.raises(RecordError) as by_record:
        load_results(jsonl)
    with pytest.raises(RecordError) as by_column:
        load_results(parquet)
    assert (by_column.value.line, by_column.value.field) == (by_record.value.line, by_record.value.field)
    skipped_jsonl, skipped_parquet = [], []
    same(load_results(jsonl, rejects=skipped_jsonl), load_results(parquet, rejects=skipped_parquet))
    assert [(r["line"], r["field"]) for r in skipped_jsonl] == [(r["line"], r["field"]) for r in skipped_parquet]


def test_generation_markers_are_read_record_by_record(tmp_path):
    rows = [dict(r, sample_index=k) for r in records(n_runs=1, n=10) for k in range(3)]
    jsonl, parquet = write(tmp_path, rows)
    assert read_columnar(parquet, ("sample_id",), ("run",), marker_columns=GENERATION_FIELDS) is None
    same(load_results(jsonl), load_results(parquet))
    assert set(load_results(parquet)["n_samples"]) == {3}


def test_whitespace_is_what_str_strip_removes():
    assert WHITESPACE == "".join(c for c in map(chr, range(0x110000)) if c.isspace())
