"""Throughput of the labeling pipeline against a simulated vLLM server, and of the embedded judge.

    python bench/throughput.py [--items 10000] [--scale-items 2000] [--latency 0.25] [--cap 32]
                               [--concurrency 16] [--workers 1,2,4] [--cached-workers 2]
                               [--embedded-limit 6] [--skip-embedded]

The simulated server is an OpenAI-compatible HTTP server on localhost (a
separate process, uvicorn): every ``/v1/chat/completions`` request waits
``--latency`` seconds while holding one of ``--cap`` slots, then answers a
valid label for the JSON schema it was sent. Like a vLLM server at its batch
limit, its own ceiling is exactly ``cap / latency`` requests per second.

Measured in one run:

- direct client calls (``OpenAIJudge.label_many`` in this process, no queue) at
  the per-worker concurrency and at the total concurrency of the largest worker count;
- the full pipeline (``slicelab label-benchmark``: reader, run folder, RQ queue,
  worker processes, judge, Parquet parts, merged output) with 1, 2, ... workers,
  each keeping ``--concurrency`` requests in flight; labels/s over the judge
  window (first request to last reply, seen by the server) and end to end
  (the whole command, process start-up included);
- CPU per label: every pipeline process except the server (the command and its
  workers; ``getrusage`` of waited-for children), and inside the workers' label task;
- a fully cached re-run of ``--items`` samples (the same input into a new run folder,
  ``--cached-workers`` workers);
- the embedded judge (llama.cpp, SmolLM2-135M) on the first ``--embedded-limit``
  items of ``service/data/bbh_sample.jsonl``, with the context reset before each
  call (no prefix reuse) and with llama.cpp's shared-prefix state kept.

Samples are the 54 bundled real BBH items, resampled: copy ``k`` of an item has
the id ``<id>#k`` and the benchmark name ``bbh#k`` (shown in the prompt, so
every copy is a distinct request and the label cache never answers a first
run; the task names, which the command's summary groups by, stay the 27 real ones). The
pipeline uses Redis database ``--redis-db`` (default 11) of ``--redis-host``,
flushed before each cold run. Figures are printed next to their targets and
written to ``--out`` (JSON); nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BBH = ROOT / "service" / "data" / "bbh_sample.jsonl"


# --- the simulated server ---------------------------------------------------------------------------------


def label_for_schema(schema: dict, seed: int) -> dict:
    """A valid label object for a label model's JSON schema (enum values picked by ``seed``)."""
    defs = schema.get("$defs", {})

    def resolve(node: dict) -> dict:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        if "anyOf" in node:
            node = resolve(next(n for n in node["anyOf"] if n.get("type") != "null"))
        return node

    plain = {"string": "x", "integer": seed % 100, "number": 0.5, "boolean": bool(seed % 2)}
    out = {}
    for name, prop in schema.get("properties", {}).items():
        prop = resolve(prop)
        if prop.get("type") == "array":
            options = resolve(prop["items"])["enum"]
            out[name] = [options[(seed + i) % len(options)] for i in range(max(1, prop.get("minItems", 1)))]
        elif "enum" in prop:
            out[name] = prop["enum"][seed % len(prop["enum"])]
        else:  # a field without a vocabulary (a client's own start-up check)
            out[name] = plain.get(prop.get("type"), "x")
    return out


def make_app(latency_s: float, cap: int, fail_every: int = 0):
    """An ASGI app answering chat completions after ``latency_s`` with at most ``cap`` in flight.

    With ``fail_every`` = k > 0, every k-th labeling request (counted on arrival) gets an HTTP 500
    instead, after the same latency: transient faults, a retry of the same request succeeds.
    """
    state = {"sem": None, "in_flight": 0, "max_in_flight": 0, "requests": 0, "first_start": None, "last_end": None,
             "arrived": 0, "failed": 0}

    async def reply(send, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    state["sem"] = asyncio.Semaphore(cap)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path.endswith("/stats"):
            return await reply(send, 200, {k: v for k, v in state.items() if k != "sem"})
        if path.endswith("/reset"):
            state.update(in_flight=0, max_in_flight=0, requests=0, first_start=None, last_end=None, arrived=0, failed=0)
            return await reply(send, 200, {})
        if path.endswith("/models"):  # what clients poll to see that an OpenAI-compatible server is up
            return await reply(send, 200, {"object": "list", "data": [{"id": "sim", "object": "model"}]})
        if not path.endswith("/chat/completions"):
            return await reply(send, 404, {"error": {"message": "not found"}})
        request = json.loads(body)
        if "start-up probe" in json.dumps(request.get("messages")):  # the command's reachability check
            return await reply(send, 200, {"id": "probe", "object": "chat.completion", "created": 0, "model": "sim",
                                           "choices": [{"index": 0, "finish_reason": "stop",
                                                        "message": {"role": "assistant", "content": "{}"}}]})
        state["arrived"] += 1
        fail = fail_every > 0 and state["arrived"] % fail_every == 0
        async with state["sem"]:
            state["first_start"] = state["first_start"] or time.time()
            state["in_flight"] += 1
            state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
            await asyncio.sleep(latency_s)
            state["in_flight"] -= 1
        if fail:
            state["failed"] += 1
            return await reply(send, 500, {"error": {"message": "simulated server error", "type": "server_error"}})
        tools = request.get("tools") or []  # the schema as a function's parameters (instructor's TOOLS mode)
        schema = (tools[0]["function"].get("parameters", {}) if tools else
                  (request.get("response_format") or {}).get("json_schema", {}).get("schema", {}))
        messages = request.get("messages") or []
        seed = len(str(messages[-1].get("content"))) if messages else 0
        text = json.dumps(label_for_schema(schema, seed), separators=(",", ":"))
        message = ({"role": "assistant", "content": None, "tool_calls": [{
            "id": "call-sim", "type": "function", "function": {"name": tools[0]["function"]["name"], "arguments": text}}]}
            if tools else {"role": "assistant", "content": text})
        state["requests"] += 1
        state["last_end"] = time.time()
        return await reply(send, 200, {
            "id": "chatcmpl-sim", "object": "chat.completion", "created": int(time.time()), "model": request["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tools else "stop"}],
            "usage": {"prompt_tokens": sum(len(str(m.get("content"))) for m in messages) // 4,
                      "completion_tokens": len(text) // 4, "total_tokens": 0}})

    return app


def serve(port: int, latency_s: float, cap: int, fail_every: int = 0) -> None:
    import uvicorn

    uvicorn.run(make_app(latency_s, cap, fail_every), host="127.0.0.1", port=port, log_level="warning", access_log=False,
                backlog=4096, limit_concurrency=None)


class SimServer:
    """The simulated server in a child process; ``get("stats")``, ``get("reset")``."""

    def __init__(self, latency_s: float, cap: int, fail_every: int = 0):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(self.port), "--latency", str(latency_s),
                                      "--cap", str(cap), "--fail-every", str(fail_every)])
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                self.get("stats")
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("simulated server did not start")

    def get(self, what: str) -> dict:
        import urllib.request

        with urllib.request.urlopen(f"{self.base_url}/{what}", timeout=10) as r:
            return json.loads(r.read())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# --- inputs, machine --------------------------------------------------------------------------------------


def write_input(path: Path, n: int) -> Path:
    """``n`` records resampled from the bundled BBH items (distinct ids and benchmark names)."""
    base = [json.loads(line) for line in BBH.read_text(encoding="utf-8").splitlines() if line.strip()]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            rec = dict(base[i % len(base)])
            k = i // len(base)
            rec["id"], rec["benchmark"] = f"{rec['id']}#{k}", f"bbh#{k}"
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def machine() -> dict:
    """Cores, CPU model (from /proc/cpuinfo where there is one), Python, load averages."""
    info = Path("/proc/cpuinfo")
    found = re.search(r"^model name\s*:\s*(.+)$", info.read_text() if info.is_file() else "", re.M)
    return {"cpu": found.group(1).strip() if found else (platform.processor() or platform.machine()),
            "cores": os.cpu_count(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def write_result(result: dict, out: Path) -> None:
    """Record the machine at the end in ``result``, print its load, write ``result`` to ``out`` (JSON)."""
    result["machine_end"] = machine()
    print(f"load average at the end: {result['machine_end']['load_average']}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# --- measurements -----------------------------------------------------------------------------------------


def direct(server: SimServer, items: list, concurrency: int) -> dict:
    """``label_many`` in this process: labels/s and CPU per label."""
    from slicelab.service.judge.openai_backend import OpenAIJudge

    judge = OpenAIJudge(base_url=server.base_url, model="sim", concurrency=concurrency, transport_retries=0)
    judge.label_many(items[:concurrency])  # warm: client, connections, templates
    server.get("reset")
    cpu0, t0 = time.process_time(), time.perf_counter()
    results = judge.label_many(items)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    judge.close()
    ok = sum(r.status == "labeled" for r in results)
    return {"concurrency": concurrency, "items": len(items), "labeled": ok, "wall_s": round(wall, 3),
            "labels_per_s": round(len(items) / wall, 1), "cpu_ms_per_label": round(1000 * cpu / len(items), 3),
            "server_max_in_flight": server.get("stats")["max_in_flight"]}


def pipeline(server: SimServer, inp: Path, out_dir: Path, workers: int, concurrency: int, redis_url: str,
             *, flush: bool) -> dict:
    """One ``slicelab label-benchmark`` command; labels/s over the judge window and end to end."""
    from redis import Redis

    if flush:
        Redis.from_url(redis_url).flushdb()
    server.get("reset")
    out = out_dir / "labels.parquet"
    cmd = [sys.executable, "-m", "slicelab.service.cli", "label-benchmark", str(inp), "-o", str(out), "--workers", str(workers),
           "--judge-url", server.base_url, "--judge-model", "sim", "--judge-concurrency", str(concurrency)]
    cpu0, t0 = children_cpu_s(), time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=os.environ | {"REDIS_URL": redis_url}, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, children_cpu_s() - cpu0
    if p.returncode != 0:
        raise RuntimeError(f"label-benchmark failed ({p.returncode}): {p.stderr[-2000:]}")
    stats = json.loads(next(out_dir.glob(".slicelab-runs/*/throughput.json")).read_text())
    srv = server.get("stats")
    window = (srv["last_end"] - srv["first_start"]) if srv["requests"] else None
    n = stats["items"]
    return {"workers": workers, "concurrency_per_worker": concurrency, "items": n, "labeled": stats.get("labeled"),
            "judge_requests": srv["requests"], "cache_hits": stats["cache_hits"], "wall_s": round(wall, 3),
            "labels_per_s_end_to_end": round(n / wall, 1),
            "judge_window_s": round(window, 3) if window else None,
            "labels_per_s": round(srv["requests"] / window, 1) if window else None,
            "server_max_in_flight": srv["max_in_flight"],
            "cpu_ms_per_label_pipeline": round(1000 * cpu / n, 3),
            "cpu_ms_per_label_label_task": stats["cpu_ms_per_item"],
            "prefix_share": stats["prefix_share"], "output_tokens_per_label": stats["output_tokens_per_label"]}


def embedded(limit: int) -> dict:
    """The embedded judge on the first ``limit`` bundled BBH items, without and with prefix reuse."""
    from slicelab.service.judge.embedded import EmbeddedJudge, _llama
    from slicelab.service.readers import read_eval_samples

    items = [s for s in read_eval_samples(BBH) if not hasattr(s, "reason")][:limit]
    out = {}
    for reuse in (False, True):
        judge = EmbeddedJudge(prefix_reuse=reuse)
        _llama(judge.model_path, judge.n_ctx, judge.n_threads)  # load the model outside the timing
        t0 = time.perf_counter()
        results = [judge.label(s) for s in items]
        wall = time.perf_counter() - t0
        labeled = [r for r in results if r.status == "labeled"]
        out["after" if reuse else "before"] = {
            "items": len(items), "labeled": len(labeled), "wall_s": round(wall, 2),
            "labels_per_s": round(len(items) / wall, 4), "s_per_label": round(wall / len(items), 2),
            "output_tokens_per_label": round(sum(r.completion_tokens for r in results) / len(items), 1),
            "prompt_tokens_per_label": round(sum(r.prompt_tokens for r in results) / len(items), 1)}
    return out


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--items", type=int, default=10000, help="samples of the largest run and of the cached re-run")
    ap.add_argument("--scale-items", type=int, default=2000, help="samples of the smaller worker counts' runs")
    ap.add_argument("--latency", type=float, default=0.25, help="seconds the server takes per request")
    ap.add_argument("--cap", type=int, default=32, help="requests the server works on at once")
    ap.add_argument("--fail-every", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--concurrency", type=int, default=16, help="requests each worker keeps in flight")
    ap.add_argument("--workers", default="1,2,4", help="worker counts to run")
    ap.add_argument("--cached-workers", type=int, default=2, help="workers of the cached re-run (no judge work: "
                    "one per core)")
    ap.add_argument("--embedded-limit", type=int, default=6, help="BBH items for the embedded judge (0: skip)")
    ap.add_argument("--skip-embedded", action="store_true")
    ap.add_argument("--redis-host", default="redis://127.0.0.1:6379")
    ap.add_argument("--redis-db", type=int, default=11)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "throughput.json")
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve, args.latency, args.cap, args.fail_every)

    from slicelab.service.readers import read_eval_samples

    redis_url = f"{args.redis_host}/{args.redis_db}"
    limit = args.cap / args.latency
    workers = [int(w) for w in args.workers.split(",")]
    result: dict = {"machine_start": machine(), "server": {"latency_s": args.latency, "cap": args.cap,
                                                             "limit_req_per_s": limit}}
    print(f"machine: {result['machine_start']['cores']} cores, {result['machine_start']['cpu']}, "
          f"load average {result['machine_start']['load_average']}")
    print(f"simulated server: {args.latency * 1000:.0f} ms per request, {args.cap} at once -> limit {limit:.0f} req/s")
    server = SimServer(args.latency, args.cap)
    try:
        with tempfile.TemporaryDirectory(prefix="slicelab-bench-") as tmp:
            tmp = Path(tmp)
            big = write_input(tmp / "big.jsonl", args.items)
            small = write_input(tmp / "small.jsonl", args.scale_items)
            items = [s for s in read_eval_samples(small) if not hasattr(s, "reason")]
            result["direct"] = [direct(server, items, c) for c in sorted({args.concurrency,
                                                                          args.concurrency * max(workers)})]
            for d in result["direct"]:
                print(f"direct client calls, concurrency {d['concurrency']}: {d['labels_per_s']} labels/s "
                      f"({100 * d['labels_per_s'] / limit:.1f}% of the limit), {d['cpu_ms_per_label']} ms CPU/label")
            result["pipeline"] = []
            for w in workers:
                inp = big if w == max(workers) else small
                r = pipeline(server, inp, tmp / f"w{w}", w, args.concurrency, redis_url, flush=True)
                result["pipeline"].append(r)
                print(f"full pipeline, {w} worker(s) x {args.concurrency} in flight, {r['items']} samples: "
                      f"{r['labels_per_s']} labels/s over the judge window = {100 * r['labels_per_s'] / limit:.1f}% "
                      f"of the limit (target >= 90%) {verdict(r['labels_per_s'] >= 0.9 * limit)}; "
                      f"end to end {r['labels_per_s_end_to_end']} labels/s ({r['wall_s']} s); CPU/label "
                      f"{r['cpu_ms_per_label_pipeline']} ms all pipeline processes, "
                      f"{r['cpu_ms_per_label_label_task']} ms in the label task (target < 5 ms) "
                      f"{verdict(r['cpu_ms_per_label_pipeline'] < 5)}")
            best = result["pipeline"][-1]
            print(f"shared prompt prefix: {100 * best['prefix_share']:.1f}% of prompt characters; "
                  f"output tokens per label (simulated replies): {best['output_tokens_per_label']}")
            cached = pipeline(server, big, tmp / "cached", args.cached_workers, args.concurrency, redis_url,
                              flush=False)
            result["cached_rerun"] = cached
            print(f"fully cached re-run of {cached['items']} samples, {args.cached_workers} workers: "
                  f"{cached['wall_s']} s end to end "
                  f"(target < 10 s) {verdict(cached['wall_s'] < 10)}; {cached['cache_hits']} cache hits, "
                  f"{cached['judge_requests']} judge requests; CPU/label {cached['cpu_ms_per_label_pipeline']} ms")
    finally:
        server.close()
    if args.embedded_limit and not args.skip_embedded:
        result["embedded"] = emb = embedded(args.embedded_limit)
        for when, label in (("before", "context reset per call"), ("after", "shared prefix reused")):
            e = emb[when]
            print(f"embedded judge, {label}: {e['labels_per_s']} labels/s ({e['s_per_label']} s/label), "
                  f"{e['output_tokens_per_label']} output tokens/label, {e['labeled']}/{e['items']} labeled")
    write_result(result, args.out)


if __name__ == "__main__":
    main()
