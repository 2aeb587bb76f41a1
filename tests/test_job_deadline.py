"""A chunk that runs out of its RQ job time keeps what it labeled; the rest is judge_error, nothing resent."""

from __future__ import annotations

import json

import pytest

from slicelab.service.errors import ConfigError
from slicelab.service.job_deadline import chunk_job_timeout, timed_out_error
from slicelab.service.output import read_table
from tests.conftest import make_samples, run_cli


def test_the_job_timeout_is_sized_from_chunk_size_request_timeout_and_retries():
    spec = {"backend": "openai", "base_url": "http://x/v1", "model": "m", "concurrency": 4,
            "request_timeout_s": 30.0, "transport_retries": 1, "max_attempts": 2}
    # ceil(16 / 4) rounds x 3 attempts x (30 s x 2 tries + 20 s backoff) + 1800 s pause + 60 s
    assert chunk_job_timeout(spec, 16, env={}) == 4 * 3 * 80 + 1800 + 60
    assert chunk_job_timeout(spec, 32, env={}) > chunk_job_timeout(spec, 16, env={})
    assert chunk_job_timeout({"backend": "embedded"}, 16, env={}) == 3600
    assert chunk_job_timeout(spec, 16, env={"SLICELAB_JOB_TIMEOUT_S": "90"}) == 90
    with pytest.raises(ConfigError, match="SLICELAB_JOB_TIMEOUT_S"):
        chunk_job_timeout(spec, 16, env={"SLICELAB_JOB_TIMEOUT_S": "soon"})


def test_a_chunk_past_its_job_timeout_keeps_its_labels_and_resends_nothing(tmp_path, redis_url, judge_server):
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": s.id, "question": s.question}) + "\n" for s in make_samples(20)))
    out = tmp_path / "labels.parquet"
    args = ("label-benchmark", str(inp), "-o", str(out), "--chunk-size", "20", "--judge-url",
            judge_server.base_url, "--judge-model", "m", "--judge-concurrency", "2")
    judge_server.delay_s = 3.0  # 20 items, 2 at a time, 3 s each: 30 s of work for a 25 s job
    r = run_cli(*args, env={"SLICELAB_JOB_TIMEOUT_S": "25"}, timeout_s=240)
    assert r.returncode == 0, r.stderr
    df = read_table(out)
    assert len(df) == 20 and df["id"].is_unique
    labeled, late = df[df["status"] == "labeled"], df[df["status"] == "judge_error"]
    assert 2 <= len(labeled) <= 16 and len(late) >= 4 and len(labeled) + len(late) == 20
    assert set(late["error"]) == {timed_out_error(25.0)}
    assert len(judge_server.requests) <= len(labeled) + 2  # at most the cancelled in-flight pair more: no resend
    # a re-run with time enough labels the rest; the labels already made come from the cache
    judge_server.delay_s = 0.0
    before = len(judge_server.requests)
    r = run_cli(*args, timeout_s=180)
    assert r.returncode == 0, r.stderr
    again = read_table(out).set_index("id")
    assert set(again["status"]) == {"labeled"}
    assert again.loc[list(labeled["id"]), "cache_hit"].all()
    assert len(judge_server.requests) - before == len(late)
