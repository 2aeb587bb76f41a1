"""Output paths: the format follows the suffix, and a suffix that is no output format is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import ConfigError
from service.output import check_output


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
