"""The queue path with real Redis and real RQ workers (burst in-process, forked, and CLI subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from redis import Redis
from rq import Queue, SimpleWorker, Worker

from slicelab.service.output import read_table
from slicelab.service.runner import enqueue_chunk, prepare_run
from slicelab.service.samples import Rejected
from tests.conftest import ROOT, make_samples

STATUSES = {"labeled", "judge_error", "format_error", "truncated", "input_too_long", "rejected_input"}


def write_jsonl(path: Path, samples, extra_lines=()) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps({"id": s.id, "task": s.task, "question": s.question,
                                "reference_answer": s.reference_answer, "model_output": s.model_output,
                                "correct": s.correct}) + "\n")
        for line in extra_lines:
            f.write(line + "\n")
    return path


def plan_for(tmp_path, server, samples, chunk_size=2):
    inp = write_jsonl(tmp_path / "in.jsonl", samples)
    spec = {"backend": "openai", "base_url": server.base_url, "model": "test-judge", "transport_retries": 0}
    return prepare_run(iter(samples), input_path=inp, out_path=tmp_path / "out.parquet", kind="eval",
                       judge=spec, chunk_size=chunk_size)


@pytest.mark.parametrize("worker_class", [SimpleWorker, Worker], ids=["burst-in-process", "forked-work-horse"])
def test_chunks_run_through_real_rq_workers(tmp_path, redis_url, judge_server, worker_class):
    samples = make_samples(5, wrong_every=2)
    plan = plan_for(tmp_path, judge_server, samples)
    assert (plan.n_items, plan.n_chunks, plan.pending) == (5, 3, [0, 1, 2])
    conn = Redis.from_url(redis_url)
    q = Queue("slicelab-test", connection=conn)
    jobs = [enqueue_chunk(q, plan.store, c) for c in plan.pending]
    payload = jobs[0].args
    assert payload == (str(plan.store.root), 0)  # ids and paths only, never clients or data
    worker_class([q], connection=conn).work(burst=True)
    assert all(j.get_status(refresh=True) == "finished" for j in jobs)
    assert plan.store.done_chunks() == {0, 1, 2}
    df = plan.store.read_parts()
    assert sorted(df["id"]) == sorted(s.id for s in samples)
    assert set(df["status"]) == {"labeled"}
    wrong = df[df["correct"] == False]  # noqa: E712
    assert len(wrong) == 3 and wrong["failure_mode"].notna().all()
    assert df[df["correct"].isna()]["failure_mode"].isna().all()
    # idempotent: a chunk already done is skipped, not labeled again
    n_requests = len(judge_server.requests)
    again = enqueue_chunk(q, plan.store, 1)
    worker_class([q], connection=conn).work(burst=True)
    assert again.return_value()["skipped"] is True and len(judge_server.requests) == n_requests


def test_same_run_is_found_again_and_only_pending_chunks_remain(tmp_path, judge_server):
    samples = make_samples(4)
    plan = plan_for(tmp_path, judge_server, samples)
    plan.store.write_part(0, [{"id": "t/0", "status": "labeled"}, {"id": "t/1", "status": "labeled"}])
    again = plan_for(tmp_path, judge_server, samples)
    assert again.resumed and again.store.root == plan.store.root and again.pending == [1]


def cli(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "slicelab.service.cli", *args], cwd=ROOT,
                            env=os.environ | (env or {}), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_cli_label_benchmark_end_to_end_with_bad_records(tmp_path, redis_url, judge_server):
    samples = make_samples(7, wrong_every=3)
    samples[2] = samples[2].model_copy(update={"question": samples[2].question + " [[invalid]]"})
    samples[4] = samples[4].model_copy(update={"question": samples[4].question + " [[error500]]"})
    inp = write_jsonl(tmp_path / "bench.jsonl", samples,
                      extra_lines=['{"id": "bad/1", "question": ', '{"id": "bad/2", "answer": "no question"}'])
    out = tmp_path / "labels.parquet"
    p = cli("label-benchmark", str(inp), "-o", str(out), "--workers", "2", "--chunk-size", "3",
            "--judge-url", judge_server.base_url, "--judge-model", "test-judge", "--max-attempts", "2")
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr
    df = read_table(out)
    assert len(df) == 9 and df["id"].is_unique
    assert set(df["status"]) <= STATUSES
    by_id = df.set_index("id")["status"].to_dict()
    assert by_id["t/2"] == "format_error" and by_id["t/4"] == "judge_error"
    assert by_id["bad/2"] == "rejected_input" and list(by_id.values()).count("rejected_input") == 2
    rejected = df[df["status"] == "rejected_input"].set_index("source_line")
    assert sorted(rejected.index) == [8, 9]
    assert df["source_line"].is_monotonic_increasing  # rows in input order, rejected ones included
    assert "question" in rejected.loc[9, "error"] and rejected.loc[8, "error"]
    assert len((tmp_path / ".slicelab-runs").glob("*/rejects.jsonl").__next__().read_text().splitlines()) == 2
    assert "label counts by task" in stdout and "wrote 9 rows" in stdout
    row = df.set_index("id").loc["t/0"]
    assert isinstance(row["solving_operations"], list) and isinstance(row["judge_raw_output"], list)
    assert row["taxonomy_version"] == "v1" and row["prompt_ref"] == "eval-label@1" and row["request_hash"]
    assert row["judge_backend"] == "openai" and row["code_version"].startswith("slicelab ")
    assert len(df.set_index("id").loc["t/2", "judge_raw_output"]) == 2
    # jsonl output round-trips the same rows
    out2 = tmp_path / "labels.jsonl"
    p = cli("label-benchmark", str(inp), "-o", str(out2), "--format", "jsonl", "--workers", "1", "--chunk-size", "3",
            "--judge-url", judge_server.base_url, "--judge-model", "test-judge", "--max-attempts", "2")
    assert p.wait(timeout=120) == 0
    assert sorted(read_table(out2)["id"]) == sorted(df["id"])


def _kill_tree(proc: subprocess.Popen) -> None:
    parent = psutil.Process(proc.pid)
    for child in parent.children(recursive=True):
        child.send_signal(signal.SIGKILL)
    parent.send_signal(signal.SIGKILL)
    proc.wait()


def _wait_for(predicate, timeout_s=60.0):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_killed_run_resumes_with_no_duplicate_and_no_missing_rows(tmp_path, redis_url):
    from tests.judge_server import JudgeServer

    samples = make_samples(8, marker="[[slow]]")
    inp = write_jsonl(tmp_path / "bench.jsonl", samples)
    out = tmp_path / "labels.parquet"
    with JudgeServer(slow_s=0.4) as srv:
        args = ("label-benchmark", str(inp), "-o", str(out), "--workers", "2", "--chunk-size", "1",
                "--judge-url", srv.base_url, "--judge-model", "test-judge")
        p = cli(*args)
        parts = tmp_path / ".slicelab-runs"
        assert _wait_for(lambda: len(list(parts.rglob("*.done"))) >= 2), "no chunk finished"
        _kill_tree(p)  # SIGKILL the command and its workers mid-run
        done_before = len(list(parts.rglob("*.done")))
        assert 2 <= done_before < 8
        n_requests = len(srv.requests)
        p = cli(*args)
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        assert f"({done_before} already done)" in stderr.replace("\n", " ")
        df = read_table(out)
        assert sorted(df["id"]) == sorted(s.id for s in samples) and df["id"].is_unique
        assert set(df["status"]) == {"labeled"}
        # finished chunks were not labeled again (the killed in-flight ones may be redone)
        assert len(srv.requests) - n_requests <= 8 - done_before + 2


def test_sigterm_stops_the_command_and_its_local_workers(tmp_path, redis_url):
    from tests.judge_server import JudgeServer

    inp = write_jsonl(tmp_path / "bench.jsonl", make_samples(8, marker="[[slow]]"))
    with JudgeServer(slow_s=0.5) as srv:
        p = cli("label-benchmark", str(inp), "-o", str(tmp_path / "labels.parquet"), "--workers", "2",
                "--chunk-size", "1", "--judge-url", srv.base_url, "--judge-model", "test-judge")
        assert _wait_for(lambda: len(srv.requests) >= 1), "no request reached the judge"
        workers = psutil.Process(p.pid).children(recursive=True)
        assert workers
        p.send_signal(signal.SIGTERM)
        _, stderr = p.communicate(timeout=60)
        assert p.returncode == 130 and "re-run the same command to resume" in stderr.replace("\n", " ")
        gone, alive = psutil.wait_procs(workers, timeout=15)
        assert not alive, [w.cmdline() for w in alive]


def test_worker_killed_during_run_is_replaced_and_its_chunk_redone(tmp_path, redis_url):
    from tests.judge_server import JudgeServer

    samples = make_samples(6, marker="[[slow]]")
    inp = write_jsonl(tmp_path / "bench.jsonl", samples)
    out = tmp_path / "labels.parquet"
    with JudgeServer(slow_s=0.5) as srv:
        p = cli("label-benchmark", str(inp), "-o", str(out), "--workers", "1", "--chunk-size", "2",
                "--judge-url", srv.base_url, "--judge-model", "test-judge")
        assert _wait_for(lambda: len(srv.requests) >= 1)
        workers = psutil.Process(p.pid).children()
        assert len(workers) == 1
        workers[0].send_signal(signal.SIGKILL)  # the worker dies mid-chunk; the command goes on
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
    df = read_table(out)
    assert sorted(df["id"]) == sorted(s.id for s in samples) and df["id"].is_unique
    assert set(df["status"]) == {"labeled"}


def test_embedded_redis_serves_a_real_rq_worker(tmp_path, judge_server):
    from slicelab.service.redis_conn import start_embedded

    url = start_embedded(tmp_path / "redis")
    assert url.startswith("unix://")
    conn = Redis.from_url(url)
    assert conn.ping()
    plan = plan_for(tmp_path, judge_server, make_samples(2))
    q = Queue("slicelab-test", connection=conn)
    enqueue_chunk(q, plan.store, 0)
    SimpleWorker([q], connection=conn).work(burst=True)
    assert plan.store.done_chunks() == {0}
    assert conn.config_get("appendonly")["appendonly"] == "yes"
    import psutil

    from slicelab.service.redis_conn import _EMBEDDED, _shutdown_embedded

    pid = _EMBEDDED[-1].pid
    _shutdown_embedded()  # leave no server behind, although clients are still connected
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_explicit_unreachable_redis_url_is_refused(monkeypatch):
    from slicelab.service.errors import ConfigError
    from slicelab.service.redis_conn import resolve_redis_url

    monkeypatch.setenv("REDIS_URL", "redis://user:secret@127.0.0.1:9/0")
    with pytest.raises(ConfigError) as e:
        resolve_redis_url()
    assert "secret" not in str(e.value) and "does not answer" in str(e.value)


def _run(*args, timeout=120):
    p = cli(*args)
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def test_unicode_line_separators_stay_inside_their_record(tmp_path, redis_url, judge_server):
    weird = "Is A\u2028B\u2029C\u0085D the same as 名前 🙂 שלום \x1c? [[valid]]"
    inp = tmp_path / "u.jsonl"
    inp.write_text("".join(json.dumps({"id": f"u/{i}", "question": q, "answer": "x"}, ensure_ascii=False) + "\n"
                           for i, q in enumerate(["first", weird, "third"])), encoding="utf-8")
    out = tmp_path / "u.parquet"
    rc, _, err = _run("label-benchmark", str(inp), "-o", str(out), "--judge-url", judge_server.base_url,
                      "--judge-model", "t")
    assert rc == 0, err
    df = read_table(out).set_index("id")
    assert list(df["status"]) == ["labeled"] * 3 and df.loc["u/1", "question"] == weird


def test_rerun_retries_transient_judge_errors(tmp_path, redis_url, monkeypatch):
    from tests.judge_server import JudgeServer

    inp = write_jsonl(tmp_path / "b.jsonl", make_samples(3))
    out = tmp_path / "b.parquet"
    monkeypatch.setenv("SLICELAB_JUDGE_MAX_PAUSE_S", "0")  # no pause: an outage ends in judge_error at once
    with JudgeServer() as srv:
        url = srv.base_url
        srv.outage = 503
        args = ("label-benchmark", str(inp), "-o", str(out), "--judge-url", url, "--judge-model", "t")
        rc, _, err = _run(*args)  # the server fails: every sample is a judge_error
        assert rc == 0, err
        assert set(read_table(out)["status"]) == {"judge_error"}
        srv.outage = None  # the server is back
        rc, _, err = _run(*args)
    assert rc == 0, err
    df = read_table(out)
    assert len(df) == 3 and set(df["status"]) == {"labeled"}


@pytest.mark.parametrize("content", ["", "\n\n", '{"id": "a", "answer": "no question"}\n'],
                         ids=["empty", "blank-lines", "all-rejected"])
def test_files_with_nothing_to_label_still_give_a_table(tmp_path, redis_url, judge_server, content):
    inp = tmp_path / "e.jsonl"
    inp.write_text(content)
    out = tmp_path / "e.parquet"
    rc, stdout, err = _run("label-benchmark", str(inp), "-o", str(out), "--judge-url", judge_server.base_url,
                           "--judge-model", "t")
    assert rc == 0, err
    df = read_table(out)
    assert "status" in df.columns and "task_type" in df.columns
    assert list(df["status"]) == (["rejected_input"] if "answer" in content else [])
    # the same columns as a table of labeled rows, whatever was rejected
    from slicelab.service.output import empty_table
    from slicelab.service.taxonomy import load_taxonomy

    assert list(df.columns)[:len(empty_table(load_taxonomy(), "eval").columns)] == list(
        empty_table(load_taxonomy(), "eval").columns)
    if "answer" in content:
        assert "--text-field" in df["error"].iloc[0] and "answer" in df["error"].iloc[0]


def test_output_rows_follow_input_order_with_rejected_rows_in_place(tmp_path, redis_url, judge_server):
    inp = tmp_path / "mixed.jsonl"
    inp.write_text('{"id": "a", "question": "q1"}\n{bad json\n{"id": "c", "question": "q3"}\n'
                   '{"id": "d"}\n{"id": "e", "question": "q5"}\n')
    out = tmp_path / "mixed.parquet"
    rc, _, err = _run("label-benchmark", str(inp), "-o", str(out), "--judge-url", judge_server.base_url,
                      "--judge-model", "t", "--chunk-size", "1", "--workers", "2")
    assert rc == 0, err
    df = read_table(out)
    assert list(df["source_line"]) == [1, 2, 3, 4, 5]
    assert list(df["status"]) == ["labeled", "rejected_input", "labeled", "rejected_input", "labeled"]


def test_bad_output_paths_fail_before_any_work(tmp_path, judge_server):
    inp = write_jsonl(tmp_path / "b.jsonl", make_samples(1))
    judge = ("--judge-url", judge_server.base_url, "--judge-model", "t")
    cases = [
        (("-o", str(tmp_path)), "is a folder"),
        (("-o", str(tmp_path / "x.jsonl"), "--format", "parquet"), "make them agree"),
        (("-o", str(inp)), "is the input file"),
        (("-o", str(tmp_path / "x.parquet"), "--format", "xml"), "allowed: parquet, jsonl"),
    ]
    for extra, message in cases:
        rc, _, err = _run("label-benchmark", str(inp), *extra, *judge)
        assert rc == 2 and message in " ".join(err.split()), (extra, err)
        assert "Traceback" not in err
    assert not (tmp_path / ".slicelab-runs").exists()


def test_output_format_follows_the_suffix_and_arrays_in_jsonl_are_read(tmp_path, redis_url, judge_server):
    inp = tmp_path / "arr.jsonl"
    inp.write_text(json.dumps([{"id": "a", "question": "q1"}, {"id": "b", "question": "q2"}], indent=2))
    out = tmp_path / "o.jsonl"
    rc, _, err = _run("label-benchmark", str(inp), "-o", str(out), "--judge-url", judge_server.base_url,
                      "--judge-model", "t")
    assert rc == 0, err
    assert out.read_text().startswith("{")  # JSONL, not Parquet bytes
    assert sorted(read_table(out)["id"]) == ["a", "b"]


def test_first_line_array_in_jsonl_is_one_rejected_record_through_the_cli(tmp_path, redis_url, judge_server):
    inp = tmp_path / "firstarr.jsonl"
    inp.write_text('[1,2]\n{"id": "a", "question": "q1"}\n{"id": "b", "question": "q2"}\n')
    out = tmp_path / "x.jsonl"
    rc, _, err = _run("label-benchmark", str(inp), "-o", str(out), "--judge-url", judge_server.base_url,
                      "--judge-model", "t")
    assert rc == 0, err
    df = read_table(out).set_index("id")
    assert df.loc["a", "status"] == df.loc["b", "status"] == "labeled"
    [bad] = df[df["status"] == "rejected_input"]["error"]
    assert bad == "not a JSON object (got list)"


@pytest.mark.parametrize("content,message", [
    ("{bad", "not valid JSON"),
    ("{}", "missing run_key, kind, input, judge, code_version, n_items, n_rejected, n_chunks"),
    ('{"run_key": "k", "kind": "eval", "input": "i", "judge": {}, "code_version": "v", "n_items": 1, '
     '"n_rejected": 0}', "missing n_chunks"),
    ("[1]", "a JSON list, not an object"),
])
def test_resume_with_a_corrupt_manifest_is_a_one_line_error(tmp_path, content, message):
    run_dir = tmp_path / "runcopy2"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(content + "\n")
    rc, _, err = _run("resume", str(run_dir), timeout=60)
    assert rc == 2 and "Traceback" not in err, err
    [line] = err.strip().splitlines()  # one line, naming the file
    assert line.startswith(f"error: {run_dir / 'manifest.json'}: not a valid run manifest ({message}"), err


def test_rerun_reports_what_this_command_sent_not_the_run_totals(tmp_path, redis_url, judge_server):
    inp = write_jsonl(tmp_path / "b.jsonl", make_samples(4))
    out = tmp_path / "o.jsonl"
    args = ("label-benchmark", str(inp), "-o", str(out), "--chunk-size", "2", "--no-cache",
            "--judge-url", judge_server.base_url, "--judge-model", "t")
    rc, _, err = _run(*args)
    assert rc == 0, err
    assert "judge, this command: 4 items sent, 0 cache hits" in " ".join(err.split()), err
    sent = len(judge_server.requests)
    rc, _, err = _run(*args)  # the run is finished: nothing to send
    flat = " ".join(err.split())
    assert rc == 0, err
    assert len(judge_server.requests) == sent
    assert "judge, this command: 0 items sent, 0 cache hits" in flat and "run total: 4 items sent" in flat, err
