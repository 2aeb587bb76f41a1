"""A deterministic OpenAI-compatible HTTP server for tests (``POST /v1/chat/completions``).

The reply is chosen by a marker in the last user message, so it works through
the whole pipeline (queue, worker processes):

- ``[[valid]]`` or no marker: a valid label (with failure_mode when the schema asks for it)
- ``[[invalid]]``: text that is not JSON
- ``[[outside]]``: JSON with a label id outside the taxonomy
- ``[[truncated]]``: half a JSON object, finish_reason ``length``
- ``[[error500]]``: HTTP 500
- ``[[toolong]]``: HTTP 400 "maximum context length" error
- ``[[slow]]``: sleeps ``slow_s`` seconds, then a valid label
- ``[[flaky]]``: invalid on the first request for that prompt, valid afterwards
- ``[[empty]]``: empty content
- ``[[reasoning]]``: empty content, the label JSON in ``reasoning_content`` (vLLM reasoning parsers)
- ``[[hedged]]``: prose around a valid label object ("One option could be {...} but maybe ...")
- ``[[fenced]]``: a valid label inside a Markdown code fence
- ``[[ctx_llamacpp]]``: llama.cpp server's 400 ``exceed_context_size_error``
- ``[[ctx_llamacpp_py]]``: llama-cpp-python server's 500 "Requested tokens (...) exceed context window of ..."
- ``[[html200]]``: HTTP 200 with an HTML page as the body (a proxy's error page)
- ``[[nochoices]]``: HTTP 200 chat completion with an empty ``choices`` list
- ``[[budget]]``: cut by the length limit (``finish_reason: length``) unless ``max_tokens`` >= 320

``slow_s`` applies to ``[[slow]]``; ``delay_s`` (set while running) delays every labeling request;
``peak_in_flight`` is the most requests it answered at once.

Server-wide faults (set on the object while it runs): ``outage = 503`` answers
every request with that HTTP status; ``stop()`` / ``start()`` close and reopen
the listening socket on the same port (connection refused in between);
``refuse_json_schema = True`` answers a ``json_schema`` response_format with a
400 like a backend without structured outputs. The start-up probe
(:func:`service.judge.resilience.probe_judge`) is recorded in ``probes``, not
``requests``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VALID_EVAL = {
    "background_condition": "formal_symbolic",
    "task_type": "binary_judgment",
    "solving_operations": ["algorithm_execution", "algorithm_execution", "logical_deduction"],
    "output_constraint": "boolean_token",
}
VALID_DOC = {
    "domain": "mathematics",
    "document_format": "textbook_lecture",
    "reasoning_depth": "multi_step",
    "demonstrated_operations": ["algebraic_manipulation"],
    "education_level": "undergraduate",
}


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a client that hung up (killed worker): not news
        pass


class JudgeServer:
    """Start with ``with JudgeServer() as srv: srv.base_url``; ``srv.requests`` records every request body."""

    def __init__(self, slow_s: float = 2.0, port: int = 0):
        self.slow_s = slow_s
        self.requests: list[dict[str, Any]] = []
        self.probes: list[dict[str, Any]] = []
        self.auth_headers: set[str] = set()
        self.outage: int | None = None
        self.refuse_json_schema = False
        self.delay_s = 0.0
        self._in_flight = 0
        self.peak_in_flight = 0
        self.failed_during_outage = 0
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "test-judge", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                probe = any(m in json.dumps(body.get("messages")) for m in ("start-up probe", "health probe"))
                with server._lock:
                    server.auth_headers.add(self.headers.get("Authorization", ""))
                    (server.probes if probe else server.requests).append(body)
                    outage = server.outage
                    if outage:
                        server.failed_during_outage += 1
                if outage:
                    status, payload = outage, {"error": {"message": "service unavailable (test outage)"}}
                elif server.refuse_json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
                    status, payload = 400, {"error": {"message": "response_format type json_schema is not supported "
                                                                 "by this backend (test)", "type": "BadRequestError"}}
                else:
                    with server._lock:
                        server._in_flight += 1
                        server.peak_in_flight = max(server.peak_in_flight, server._in_flight)
                    try:
                        status, payload = server.reply(body)
                    finally:
                        with server._lock:
                            server._in_flight -= 1
                self._send(status, payload)

            def _send(self, status: int, payload: dict | str):
                html = isinstance(payload, str)
                data = payload.encode() if html else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8" if html else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._handler = Handler
        self.httpd = _QuietServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        """Listen again on the same port (after :meth:`stop`)."""
        if self.httpd is None:
            self.httpd = _QuietServer(("127.0.0.1", self.port), self._handler)
            self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listening socket: new connections are refused until :meth:`start`."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def __enter__(self) -> "JudgeServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def reply(self, body: dict) -> tuple[int, dict | str]:
        prompt = body["messages"][-1]["content"]
        if self.delay_s:
            time.sleep(self.delay_s)
        special = _special_reply(prompt)
        if special is not None:
            return special
        schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema", {})
        props = schema.get("properties", {})
        if "[[error500]]" in prompt:
            return 500, {"error": {"message": "internal error (test)", "type": "server_error"}}
        if "[[toolong]]" in prompt:
            return 400, {"error": {"message": "This model's maximum context length is 4096 tokens (test)",
                                   "type": "BadRequestError"}}
        if "[[slow]]" in prompt:
            time.sleep(self.slow_s)
        with self._lock:
            self._seen[prompt] = self._seen.get(prompt, 0) + 1
            first = self._seen[prompt] == 1
        labels = dict(VALID_DOC if "domain" in props else VALID_EVAL)
        if "failure_mode" in props:
            labels["failure_mode"] = "wrong_reasoning"
        text, finish = json.dumps(labels), "stop"
        if "[[invalid]]" in prompt or ("[[flaky]]" in prompt and first):
            text = "I think the labels are pure_math and numeric_answer."
        elif "[[hedged]]" in prompt:
            text = f"One option could be {text} but maybe it is everyday_world."
        elif "[[fenced]]" in prompt:
            text = f"```json\n{text}\n```"
        elif "[[budget]]" in prompt and (body.get("max_tokens") or 0) < 320:
            text, finish = text[: len(text) // 2], "length"
        elif "[[outside]]" in prompt:
            text = json.dumps(labels | {"task_type": "essay_writing"})
        elif "[[truncated]]" in prompt:
            text, finish = text[: len(text) // 2], "length"
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if "[[empty]]" in prompt:
            message["content"] = text = ""
        elif "[[reasoning]]" in prompt:
            message = {"role": "assistant", "content": None, "reasoning_content": "Thinking... " + text}
        return 200, {
            "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "test-judge"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(text) // 4,
                      "total_tokens": (len(prompt) + len(text)) // 4},
        }


def _special_reply(prompt: str) -> tuple[int, dict | str] | None:
    """Replies of misbehaving servers (context overflow, malformed 200s), or None."""
    if "[[ctx_llamacpp]]" in prompt:
        return 400, {"error": {"code": 400, "message": "the request exceeds the available context size, try "
                               "increasing it", "type": "exceed_context_size_error", "n_prompt_tokens": 5210,
                               "n_ctx": 4096}}
    if "[[ctx_llamacpp_py]]" in prompt:
        return 500, {"error": {"message": "Requested tokens (5210) exceed context window of 4096",
                               "type": "internal_server_error"}}
    if "[[html200]]" in prompt:
        return 200, "<html><body><h1>502 Bad Gateway</h1><p>upstream closed</p></body></html>"
    if "[[nochoices]]" in prompt:
        return 200, {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                     "model": "test-judge", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 0,
                                                                    "total_tokens": 1}}
    return None
