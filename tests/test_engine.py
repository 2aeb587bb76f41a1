"""The job engine with real Redis, real RQ worker processes (``slicelab worker`` subprocesses) and the
localhost test judge: dead workers, flushed Redis, run isolation, REST jobs that never get stuck."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq import Queue
from rq.registry import StartedJobRegistry

from slicelab.service.api import Settings, create_app, parse_keys
from slicelab.service.engine import liveness
from slicelab.service.output import read_table
from tests.conftest import ROOT, make_samples
from tests.judge_server import JudgeServer
from tests.test_queue import _kill_tree, cli, write_jsonl

FULL = {"Authorization": "Bearer k"}


def _wait_for(predicate, what: str, timeout_s: float = 90.0, every_s: float = 0.1):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _worker(queue: str, env: dict[str, str] | None = None, name: str | None = None) -> subprocess.Popen:
    """A ``slicelab worker`` subprocess on ``queue`` (REDIS_URL from the environment)."""
    args = [sys.executable, "-m", "slicelab.service.cli", "worker", "--queue", queue]
    if name:
        args += ["--name", name]
    return subprocess.Popen(args, cwd=ROOT, env=os.environ | (env or {}), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _stop(p: subprocess.Popen) -> str:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=30)
    return out


def _started_job(conn: Redis, queue: str):
    ids = StartedJobRegistry(queue, connection=conn).get_job_ids()
    return StartedJobRegistry(queue, connection=conn).job_class.fetch(ids[0], connection=conn) if ids else None


@pytest.fixture
def rest(tmp_path, redis_url, monkeypatch):
    """A REST app on the test Redis, its data root holding ``bench.jsonl`` (6 slow samples, 3 chunks)."""
    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SLICELAB_WORKER_DEAD_S", "6")
    data = tmp_path / "data"
    data.mkdir()
    with JudgeServer(slow_s=1.5) as srv:
        rows = [{"id": s.id, "question": s.question, "answer": s.reference_answer}
                for s in make_samples(6, marker="[[slow]]")]
        (data / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        queue = f"rest-{uuid.uuid4().hex[:6]}"
        settings = Settings(api_keys=parse_keys(["k"]), data_root=data, redis_url=redis_url, queue=queue,
                            judge={"backend": "openai", "base_url": srv.base_url, "model": "t", "transport_retries": 0})
        client = TestClient(create_app(settings))
        client.queue, client.conn, client.srv = queue, Redis.from_url(redis_url), srv
        yield client


def _finish(rest, job_id: str, timeout_s: float = 120.0) -> dict:
    """Poll the job (each poll is an engine pass) until it is finished; return its last state."""
    state = _wait_for(lambda: (lambda s: s if s["state"] == "finished" else None)(
        rest.get(f"/v1/jobs/{job_id}", headers=FULL).json()), f"job {job_id} to finish", timeout_s, 0.5)
    df = read_table(_download(rest, job_id))
    assert sorted(df["id"]) == [f"t/{i}" for i in range(6)] and set(df["status"]) == {"labeled"}
    return state


def _download(rest, job_id: str) -> Path:
    r = rest.get(f"/v1/jobs/{job_id}/results?format=jsonl", headers=FULL)
    assert r.status_code == 200, r.text
    path = Path(os.environ["SLICELAB_HOME"]) / f"{job_id}.jsonl"
    path.write_bytes(r.content)
    return path


def test_rest_job_whose_worker_is_killed_mid_chunk_finishes_on_another_worker(rest):
    job_id = rest.post("/v1/jobs", headers=FULL, json={"path": "bench.jsonl", "chunk_size": 2}).json()["id"]
    first = _worker(rest.queue)
    try:
        held = _wait_for(lambda: _started_job(rest.conn, rest.queue), "a chunk to start")
        assert rest.get(f"/v1/jobs/{job_id}", headers=FULL).json()["state"] == "running"
        first.send_signal(signal.SIGKILL)  # dies holding the chunk: RQ still lists it as started
        first.wait()
        second = _worker(rest.queue)
        try:
            state = _finish(rest, job_id)
        finally:
            _stop(second)
    finally:
        if first.poll() is None:
            first.kill()
    died = [e for e in state["requeued"] if "died" in e["reason"]]
    assert died and died[0]["job"] == held.id and held.worker_name in died[0]["reason"], json.dumps(state["requeued"])
    assert state["errors"] == [] and state["progress"]["chunks_done"] == 3


def test_rest_job_survives_redis_flushed_before_and_while_it_runs(rest):
    job_id = rest.post("/v1/jobs", headers=FULL, json={"path": "bench.jsonl", "chunk_size": 2}).json()["id"]
    rest.conn.flushdb()  # before any worker took a chunk: every job is gone
    state = rest.get(f"/v1/jobs/{job_id}", headers=FULL).json()
    assert state["state"] == "queued" and "no worker is alive" in state["note"]
    assert sum("vanished" in e["reason"] for e in state["requeued"]) == 3
    worker = _worker(rest.queue)
    try:
        _wait_for(lambda: _started_job(rest.conn, rest.queue), "a chunk to start")
        rest.conn.flushdb()  # while a chunk runs: queue, registries and job hashes are gone
        state = _finish(rest, job_id)
    finally:
        out = _stop(worker)
    assert sum("vanished" in e["reason"] for e in state["requeued"]) >= 4, state["requeued"]
    assert "Traceback" not in out, out


def test_external_worker_killed_mid_chunk_is_noticed_by_its_heartbeat(tmp_path, redis_url):
    """``--workers 0``: the chunk of a SIGKILLed external worker is enqueued again within a minute
    (default 30 s without a heartbeat), the command says that no worker is alive, and the run completes."""
    queue = f"ext-{uuid.uuid4().hex[:6]}"
    inp = write_jsonl(tmp_path / "b.jsonl", make_samples(4, marker="[[slow]]"))
    out = tmp_path / "o.parquet"
    conn = Redis.from_url(redis_url)
    with JudgeServer(slow_s=2.0) as srv:
        p = cli("label-benchmark", str(inp), "-o", str(out), "--workers", "0", "--queue", queue, "--chunk-size", "2",
                "--judge-url", srv.base_url, "--judge-model", "t", env={"SLICELAB_REPORT_S": "3"})
        victim = _worker(queue)
        helper = None
        try:
            held = _wait_for(lambda: _started_job(conn, queue), "the external worker to take a chunk")
            assert liveness.is_alive(conn, held.worker_name)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed_at = time.time()
            chunk = held.args[1]
            _wait_for(lambda: any(f"-{chunk:05d}-" in i for i in Queue(queue, connection=conn).job_ids),
                      f"chunk {chunk} to be enqueued again", 75, 0.5)
            noticed_s = time.time() - killed_at
            assert noticed_s < 60, noticed_s
            time.sleep(7.0)  # two report periods with no worker alive
            helper = _worker(queue)
            _, stderr = p.communicate(timeout=120)
        finally:
            for w in (victim, helper):
                if w is not None and w.poll() is None:
                    _stop(w)
            if p.poll() is None:
                _kill_tree(p)
    flat = " ".join(stderr.split())
    assert p.returncode == 0, stderr
    assert f"queue {queue}" in flat and redis_url in flat  # the start-up line names Redis and the queue
    assert f"no worker is alive on queue {queue}" in flat
    assert "worker(s) alive on queue" in flat
    df = read_table(out)
    assert sorted(df["id"]) == [f"t/{i}" for i in range(4)] and set(df["status"]) == {"labeled"}
    print(json.dumps({"dead_worker_noticed_s": round(noticed_s, 1)}))


def test_local_workers_take_only_their_own_runs_chunks(tmp_path, redis_url):
    with JudgeServer(slow_s=0.3) as srv:
        procs, outs = [], []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            inp = write_jsonl(tmp_path / name / "in.jsonl", make_samples(6, marker=f"[[slow]] run {name}"))
            outs.append(tmp_path / name / "out.parquet")
            procs.append(cli("label-benchmark", str(inp), "-o", str(outs[-1]), "--workers", "1", "--chunk-size", "1",
                             "--judge-url", srv.base_url, "--judge-model", "t"))
        results = [p.communicate(timeout=180) for p in procs]
    keys = []
    for p, (_, stderr), out in zip(procs, results, outs):
        assert p.returncode == 0, stderr
        [run_dir] = [m.parent for m in (out.parent / ".slicelab-runs").glob("*/manifest.json")]
        keys.append(run_dir.name)
        assert f"queue slicelab:run:{run_dir.name}" in " ".join(stderr.split())
    for key, other, out in zip(keys, reversed(keys), outs):
        log = (out.parent / ".slicelab-runs" / key / "workers.log").read_text()
        assert f"slicelab-{key}-" in log and f"slicelab-{other}-" not in log  # RQ logs each job id it runs
        assert len(read_table(out)) == 6
    conn = Redis.from_url(redis_url)
    assert not any(q.name.startswith("slicelab:run:") for q in Queue.all(connection=conn))  # run queues removed


def test_worker_stopped_normally_ends_without_a_traceback_and_leaves_no_heartbeat(redis_url):
    conn = Redis.from_url(redis_url)
    name = f"w-{uuid.uuid4().hex[:6]}"
    p = _worker("quiet-queue", name=name)
    _wait_for(lambda: conn.exists(liveness.PREFIX + name), "the first heartbeat", 30)
    assert liveness.alive_workers(conn, "quiet-queue") == [name]
    time.sleep(1.0)  # inside RQ's work loop
    out = _stop(p)
    assert p.returncode == 0 and "Traceback" not in out and "StopRequested" not in out, out
    assert not conn.exists(liveness.PREFIX + name)
    # stopped while it labels, it ends after the job, quietly too
    with JudgeServer(slow_s=1.0) as srv:
        from slicelab.service.runner import enqueue_chunk, prepare_run

        tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"quiet-{uuid.uuid4().hex[:6]}"
        tmp.mkdir()
        samples = make_samples(1, marker="[[slow]]")
        plan = prepare_run(iter(samples), input_path=write_jsonl(tmp / "in.jsonl", samples), out_path=tmp / "o.parquet",
                           kind="eval", judge={"backend": "openai", "base_url": srv.base_url, "model": "t"})
        enqueue_chunk(Queue("quiet-queue", connection=conn), plan.store, 0)
        p = _worker("quiet-queue")
        _wait_for(lambda: srv.requests, "the chunk to reach the judge", 60)
        out = _stop(p)
    assert p.returncode == 0 and "Traceback" not in out, out
    assert plan.store.done_chunks() == {0}  # the job it was on was finished first


class _NothingDone:
    """A run store in which no unit has its completion marker yet."""

    def is_done(self, unit) -> bool:
        return False

    def marker(self, unit) -> dict:
        raise KeyError(unit)


def test_a_pass_reads_the_jobs_of_all_pending_units_in_one_pipelined_round_trip(redis_url, monkeypatch):
    from rq.job import Job

    from slicelab.service.engine import Engine, Work

    conn = Redis.from_url(redis_url)
    work = Work(_NothingDone(), list(range(20)), lambda q, u: q.enqueue("builtins.print", u), lambda u: f"chunk {u}")
    engine = Engine(work, conn, f"pipeline-{uuid.uuid4().hex[:6]}")
    engine.step()  # enqueues every unit
    first = dict(engine.jobs)
    conn.delete(Job.key_for(first["7"]))  # one job vanished (as after a flush)
    commands = []
    plain = conn.execute_command
    monkeypatch.setattr(conn, "execute_command", lambda *a, **k: commands.append(a[0]) or plain(*a, **k))
    engine.step()
    assert commands == []  # no command per unit outside the pipeline
    assert {k: v for k, v in engine.jobs.items() if v != first[k]}.keys() == {"7"}
    assert [(e["unit"], e["reason"]) for e in engine.events] == [("7", "its job vanished from Redis")]
    assert engine.requeues == {}  # a vanished job does not count toward the limit
