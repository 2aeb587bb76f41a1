"""The REST service under a hostile client, a slow judge and a Redis that is down (a real uvicorn server)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import uvicorn

from slicelab.service.api import Settings, create_app, parse_keys
from tests.conftest import make_samples

KEY = {"Authorization": "Bearer full-key"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """``create_app(settings)`` under uvicorn on a free localhost port, in a thread."""

    def __init__(self, settings: Settings):
        self.port = free_port()
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="error",
                                limit_concurrency=200)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "Served":
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def request(self, method: str, path: str, body=None, headers: dict | None = None, chunked: bool = False,
                timeout: float = 60) -> tuple[int, dict[str, str], bytes, float]:
        t0 = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.request(method, path, body=body, headers={**KEY, **(headers or {})}, encode_chunked=chunked)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data, time.monotonic() - t0


def settings(tmp_path: Path, judge_url: str, redis_url: str, **kw) -> Settings:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    rows = [{"id": s.id, "question": s.question, "answer": s.reference_answer} for s in make_samples(3)]
    (data / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = {"api_keys": parse_keys(["full-key"]), "data_root": data,
            "judge": {"backend": "openai", "base_url": judge_url, "model": "test-judge", "transport_retries": 0},
            "redis_url": redis_url, "max_body_bytes": 200_000, "max_text_chars": 10_000_000, "tag_timeout_s": 2.5}
    return Settings(**(base | kw))


def chunks(total: int, size: int = 64 * 1024):
    """A body of ``total`` bytes sent with Transfer-Encoding: chunked (no Content-Length)."""
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield b"x" * n
        sent += n


def test_chunked_bodies_are_held_to_the_limit(tmp_path, monkeypatch, redis_url, judge_server):
    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path / "home"))
    with Served(settings(tmp_path, judge_server.base_url, redis_url, tag_timeout_s=60.0)) as srv:
        tag_body = json.dumps({"kind": "eval", "item": {"id": "big", "question": "x" * 1_500_000}}).encode()
        pieces = (tag_body[i:i + 65536] for i in range(0, len(tag_body), 65536))
        status, headers, data, _ = srv.request("POST", "/v1/tag", pieces, {"Content-Type": "application/json"},
                                               chunked=True)
        assert status == 413 and headers["content-type"] == "application/problem+json"
        assert json.loads(data)["detail"] == "limit is 200000 bytes"
        boundary = "slicelabboundary"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jsonl\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode()

        def upload():
            yield head
            yield from chunks(2_600_000)
            yield f"\r\n--{boundary}--\r\n".encode()

        status, headers, data, _ = srv.request("POST", "/v1/jobs/upload", upload(),
                                               {"Content-Type": f"multipart/form-data; boundary={boundary}"},
                                               chunked=True)
        assert status == 413 and json.loads(data)["title"] == "Request body too large"
        assert not list((tmp_path / "home" / "jobs").glob("*"))  # nothing kept of the upload
        # a small chunked body still works
        small = json.dumps({"kind": "eval", "item": {"id": "q", "question": "Is 7 prime?"}}).encode()
        status, _, data, _ = srv.request("POST", "/v1/tag", iter([small[:10], small[10:]]),
                                         {"Content-Type": "application/json"}, chunked=True)
        assert status == 200 and json.loads(data)["status"] == "labeled"


def tag_many(srv: Served, n: int) -> list[tuple[int, dict, float]]:
    def one(i: int):
        body = json.dumps({"kind": "eval", "item": {"id": f"q{i}", "question": f"Is {i} prime?"}})
        status, _, data, took = srv.request("POST", "/v1/tag", body, {"Content-Type": "application/json"})
        return status, json.loads(data), took

    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(one, range(n)))


def test_parallel_tags_keep_the_timeout_and_follow_the_judge_concurrency(tmp_path, monkeypatch, redis_url,
                                                                         judge_server):
    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path / "home"))
    judge_server.delay_s = 1.0
    narrow = settings(tmp_path, judge_server.base_url, redis_url)
    narrow.judge["concurrency"] = 2
    with Served(narrow) as srv:
        tag_many(srv, 1)  # warm: the judge and its clients are built
        judge_server.peak_in_flight = 0
        got = tag_many(srv, 12)
    assert max(took for _, _, took in got) < 2.5 + 1.0 + 1.5  # nobody waits past the timeout (plus one call)
    timeouts = [body for status, body, _ in got if status == 504]
    assert timeouts and all(b["title"] == "Judge timeout" and b["status"] == 504 for b in timeouts)
    assert sum(status == 200 for status, _, _ in got) <= 2 * 3  # 2 at a time, ~1 s each, 2.5 s
    assert judge_server.peak_in_flight == 2
    wide = settings(tmp_path, judge_server.base_url, redis_url)
    wide.judge["concurrency"] = 12
    deadline = time.time() + 10
    while judge_server._in_flight and time.time() < deadline:  # calls given up at 504 finish at the judge
        time.sleep(0.1)
    judge_server.peak_in_flight = 0
    with Served(wide) as srv:
        got = tag_many(srv, 12)
    assert [status for status, _, _ in got] == [200] * 12 and judge_server.peak_in_flight == 12


@pytest.mark.parametrize("endpoint", ["jobs", "upload", "calibrations"])
def test_redis_down_is_503_problem_json_and_leaves_no_job_folder(tmp_path, monkeypatch, judge_server, endpoint):
    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path / "home"))
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with Served(settings(tmp_path, judge_server.base_url, nowhere)) as srv:
        if endpoint == "jobs":
            status, headers, data, _ = srv.request("POST", "/v1/jobs", json.dumps({"path": "bench.jsonl"}),
                                                   {"Content-Type": "application/json"})
        elif endpoint == "upload":
            boundary = "b0undary"
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\r\n"
                    + json.dumps({"id": "a", "question": "Q?"}) + f"\n\r\n--{boundary}--\r\n")
            status, headers, data, _ = srv.request("POST", "/v1/jobs/upload", body,
                                                   {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        else:
            status, headers, data, _ = srv.request("POST", "/v1/calibrations", json.dumps({"gold": "eval"}),
                                                   {"Content-Type": "application/json"})
    assert status == 503 and headers["content-type"] == "application/problem+json"
    body = json.loads(data)
    assert body["title"] == "Service unavailable" and "Redis does not answer" in body["detail"]
    assert not list((tmp_path / "home" / "jobs").glob("*")) if (tmp_path / "home" / "jobs").exists() else True


def test_errors_show_paths_relative_to_the_data_root(tmp_path, monkeypatch, redis_url, judge_server):
    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path / "home"))
    cfg = settings(tmp_path, judge_server.base_url, redis_url)
    (cfg.data_root / "sub").mkdir()
    (cfg.data_root / "sub" / "table.xlsx").write_text("not a format")
    with Served(cfg) as srv:
        status, _, data, _ = srv.request("POST", "/v1/jobs", json.dumps({"path": "sub/table.xlsx"}),
                                         {"Content-Type": "application/json"})
    detail = json.loads(data)["detail"]
    assert status == 422 and "sub/table.xlsx" in detail
    assert str(tmp_path) not in detail and str(cfg.data_root.resolve()) not in detail
