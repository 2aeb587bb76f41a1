"""The REST service against real Redis and real RQ workers, with the localhost test judge."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq import Queue, SimpleWorker

from slicelab.service.api import Settings, create_app, parse_keys
from slicelab.service.output import read_table
from tests.judge_server import JudgeServer
from tests.conftest import ROOT, make_samples

FULL = {"Authorization": "Bearer full-key"}
TAG_ONLY = {"Authorization": "Bearer tag-key"}


#: Seconds one /v1/tag may take in these tests: room for a first judge call on a loaded machine.
TAG_TIMEOUT_S = 10.0


@pytest.fixture
def slow_judge_server():
    """The test judge server, answering "[[slow]]" items after longer than the tag timeout."""
    with JudgeServer(slow_s=3 * TAG_TIMEOUT_S) as srv:
        yield srv


@pytest.fixture
def api(tmp_path, redis_url, slow_judge_server, monkeypatch):
    judge_server = slow_judge_server
    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"id": s.id, "question": s.question, "answer": s.reference_answer, "task": "t"} for s in make_samples(5)]
    (data / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = Settings(api_keys=parse_keys(["full-key", "tag-key:tag"]), data_root=data,
                        judge={"backend": "openai", "base_url": judge_server.base_url, "model": "test-judge",
                               "transport_retries": 0},
                        redis_url=redis_url, max_body_bytes=200_000, max_text_chars=10_000,
                        tag_timeout_s=TAG_TIMEOUT_S)
    client = TestClient(create_app(settings))
    client.redis_url = redis_url
    return client


def work(redis_url: str) -> None:
    conn = Redis.from_url(redis_url)
    SimpleWorker([Queue("slicelab", connection=conn)], connection=conn).work(burst=True)


def test_health_is_open_and_everything_else_needs_a_key(api):
    assert api.get("/healthz").json()["status"] == "ok"
    assert api.get("/readyz").status_code == 200
    r = api.get("/v1/taxonomy")
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 401 and r.headers["www-authenticate"] == "Bearer"
    assert api.get("/v1/taxonomy", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert api.get("/v1/taxonomy", headers=TAG_ONLY).status_code == 200
    r = api.get("/v1/jobs/abc", headers=TAG_ONLY)
    assert r.status_code == 403 and "'jobs' scope" in r.json()["detail"]
    assert api.get("/metrics").status_code == 401  # queue depth and workers are not public
    assert api.get("/metrics", headers=TAG_ONLY).status_code == 403


def test_tag_one_sample_returns_labels_gate_and_provenance(api):
    r = api.post("/v1/tag", headers=FULL, json={"kind": "eval", "item": {
        "id": "q1", "question": "Is 7 prime?", "reference_answer": "Yes", "model_output": "No.", "correct": False}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "labeled" and body["labels"]["task_type"] == "binary_judgment"
    assert body["labels"]["failure_mode"] == "wrong_reasoning"
    assert set(body["gate"].values()) == {"ungated"} and body["calibration_id"] is None
    assert body["provenance"]["taxonomy_version"] == "v1" and body["provenance"]["request_hash"]
    assert "slicelab_labels_total" in api.get("/metrics", headers=FULL).text
    # a sample without a wrong output has no failure_mode; a document has the document axes
    r = api.post("/v1/tag", headers=FULL, json={"kind": "eval", "item": {"id": "q2", "question": "Is 9 prime?"}})
    assert r.status_code == 200 and "failure_mode" not in r.json()["labels"]
    r = api.post("/v1/tag", headers=FULL, json={"kind": "document", "item": {"id": "d1", "text": "A proof that..."}})
    assert r.status_code == 200 and r.json()["labels"]["domain"] == "mathematics"


def test_tag_errors_are_problem_json_naming_the_field(api):
    r = api.post("/v1/tag", headers=FULL, json={"kind": "eval", "item": {"id": "x"}})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert "question" in r.json()["detail"]
    r = api.post("/v1/tag", headers=FULL, json={"kind": "poem", "item": {}})
    assert r.status_code == 422 and "kind" in r.json()["detail"]
    r = api.post("/v1/tag", headers=FULL, json={"item": {"id": "x", "question": "q" * 10_001}})
    assert r.status_code == 413 and r.json()["limit"] == 10_000 and r.json()["field"] == "item.question"
    r = api.post("/v1/tag", headers=FULL, content=b"{" + b" " * 300_000 + b"}",
                 )
    assert r.status_code == 413 and r.json()["limit"] == 200_000
    r = api.post("/v1/tag", headers=FULL, json={"item": {"id": "x", "question": "slow one [[slow]]"}})
    assert r.status_code == 504 and f"{TAG_TIMEOUT_S} s" in r.json()["detail"]


def test_bulk_job_from_a_server_path_runs_on_workers_and_results_download(api):
    r = api.post("/v1/jobs", headers=FULL, json={"path": "bench.jsonl", "chunk_size": 2})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    state = api.get(f"/v1/jobs/{job_id}", headers=FULL).json()
    assert state["state"] == "queued" and state["progress"]["chunks"] == 3
    assert state["workers_alive"] == 0 and "no worker is alive on queue slicelab" in state["note"]
    assert api.get(f"/v1/jobs/{job_id}/results", headers=FULL).status_code == 409
    work(api.redis_url)  # the API process never labels: a real RQ worker does
    state = api.get(f"/v1/jobs/{job_id}", headers=FULL).json()
    assert state["state"] == "finished" and state["counts"] == {"labeled": 5}
    assert state["requeued"] == [] and state["errors"] == [] and "note" not in state
    for fmt in ("parquet", "jsonl"):
        r = api.get(f"/v1/jobs/{job_id}/results?format={fmt}", headers=FULL)
        assert r.status_code == 200
        path = Path(api.app.state.__dict__.get("tmp", "/tmp")) / f"dl-{job_id}.{fmt}"
        path.write_bytes(r.content)
        assert sorted(read_table(path)["id"]) == [f"t/{i}" for i in range(5)]
    # results live on disk: flushing Redis loses nothing
    Redis.from_url(api.redis_url).flushdb()
    assert api.get(f"/v1/jobs/{job_id}", headers=FULL).json()["state"] == "finished"
    assert api.get(f"/v1/jobs/{job_id}/results", headers=FULL).status_code == 200


@pytest.mark.parametrize("path", ["../secret.jsonl", "/etc/passwd", "bench.jsonl/../../x", "nope.jsonl", "a\x00b"])
def test_server_paths_never_escape_the_data_root(api, tmp_path, path):
    (tmp_path / "secret.jsonl").write_text('{"id": "s", "question": "secret"}\n')
    r = api.post("/v1/jobs", headers=FULL, json={"path": path})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


def test_upload_stays_in_the_job_folder_and_cancel(api, tmp_path):
    content = b'{"id": "u1", "question": "What is 1+1?"}\n{"id": "u2", "question": "2+2?"}\n'
    r = api.post("/v1/jobs/upload", headers=FULL, files={"file": ("../../evil.jsonl", io.BytesIO(content))})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    folder = tmp_path / "home" / "jobs" / job_id
    assert (folder / "input.jsonl").read_bytes() == content
    assert not (tmp_path / "home" / "evil.jsonl").exists() and not (tmp_path / "evil.jsonl").exists()
    r = api.delete(f"/v1/jobs/{job_id}", headers=FULL)
    assert r.status_code == 200 and r.json()["chunks_canceled"] == 1
    work(api.redis_url)  # nothing left to do
    assert api.get(f"/v1/jobs/{job_id}", headers=FULL).json()["state"] == "canceled"
    assert api.get(f"/v1/jobs/{job_id}/results", headers=FULL).status_code == 410
    assert api.get("/v1/jobs/doesnotexist", headers=FULL).status_code == 404


def test_calibration_runs_on_a_worker_and_its_report_is_served(api, tmp_path):
    r = api.post("/v1/calibrations", headers=FULL, json={"gold": "eval", "limit": 8,
                                                             "leave_one_benchmark_out": False})
    assert r.status_code == 202, r.text
    task = r.json()["task_id"]
    work(api.redis_url)
    state = api.get(f"/v1/calibrations/tasks/{task}", headers=FULL).json()
    assert state["state"] == "finished", state
    cal_id = state["calibration_id"]
    record = api.get(f"/v1/calibrations/{cal_id}", headers=FULL).json()
    assert record["split"]["n_heldout"] == 8 and set(record["verdicts"]) >= {"task_type"}
    html = api.get(f"/v1/calibrations/{cal_id}/report", headers=FULL)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert api.get("/v1/calibrations/cal-nope/report", headers=FULL).status_code == 404
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("headless Chromium not installed (.ci/run installs Debian chromium)")
    page = tmp_path / "served.html"
    page.write_text(html.text, encoding="utf-8")
    shot = tmp_path / "served.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chr'}"]
    subprocess.run([chromium, *flags, "--window-size=1280,2000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert cal_id in dom and "task_type" in dom


def test_openapi_has_every_label_field_with_taxonomy_enums(api):
    spec = api.get("/openapi.json").json()
    text = json.dumps(spec)
    for label in ("background_condition", "task_type", "solving_operations", "output_constraint",
                  "failure_mode", "domain", "document_format", "reasoning_depth", "education_level"):
        assert label in text
    assert "counting_combinatorics" in text and "boilerplate_spam" in text


def test_no_generated_request_gets_a_5xx(api):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app)
    failures, calls = [], []
    for op in schema.get_all_operations():
        operation = op.ok()

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call(headers=FULL)
            calls.append(case.path)
            if response.status_code >= 500:
                failures.append((case.method, case.path, response.status_code, response.text[:200]))

        check()
    assert not failures, failures[:5]
    assert len(set(calls)) >= 12 and len(calls) > 60  # every operation was exercised


@pytest.mark.embedded
def test_tag_with_the_embedded_judge(tmp_path, redis_url, monkeypatch):
    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path))
    settings = Settings(api_keys=parse_keys(["full-key"]), data_root=tmp_path, judge={"backend": "embedded"},
                        redis_url=redis_url, tag_timeout_s=600)
    client = TestClient(create_app(settings))
    r = client.post("/v1/tag", headers=FULL, json={"kind": "eval", "item": {
        "id": "e1", "question": "not ( True ) and ( True ) is", "reference_answer": "False"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "labeled" and body["provenance"]["backend"] == "embedded"
    from slicelab.service.taxonomy import load_taxonomy

    tax = load_taxonomy()
    assert body["labels"]["task_type"] in tax.axis("eval", "task_type").ids
