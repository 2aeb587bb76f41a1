"""slicelab and the tools users would pick instead, on the same labeling job against one simulated server.

    python bench/peers.py [--n 5000] [--latency 0.25] [--cap 32] [--concurrency 64] [--workers 4]
                          [--fail-every 20] [--peer-python TOOL=PATH ...] [--tools slicelab,distilabel,...]

The job: ``--n`` evaluation samples (the bundled BBH items resampled into distinct requests, as in
``bench/throughput.py``), each rendered into slicelab's prompt (system and user turn) with
slicelab's label model as the JSON schema. Every tool sends exactly these messages and this
schema (``response_format`` JSON schema) to the same simulated OpenAI-compatible server
(``bench/throughput.py``: ``--latency`` seconds per request, ``--cap`` at once, so its limit is
``cap / latency`` requests/s; compact JSON replies) and keeps at most ``--concurrency`` requests in
flight: slicelab as ``label-benchmark --judge-url`` with ``--workers`` workers of
``concurrency / workers`` each; distilabel, Bespoke Curator and datatrove through
``bench/peer_jobs.py`` in their own environments (``--peer-python TOOL=PATH``, else
``/work/peer-venvs/<tool>/bin/python``; how to make them: ``docs/performance.md``).

Each tool runs twice: against a healthy server, and against one that answers every
``--fail-every``-th request with HTTP 500 (5% at 20). Per run: labels/s over the server's busy
window as a share of its limit, end-to-end seconds, CPU ms per label (the tool's process and
every process it starts; the server excluded), peak RSS (the sum over those processes, sampled
every 0.2 s), output rows with a valid label against input rows, and the server's count of
requests and 500s. A tool that cannot run gets its row with the reason. Figures are printed and
written to ``--out``, and the goals are printed last with the figures they compare (:func:`goals`:
slicelab ahead of every peer on share of limit and on CPU per label in the healthy runs, and the
only tool that loses no row under faults); nothing is asserted.

    python bench/peers.py --goals-only [--out FILE]   # the goals of a recorded run, without running
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from throughput import SimServer, children_cpu_s, machine, write_input, write_result  # noqa: E402

PEERS = ("distilabel", "curator", "datatrove")
GIB = 1024 ** 3


def write_job(folder: Path, n: int) -> Path:
    """``n`` resampled BBH samples as the bench input, and as rendered messages + schema for the peers."""
    from slicelab.service.judge.openai_backend import OpenAIJudge
    from slicelab.service.readers import read_eval_samples

    inp = write_input(folder / "input.jsonl", n)
    judge = OpenAIJudge(base_url="http://127.0.0.1:9/v1", model="sim")
    with open(folder / "job.jsonl", "w", encoding="utf-8") as f:
        for item in read_eval_samples(inp):
            messages, model_cls, _, _ = judge.build_request(item)
            f.write(json.dumps({"id": item.id, "messages": messages}, ensure_ascii=False) + "\n")
    (folder / "schema.json").write_text(json.dumps({"name": model_cls.__name__, "schema": model_cls.model_json_schema(),
                                                    "max_tokens": judge.max_tokens, "temperature": judge.temperature}))
    return inp


def watch(cmd: list[str], env: dict, log: Path, timeout_s: float) -> dict:
    """Run ``cmd``: wall time, CPU of it and every process it waited for (``RUSAGE_CHILDREN``), peak RSS
    summed over its process tree (psutil, 5 samples/s). After ``timeout_s`` its process group is killed."""
    import psutil

    cpu0, t0 = children_cpu_s(), time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        root, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            if time.perf_counter() - t0 > timeout_s:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                out.write(f"\nkilled: still running after {timeout_s:.0f} s\n")
                break
            rss = 0
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                tree = []
            for p in tree:
                try:
                    rss += p.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            peak = max(peak, rss)
            time.sleep(0.2)
    return {"returncode": proc.returncode, "wall_s": round(time.perf_counter() - t0, 2),
            "cpu_s": round(children_cpu_s() - cpu0, 2), "peak_rss_gib": round(peak / GIB, 3)}


def run_slicelab(job: Path, inp: Path, server: SimServer, args: argparse.Namespace, tag: str) -> dict:
    """``slicelab label-benchmark --judge-url`` with ``--workers`` × ``concurrency / workers`` in flight."""
    from redis import Redis

    Redis.from_url(args.redis_url).flushdb()
    out = job / f"slicelab-{tag}.parquet"
    per_worker = max(1, args.concurrency // args.workers)
    cmd = [sys.executable, "-m", "slicelab.service.cli", "label-benchmark", str(inp), "-o", str(out), "--workers",
           str(args.workers), "--judge-url", server.base_url, "--judge-model", "sim", "--judge-concurrency", str(per_worker)]
    row = _run(cmd, os.environ | {"REDIS_URL": args.redis_url}, job / f"slicelab-{tag}.log", args.timeout)
    if row.get("error") is None:
        import pandas as pd

        df = pd.read_parquet(out, columns=["id", "status"])
        row.update(rows_out=int(len(df)), rows_labeled=int((df["status"] == "labeled").sum()),
                   statuses={k: int(v) for k, v in df["status"].value_counts().items()})
    row["setup"] = f"{args.workers} workers x {per_worker} in flight"
    return row


def run_peer(tool: str, python: str, job: Path, server: SimServer, args: argparse.Namespace, tag: str) -> dict:
    out = job / f"{tool}-{tag}.jsonl"
    cmd = [python, str(ROOT / "bench" / "peer_jobs.py"), tool, "--job", str(job), "--base-url", server.base_url,
           "--concurrency", str(args.concurrency), "--out", str(out)]
    env = os.environ | {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "TELEMETRY_ENABLED": "false", "HF_HUB_OFFLINE": "1",
                        "OPENAI_API_KEY": "none"}
    env.pop("PYTHONPATH", None)
    row = _run(cmd, env, job / f"{tool}-{tag}.log", args.timeout)
    if out.is_file():  # rows written before a failure count too
        rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        row.update(rows_out=len(rows), rows_labeled=sum(r["label"] is not None for r in rows),
                   distinct_ids=len({r["id"] for r in rows}))
    row["setup"] = f"{args.concurrency} in flight"
    return row


def _run(cmd: list[str], env: dict, log: Path, timeout_s: float) -> dict:
    row = watch(cmd, env, log, timeout_s)
    if row["returncode"] != 0:
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-3:]
        row["error"] = " | ".join(tail)[-600:]
    return row


def measured(row: dict, server: SimServer, n: int, limit: float, load: list) -> dict:
    stats = server.get("stats")
    window = (stats["last_end"] - stats["first_start"]) if stats["requests"] else None
    labels = row.get("rows_labeled", 0)
    row.update(server_requests=stats["arrived"], server_500s=stats["failed"], server_max_in_flight=stats["max_in_flight"],
               labels_per_s=round(labels / window, 1) if window and labels else None,
               share_of_limit=round(labels / window / limit, 3) if window and labels else None,
               cpu_ms_per_label=round(1000 * row["cpu_s"] / labels, 2) if labels else None,
               rows_missing=n - row.get("rows_out", 0), rows_without_label=row.get("rows_out", 0) - labels,
               load_average_before=load)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="evaluation samples (distinct requests)")
    ap.add_argument("--latency", type=float, default=0.25, help="seconds the server takes per request")
    ap.add_argument("--cap", type=int, default=32, help="requests the server works on at once")
    ap.add_argument("--concurrency", type=int, default=64, help="requests every tool keeps in flight (all processes)")
    ap.add_argument("--workers", type=int, default=4, help="slicelab workers (each keeps concurrency/workers)")
    ap.add_argument("--fail-every", type=int, default=20, help="every k-th request gets HTTP 500 in the fault runs")
    ap.add_argument("--tools", default="slicelab," + ",".join(PEERS))
    ap.add_argument("--timeout", type=float, help="seconds a tool may take (default: 10x the server's time for "
                    "the job, at least 180)")
    ap.add_argument("--peer-python", action="append", default=[], metavar="TOOL=PATH")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/6")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "peers.json")
    ap.add_argument("--goals-only", action="store_true", help="print the goals of the run recorded in --out and stop")
    args = ap.parse_args()
    if args.goals_only:
        print_goals(json.loads(args.out.read_text()))
        return
    pythons = {t: f"/work/peer-venvs/{t}/bin/python" for t in PEERS} | dict(p.split("=", 1) for p in args.peer_python)
    limit = args.cap / args.latency
    args.timeout = args.timeout or max(180.0, 10 * args.n / limit)
    tools = args.tools.split(",")
    result: dict = {"machine_start": machine(), "n": args.n, "concurrency": args.concurrency,
                    "server": {"latency_s": args.latency, "cap": args.cap, "limit_req_per_s": limit,
                               "fail_every": args.fail_every}, "runs": {}}
    m = result["machine_start"]
    print(f"machine: {m['cores']} cores, {m['cpu']}, load average {m['load_average']}")
    print(f"server: {args.latency * 1000:.0f} ms per request, {args.cap} at once -> limit {limit:.0f} req/s; "
          f"{args.n} samples, {args.concurrency} in flight per tool; faults: every {args.fail_every}th request HTTP 500")
    with tempfile.TemporaryDirectory(prefix="slicelab-peers-") as tmp:
        job = Path(tmp)
        inp = write_job(job, args.n)
        for tag, fail_every in (("clean", 0), ("faults", args.fail_every)):
            server = SimServer(args.latency, args.cap, fail_every)
            try:
                for tool in tools:
                    load = [round(x, 2) for x in os.getloadavg()]
                    server.get("reset")
                    if tool != "slicelab" and not Path(pythons[tool]).is_file():
                        row = {"error": f"no Python environment for {tool} at {pythons[tool]}"}
                    elif tool == "slicelab":
                        row = measured(run_slicelab(job, inp, server, args, tag), server, args.n, limit, load)
                    else:
                        row = measured(run_peer(tool, pythons[tool], job, server, args, tag), server, args.n, limit, load)
                    result["runs"].setdefault(tool, {})[tag] = row
                    print(line(tool, tag, row, args.n))
            finally:
                server.close()
    write_result(result, args.out)
    print_goals(result)


def goals(result: dict) -> list[dict]:
    """The bench's goals, each with the figures it compares and whether it is met.

    Args:
        result: a recorded run (``--out`` JSON): ``runs[tool]["clean" | "faults"]`` rows.

    Returns:
        ``[{"goal", "slicelab", "peers", "met"}]``: ``met`` is None when a figure is missing
        (slicelab or every peer could not run).
    """
    runs, n = result["runs"], result["n"]
    ours = runs.get("slicelab", {})
    peers = {t: r for t, r in runs.items() if t != "slicelab"}

    def figure(row: dict | None, key: str):
        return None if not row or (row.get("error") and not row.get("rows_labeled")) else row.get(key)

    def compare(key: str, tag: str, better) -> dict:
        mine = figure(ours.get(tag), key)
        theirs = {t: figure(r.get(tag), key) for t, r in peers.items()}
        known = [v for v in theirs.values() if v is not None]
        met = None if mine is None or not known else all(better(mine, v) for v in known)
        return {"slicelab": mine, "peers": theirs, "met": met}

    def lossless(row: dict | None) -> bool | None:
        return None if not row else row.get("rows_labeled") == n and row.get("rows_out") == n

    faults = {t: lossless(r.get("faults")) for t, r in runs.items()}
    return [
        {"goal": "share of the server's limit (healthy server): slicelab ahead of every peer",
         **compare("share_of_limit", "clean", lambda a, b: a > b)},
        {"goal": "CPU ms per label (healthy server): slicelab below every peer",
         **compare("cpu_ms_per_label", "clean", lambda a, b: a < b)},
        {"goal": "under 5% HTTP 500s, the only tool that labels every row",
         "slicelab": faults.get("slicelab"), "peers": {t: v for t, v in faults.items() if t != "slicelab"},
         "met": None if faults.get("slicelab") is None else
         bool(faults["slicelab"]) and not any(v for t, v in faults.items() if t != "slicelab")},
    ]


def print_goals(result: dict) -> None:
    """Print each goal of :func:`goals` with its figures and ``met`` / ``NOT met`` / ``unknown``."""
    print("goals:")
    for g in goals(result):
        verdict = {True: "met", False: "NOT met", None: "unknown (a figure is missing)"}[g["met"]]
        peers = ", ".join(f"{t} {v}" for t, v in g["peers"].items())
        print(f"  {g['goal']}: slicelab {g['slicelab']} vs {peers} -> {verdict}")


def line(tool: str, tag: str, r: dict, n: int) -> str:
    head = f"{tool:<11} {tag:<7}"
    if r.get("error") and not r.get("rows_labeled"):
        return f"{head} cannot run the job: {r['error']}"
    share = f"{100 * r['share_of_limit']:.1f}% of limit" if r.get("share_of_limit") else "—"
    return (f"{head} {r.get('labels_per_s') or 0:>7} labels/s = {share:<16} {r['wall_s']:>7.1f} s end to end  "
            f"{r.get('cpu_ms_per_label') or 0:>6} ms CPU/label  {r['peak_rss_gib']:.2f} GiB  "
            f"{r.get('rows_out', 0)}/{n} rows out, {r.get('rows_labeled', 0)} labeled  "
            f"server: {r['server_requests']} requests, {r['server_500s']} HTTP 500"
            + (f"  [exit {r['returncode']}: {r['error'][:200]}]" if r.get("error") else ""))


if __name__ == "__main__":
    main()
