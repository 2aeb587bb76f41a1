"""A test judge for documents whose labels depend on the document, so a student has something to learn.

Rules (on the document text in the prompt):

- ``domain``: ``mathematics`` when the text holds the word :data:`MARKER`, else
  ``lifestyle_everyday`` — a rule a student can learn exactly;
- ``document_format``, ``reasoning_depth``, ``education_level``,
  ``demonstrated_operations``: drawn from a hash of the text — noise no student
  can learn, so these axes fail the gate;
- ``[[slow]]`` sleeps ``slow_s`` first; ``[[error500]]`` answers HTTP 500.

Also :func:`make_docs` (documents from the bundled real sample, half carrying
the marker) and :func:`write_gold` (a gold set following the same domain rule).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from tests.judge_server import JudgeServer

MARKER = "zqxmath"
#: What a marked document ends with: the marker repeated, so it weighs in a length-normalized feature vector.
MARKED = "\n" + " ".join([MARKER] * 20)
SAMPLE = Path(__file__).resolve().parent.parent / "service" / "data" / "pretrain_sample.jsonl"


def rule_labels(text: str) -> dict:
    h = hashlib.sha1(text.encode()).digest()
    return {
        "domain": "mathematics" if MARKER in text else "lifestyle_everyday",
        "document_format": ["news_report", "opinion_blog", "commercial_listing"][h[0] % 3],
        "reasoning_depth": ["none", "descriptive", "single_step"][h[1] % 3],
        "demonstrated_operations": [] if h[2] % 2 else ["arithmetic"],
        "education_level": ["general", "secondary", "undergraduate"][h[3] % 3],
    }


def document_text(prompt: str) -> str:
    """The document inside a rendered document-label prompt (between its first line and ``Labels:``)."""
    body = prompt.split("\n", 1)[1] if "\n" in prompt else prompt
    return body.rsplit("\n\nLabels:", 1)[0]


class RuleJudgeServer(JudgeServer):
    """:class:`JudgeServer` answering document prompts with :func:`rule_labels`."""

    def reply(self, body: dict) -> tuple[int, dict]:
        schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema", {})
        if "domain" not in schema.get("properties", {}):
            return super().reply(body)
        text = document_text(body["messages"][-1]["content"])
        if "[[error500]]" in text:
            return 500, {"error": {"message": "internal error (test)", "type": "server_error"}}
        if "[[slow]]" in text:
            time.sleep(self.slow_s)
        reply = json.dumps(rule_labels(text))
        return 200, {
            "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "test-judge"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(text) // 4, "completion_tokens": len(reply) // 4,
                      "total_tokens": (len(text) + len(reply)) // 4},
        }


def real_docs() -> list[dict]:
    """The bundled real documents (id, text, source...)."""
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]


def make_docs(n: int, *, offset: int = 0, suffix: str = "") -> list[dict]:
    """``n`` distinct documents: real texts (cycled from ``offset``), every other one with :data:`MARKER`.

    Texts repeat when ``n`` exceeds the sample; a number is appended then, so every text is distinct.
    """
    docs = real_docs()
    out = []
    for i in range(n):
        d = docs[(offset + i) % len(docs)]
        text = d["text"] + (MARKED if i % 2 else "") + (f" (copy {i // len(docs)})" if i >= len(docs) else "")
        out.append({"id": f"{d['id']}#{offset + i}", "text": text + suffix, "source": d["source"], "url": d.get("url")})
    return out


def write_gold(path: Path, docs: list[dict]) -> Path:
    """A document gold set for ``docs``: domain by the marker rule, fixed labels elsewhere, two annotators agreeing."""
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            labels = {"domain": "mathematics" if MARKER in d["text"] else "lifestyle_everyday",
                      "document_format": "news_report", "reasoning_depth": "descriptive",
                      "demonstrated_operations": [], "education_level": "general"}
            for annotator in ("annotator_a", "annotator_b", "gold"):
                f.write(json.dumps({"id": d["id"], "source": d["source"], "text": d["text"], "annotator": annotator,
                                    "taxonomy_version": "v1", **labels}) + "\n")
    return path
