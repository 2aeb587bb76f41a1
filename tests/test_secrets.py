"""No secret (judge API key, REST bearer key) in logs, results, run folders or reports."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi.testclient import TestClient
from redis import Redis
from rq import Queue, SimpleWorker

from slicelab.service.api import Settings, create_app, parse_keys
from tests.conftest import make_samples, run_cli
from tests.test_queue import write_jsonl

JUDGE_KEY = "sk-judge-SECRET-4f9a1c"
REST_KEY = "rest-SECRET-77b2e0"


def _files_without(root: Path, secrets: tuple[str, ...]) -> int:
    """Assert no file under ``root`` contains a secret (raw bytes, any format); return the files checked."""
    n = 0
    for f in root.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            for s in secrets:
                assert s.encode() not in data, f"{s} found in {f}"
            n += 1
    return n


def test_cli_run_keeps_the_judge_key_out_of_logs_results_and_run_folder(tmp_path, redis_url, judge_server):
    samples = make_samples(4, wrong_every=2)
    samples[1] = samples[1].model_copy(update={"question": samples[1].question + " [[error500]]"})
    samples[2] = samples[2].model_copy(update={"question": samples[2].question + " [[invalid]]"})
    inp = write_jsonl(tmp_path / "b.jsonl", samples, extra_lines=["not json"])
    out = tmp_path / "out" / "labels.parquet"
    r = run_cli("label-benchmark", str(inp), "-o", str(out), "--workers", "1", "--judge-url", judge_server.base_url,
                "--judge-model", "m", "--max-attempts", "2", env={"SLICELAB_JUDGE_API_KEY": JUDGE_KEY}, timeout_s=180)
    assert r.returncode == 0, r.stderr
    assert judge_server.auth_headers == {f"Bearer {JUDGE_KEY}"}  # the key was used...
    assert JUDGE_KEY not in r.stdout + r.stderr  # ...and is nowhere else
    assert _files_without(out.parent, (JUDGE_KEY,)) >= 5  # output, manifest, parts, markers, workers.log, rejects
    r = run_cli("resume", str(next((out.parent / ".slicelab-runs").glob("*/manifest.json")).parent),
                env={"SLICELAB_JUDGE_API_KEY": JUDGE_KEY}, timeout_s=180)
    assert r.returncode == 0 and JUDGE_KEY not in r.stdout + r.stderr


def test_rest_job_keeps_both_keys_out_of_logs_job_folder_and_results(tmp_path, redis_url, judge_server, monkeypatch,
                                                                     caplog):
    caplog.set_level(logging.DEBUG)
    home = tmp_path / "home"
    monkeypatch.setenv("SLICELAB_HOME", str(home))
    monkeypatch.setenv("SLICELAB_JUDGE_API_KEY", JUDGE_KEY)
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "bench.jsonl", make_samples(3, marker="[[invalid]]"))
    settings = Settings(api_keys=parse_keys([REST_KEY]), data_root=data,
                        judge={"backend": "openai", "base_url": judge_server.base_url, "model": "m",
                               "transport_retries": 0},
                        redis_url=redis_url, max_body_bytes=200_000, max_text_chars=10_000, tag_timeout_s=5.0)
    api = TestClient(create_app(settings))
    auth = {"Authorization": f"Bearer {REST_KEY}"}
    bodies = []
    r = api.post("/v1/jobs", headers=auth, json={"path": "bench.jsonl"})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    conn = Redis.from_url(redis_url)
    SimpleWorker([Queue("slicelab", connection=conn)], connection=conn).work(burst=True)
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/results?format=jsonl", "/v1/taxonomy"):
        resp = api.get(path, headers=auth)
        assert resp.status_code == 200, resp.text
        bodies.append(resp.content)
    bodies.append(api.post("/v1/tag", headers=auth, json={"item": {"id": "x", "question": "q"}}).content)
    bodies.append(api.get("/v1/jobs/nope", headers={"Authorization": "Bearer wrong"}).content)
    assert judge_server.auth_headers == {f"Bearer {JUDGE_KEY}"}
    for s in (JUDGE_KEY, REST_KEY):
        assert all(s.encode() not in b for b in bodies)
        assert s not in caplog.text
    assert _files_without(home, (JUDGE_KEY, REST_KEY)) >= 3
    for key in conn.scan_iter():  # nothing in Redis either (RQ jobs and results, caches)
        kind = conn.type(key)
        values = {b"string": lambda: [conn.get(key)], b"hash": lambda: list(conn.hgetall(key).values()),
                  b"list": lambda: conn.lrange(key, 0, -1)}.get(kind, lambda: [])()
        for v in values:
            assert JUDGE_KEY.encode() not in (v or b"") and REST_KEY.encode() not in (v or b""), key
