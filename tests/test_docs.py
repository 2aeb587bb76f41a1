"""The checked-in docs agree with the code."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_cli_reference_is_generated_from_the_current_commands():
    done = subprocess.run([sys.executable, "scripts/cli_reference.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout


def _block_after(doc: str, heading: str) -> list[str]:
    """The commands of the first ```bash block after ``heading``."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    rest = text[text.index(heading):]
    start = rest.index("```bash\n") + len("```bash\n")
    return [line for line in rest[start:rest.index("```", start)].splitlines() if line.strip()]


def test_loop_example_from_harness_logs_runs_as_written(tmp_path):
    import shlex

    import pandas as pd

    lines = _block_after("docs/loop.md", "## From evaluation-harness logs")
    assert [line.split()[:2] for line in lines] == [[".venv/bin/slicelab", "diagnose"], [".venv/bin/slicelab", "ingest"]]
    outs = []
    for line in lines:
        args = [str(tmp_path / a[len("out/"):]) if a.startswith("out/") else a for a in shlex.split(line)[1:]]
        done = subprocess.run([sys.executable, "-m", "slicelab.service.cli", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr + done.stdout
        outs.append(done.stdout)
    assert "verdict: broad_regression" in outs[0] and "9 lost, 0 gained" in outs[0]
    assert "31 samples in 3 runs, 3 tasks" in outs[1]
    assert len(pd.read_parquet(tmp_path / "logs_results.parquet")) == 31
