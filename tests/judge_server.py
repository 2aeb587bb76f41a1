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


class JudgeServer:
    """Start with ``with JudgeServer() as srv: srv.base_url``; ``srv.requests`` records every request body."""

    def __init__(self, slow_s: float = 2.0, port: int = 0):
        self.slow_s = slow_s
        self.requests: list[dict[str, Any]] = []
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
                with server._lock:
                    server.requests.append(body)
                status, payload = server.reply(body)
                self._send(status, payload)

            def _send(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "JudgeServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reply(self, body: dict) -> tuple[int, dict]:
        prompt = body["messages"][-1]["content"]
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
        elif "[[outside]]" in prompt:
            text = json.dumps(labels | {"task_type": "essay_writing"})
        elif "[[truncated]]" in prompt:
            text, finish = text[: len(text) // 2], "length"
        return 200, {
            "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "test-judge"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(text) // 4,
                      "total_tokens": (len(prompt) + len(text)) // 4},
        }
