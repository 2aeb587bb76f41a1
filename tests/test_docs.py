"""The checked-in docs agree with the code."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_cli_reference_is_generated_from_the_current_commands():
    done = subprocess.run([sys.executable, "scripts/cli_reference.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
