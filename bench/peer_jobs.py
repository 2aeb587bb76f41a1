"""One peer tool labels the job of ``bench/peers.py`` (runs in that tool's own virtual environment).

    python bench/peer_jobs.py TOOL --job DIR --base-url URL --concurrency N --out FILE

``DIR/job.jsonl`` holds ``{"id", "messages"}`` per sample (slicelab's rendered prompt: system and
user turn) and ``DIR/schema.json`` ``{"name", "schema", "max_tokens", "temperature"}`` (slicelab's
label model). TOOL is ``distilabel`` (``OpenAILLM`` in a pipeline with ``ChatGeneration``, the schema as
the server's structured-output ``response_format``), ``curator`` (``curator.LLM`` with a response format on
the OpenAI backend and the base URL) or ``datatrove`` (``InferenceRunner`` against an external
endpoint, the schema sent as ``response_format``). Each keeps at most N requests in flight.
``FILE`` gets one JSON line ``{"id", "label"}`` per row the tool returned (``label`` None when
the row holds no valid label). This file imports only the standard library and pydantic at
module level, so it runs in any of the three environments.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, create_model


class PartialRun(Exception):
    """A tool stopped with an error after returning some rows."""

    def __init__(self, rows: list[dict], error: BaseException):
        super().__init__(f"{type(error).__name__}: {error}")
        self.rows = rows


def model_from_schema(schema: dict[str, Any], name: str) -> type[BaseModel]:
    """A pydantic model for a flat JSON schema of enums and arrays of enums (slicelab's label models)."""
    fields: dict[str, Any] = {}
    for field, prop in schema["properties"].items():
        if prop.get("type") == "array":
            kind = list[Literal[tuple(prop["items"]["enum"])]]
            fields[field] = (kind, Field(min_length=prop.get("minItems"), max_length=prop.get("maxItems")))
        else:
            fields[field] = (Literal[tuple(prop["enum"])], ...)
    return create_model(name, **fields)


def label_model(spec: dict) -> type[BaseModel]:
    """The label model of ``spec``, created once and kept as a global of this module under its name, so
    that processes a tool starts (spawned: they import this module again) can unpickle it."""
    model = globals().get(spec["name"])
    if model is None:
        model = globals()[spec["name"]] = model_from_schema(spec["schema"], spec["name"])
        model.__module__ = __name__
    return model


if os.environ.get("PEER_JOB_SCHEMA"):  # a process started by a tool: the label model exists here too
    label_model(json.loads(Path(os.environ["PEER_JOB_SCHEMA"]).read_text()))


def response_format(spec: dict) -> dict:
    """The OpenAI ``response_format`` slicelab sends: the label model's JSON schema."""
    return {"type": "json_schema", "json_schema": {"name": spec["name"], "schema": spec["schema"]}}


def load_job(folder: Path) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in (folder / "job.jsonl").read_text().splitlines() if line.strip()]
    return rows, json.loads((folder / "schema.json").read_text())


def valid(model: type[BaseModel], value: Any) -> dict | None:
    """The label when ``value`` (a dict or JSON text) validates against ``model``, else None."""
    try:
        data = json.loads(value) if isinstance(value, str) else value
        return model.model_validate(data).model_dump()
    except (ValidationError, ValueError, TypeError):
        return None


def run_distilabel(rows: list[dict], spec: dict, base_url: str, concurrency: int, work: Path) -> list[dict]:
    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import ChatGeneration

    # The schema goes to the server as response_format (through extra_body: OpenAILLM's own response_format
    # takes only {"type": ...}). distilabel's instructor route (structured_output=) rebuilds the model from a
    # JSON schema inside the step process and drops every enum, so the server would get no vocabulary.
    with Pipeline(name="slicelab-peer-bench", cache_dir=str(work / "cache")) as pipeline:
        load = LoadDataFromDicts(data=[{"id": r["id"], "messages": r["messages"]} for r in rows],
                                 batch_size=concurrency)
        llm = OpenAILLM(model="sim", base_url=base_url, api_key="none", max_retries=3,
                        generation_kwargs={"max_new_tokens": spec["max_tokens"], "temperature": spec["temperature"],
                                           "extra_body": {"response_format": response_format(spec)}})
        task = ChatGeneration(llm=llm, input_batch_size=concurrency)
        load >> task
    distiset = pipeline.run(use_cache=False)
    model = label_model(spec)
    return [{"id": row["id"], "label": valid(model, row.get("generation"))}
            for split in distiset.values() for row in split["train"]]


def run_curator(rows: list[dict], spec: dict, base_url: str, concurrency: int, work: Path) -> list[dict]:
    os.environ.setdefault("CURATOR_CACHE_DIR", str(work / "cache"))
    # tiktoken would download its encoding files; litellm (a curator dependency) ships them
    litellm = Path(importlib.util.find_spec("litellm").origin).parent
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(litellm / "litellm_core_utils" / "tokenizers"))
    from bespokelabs import curator
    from datasets import Dataset

    model = label_model(spec)

    class Labeler(curator.LLM):
        def prompt(self, row: dict) -> list[dict]:
            return row["messages"]

        def parse(self, row: dict, response: Any) -> dict:
            label = response.model_dump() if isinstance(response, BaseModel) else response
            return {"id": row["id"], "label": json.dumps(label)}

    labeler = Labeler(model_name="sim", response_format=model, backend="openai",
                      generation_params={"max_tokens": spec["max_tokens"], "temperature": spec["temperature"]},
                      backend_params={"base_url": base_url, "api_key": "none", "max_concurrent_requests": concurrency,
                                      "max_requests_per_minute": 10_000_000, "max_tokens_per_minute": 10_000_000_000,
                                      "max_retries": 3, "require_all_responses": False})
    result = labeler(Dataset.from_list([{"id": r["id"], "messages": r["messages"]} for r in rows]))
    dataset = getattr(result, "dataset", result)
    return [{"id": row["id"], "label": valid(model, row["label"])} for row in dataset]


def run_datatrove(rows: list[dict], spec: dict, base_url: str, concurrency: int, work: Path) -> list[dict]:
    from datatrove.data import Document
    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.inference.run_inference import InferenceConfig, InferenceRunner
    from datatrove.pipeline.writers import JsonlWriter

    async def rollout(document: Document, generate: Any) -> str:
        result = await generate({"messages": document.metadata["messages"], "response_format": response_format(spec),
                                 "max_tokens": spec["max_tokens"], "temperature": spec["temperature"]})
        return result.text

    docs = [Document(text="", id=r["id"], metadata={"messages": r["messages"]}) for r in rows]
    config = InferenceConfig(server_type="endpoint", model_name_or_path="sim", endpoint_url=base_url.removesuffix("/v1"),
                             max_concurrent_generations=concurrency)
    runner = InferenceRunner(rollout_fn=rollout, config=config,
                             output_writer=JsonlWriter(str(work / "out"), compression=None))
    failure = None
    try:
        LocalPipelineExecutor(pipeline=[docs, runner], tasks=1, workers=1, logging_dir=str(work / "logs")).run()
    except Exception as e:  # noqa: BLE001 - the rows written before a failure still count
        failure = e
    model = label_model(spec)
    out = []
    for path in sorted((work / "out").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            doc = json.loads(line)
            results = (doc.get("metadata") or {}).get("rollout_results") or [None]
            out.append({"id": doc["id"], "label": valid(model, results[0])})
    if failure is not None:
        raise PartialRun(out, failure)
    return out


TOOLS = {"distilabel": run_distilabel, "curator": run_curator, "datatrove": run_datatrove}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tool", choices=sorted(TOOLS))
    ap.add_argument("--job", type=Path, required=True)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--concurrency", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows, spec = load_job(args.job)
    os.environ["PEER_JOB_SCHEMA"] = str(args.job / "schema.json")
    failure = None
    with tempfile.TemporaryDirectory(prefix=f"peer-{args.tool}-") as work:
        try:
            out = TOOLS[args.tool](rows, spec, args.base_url, args.concurrency, Path(work))
        except PartialRun as e:
            out, failure = e.rows, e
    args.out.write_text("".join(json.dumps(r) + "\n" for r in out))
    if failure is not None:
        raise SystemExit(f"stopped after {len(out)} rows: {failure}")


if __name__ == "__main__":
    main()
