"""Quiet, honest terminals: slices says why no axis is used, summaries fit 100 columns, diagnose
prints words (not Python dicts), progress shows in a log file."""

from __future__ import annotations

import io
import json

import pandas as pd
from rich.console import Console
from typer.testing import CliRunner

from slicelab.service.cli import app
from slicelab.service.cli.common import SUMMARY_WIDTH, summary_console
from slicelab.service.cli.labeling import _print_summary
from slicelab.service.cli.loop_print import action_text, print_diagnosis
from slicelab.service.cli.progress import LineProgress, progress_bar
from tests.loop_data import math_labels


def test_slices_without_any_passing_axis_says_why_and_names_allow_ungated(tmp_path):
    ungated = tmp_path / "ungated.parquet"
    df = math_labels().copy()
    df[[c for c in df.columns if c.startswith("gate_")]] = "ungated"
    df.to_parquet(ungated)
    res = CliRunner().invoke(app, ["slices", str(ungated), "-o", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    said = " ".join(res.stderr.split())
    assert "every label axis was left out" in said and "--allow-ungated" in said
    assert json.loads((tmp_path / "s.json").read_text())["axes_used"] == []
    # with passing axes, no such line
    res = CliRunner().invoke(app, ["slices", str(tmp_path / "ungated.parquet"), "-o", str(tmp_path / "t.json"),
                                   "--allow-ungated"])
    assert res.exit_code == 0 and "every label axis was left out" not in res.stderr


def _lines(console: Console) -> list[str]:
    return console.file.getvalue().splitlines()


def test_label_summary_fits_100_columns_and_keeps_every_label(tmp_path, monkeypatch):
    long = "a_very_long_label_name_of_some_axis"
    df = pd.DataFrame({"status": ["labeled"] * 3, "task": ["a_task_with_a_long_name"] * 3,
                       **{a: [f"{long}_{a}"] * 3 for a in ("task_type", "background_condition", "primary_operation",
                                                            "output_constraint", "failure_mode")}})
    out = Console(file=io.StringIO(), width=SUMMARY_WIDTH)
    monkeypatch.setattr("slicelab.service.cli.labeling.summary_console", lambda: out)
    _print_summary(df, tmp_path / "labels.parquet")
    lines = _lines(out)
    assert max(len(line) for line in lines) <= SUMMARY_WIDTH
    assert "…" not in "\n".join(lines)  # nothing cut off: long labels wrap inside their column
    column = [line.split("│")[4].strip() for line in lines if line.count("│") == 9]  # the task_type cells
    assert f"{long}_task_type" in "".join(column)


def test_summary_console_is_100_columns_in_a_pipe():
    assert summary_console().width == SUMMARY_WIDTH  # pytest's stdout is not a terminal


def test_diagnose_prints_words_not_python_dicts():
    result = {"verdict": "data_intervention", "summary": "weak in algebra", "localisation": {"statement": "local"},
              "fired_rules": [{"id": "r1", "kind": "data"}], "checks": [], "setup": {}, "insufficient_evidence": [],
              "interventions": [{"rule_id": "r1", "operations": ["algebra"], "n_weak_slices": 2,
                                 "samples_in_weak_slices": 40,
                                 "action": {"type": "targeted_sampling", "token_budget": 20000000}}]}
    out = Console(file=io.StringIO(), width=SUMMARY_WIDTH, soft_wrap=True)
    print_diagnosis(result, out)
    text = out.file.getvalue()
    assert "{" not in text and "'" not in text
    assert "action targeted_sampling (token budget 20,000,000)" in text
    assert action_text("keep") == "keep"


def test_progress_in_a_log_file_is_a_plain_line_every_n_seconds(monkeypatch):
    log = Console(file=io.StringIO(), width=SUMMARY_WIDTH)
    monkeypatch.setenv("SLICELAB_PROGRESS_EVERY_S", "0")
    with progress_bar(log) as bar:
        assert isinstance(bar, LineProgress)
        task = bar.add_task("labeling", total=4)
        bar.advance(task, 1)
        bar.update(task, description="labeling (judge paused)")
        bar.advance(task, 3)
    lines = _lines(log)
    assert lines[0].startswith("labeling 1/4 (25%) 0:00:0")
    assert lines[1].startswith("labeling (judge paused) 4/4 (100%)") and len(lines) == 3  # and a last line
    monkeypatch.setenv("SLICELAB_PROGRESS_EVERY_S", "3600")
    quiet = Console(file=io.StringIO(), width=SUMMARY_WIDTH)
    with progress_bar(quiet) as bar:
        task = bar.add_task("label rows", total=None)
        for _ in range(100):
            bar.advance(task, 5)
    assert _lines(quiet) == [_lines(quiet)[0]] and _lines(quiet)[0].startswith("label rows 500 ")  # only the last
