"""Benchmark: student labeling throughput and peak memory of ``slicelab label-shard`` at two shard sizes.

What it does, in one run:

1. Builds a shard of ``--rows`` rows by resampling the real pretraining documents in
   ``/work/shared/data/pretrain/`` (``docs.jsonl`` + ``math_docs.jsonl``), or the bundled
   ``service/data/pretrain_sample.jsonl`` when that folder is absent. Each row is the head of
   one random document and the tail of another, cut at spaces, so rows are distinct
   documents of realistic length and vocabulary (not copies the deduplication would drop).
   Written as Parquet (zstd, row groups of 10,000), streamed, never held whole.
2. Trains a student on the bundled document gold set (a stand-in for judge labels: this
   measures speed, not quality) and saves it, marked as labeling every axis.
3. Runs ``slicelab label-shard SHARD -o OUT --judge-sample 0 --student HASH --workers W``
   (real Redis, real RQ worker processes) on that shard, then on one ``--scale`` times
   larger, polling the RSS of the command and its workers every 0.2 s.
4. Prints, per size: rows, index-pass rows/s, label-phase docs/s (rows labeled / seconds of
   the label phase, from the run's summary.json), end-to-end rows/s, peak RSS of the largest
   process and of the whole process tree — beside the targets (>= 5,000 docs/s on 2 cores at
   512-token truncation; peak RSS < 1 GiB). Targets are printed, not asserted.

Usage::

    .venv/bin/python bench/shard_student.py [--rows 200000] [--scale 10] [--workers 2] [--workdir DIR]

Needs Redis (``REDIS_URL``, else the local default, else the embedded one) like every
labeling command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARED = Path("/work/shared/data/pretrain")
BUNDLED = ROOT / "service" / "data" / "pretrain_sample.jsonl"
TARGET_DOCS_S = 5000
TARGET_RSS_BYTES = 1 << 30


def source_texts() -> tuple[list[str], str]:
    """Texts to resample and where they came from."""
    files = [SHARED / "docs.jsonl", SHARED / "math_docs.jsonl"]
    if not all(f.is_file() for f in files):
        files = [BUNDLED]
    texts = [json.loads(line)["text"] for f in files for line in f.open(encoding="utf-8") if line.strip()]
    return texts, ", ".join(str(f) for f in files)


def build_shard(path: Path, n_rows: int, texts: list[str], seed: int = 0, chunk: int = 10_000) -> None:
    """Write ``n_rows`` spliced documents to a Parquet shard, ``chunk`` rows at a time."""
    rng = random.Random(seed)
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string())])
    with pq.ParquetWriter(path, schema, compression="zstd") as w:
        for start in range(0, n_rows, chunk):
            ids, out = [], []
            for i in range(start, min(start + chunk, n_rows)):
                a, b = rng.choice(texts), rng.choice(texts)
                cut_a = a.find(" ", rng.randint(0, len(a) - 1))
                cut_b = b.find(" ", rng.randint(0, len(b) - 1))
                head = a if cut_a < 0 else a[:cut_a]
                tail = "" if cut_b < 0 else b[cut_b + 1:]
                ids.append(f"bench-{i:09d}")
                out.append(f"{head} {tail}".strip() or a)
            w.write_table(pa.table({"id": ids, "text": out, "source": ["bench"] * len(ids)}, schema=schema))


def train_student(home: Path) -> str:
    """Train and save a student on the bundled document gold set; return its hash."""
    os.environ["SLICELAB_HOME"] = str(home)
    from slicelab.calibration.gold import BUNDLED as GOLD_FILES, GOLD, load_gold
    from slicelab.service.student import ShardStudent, save_student

    gold = load_gold(GOLD_FILES["document"])
    ids = list(gold.items)
    student = ShardStudent().fit([gold.items[i].text for i in ids], [gold.labels[GOLD][i] for i in ids])
    digest, _ = save_student(student, {"axes_passed": [a.name for a in student.axes],
                                       "note": "benchmark student: trained on the gold set, labels every axis"})
    return digest


def run_label_shard(shard: Path, out: Path, digest: str, workers: int, max_tokens: int, home: Path) -> dict:
    """Run label-shard; return its summary, peak RSS (largest process, whole tree), wall and index seconds.

    A command killed by a signal from outside (rc < 0) is run once more: the run resumes where it
    stopped (the label-phase rate then covers the rows of the second invocation); ``resumed`` says so.
    """
    cmd = [sys.executable, "-m", "slicelab.service.cli", "label-shard", str(shard), "-o", str(out), "--judge-sample", "0",
           "--student", digest, "--workers", str(workers), "--max-doc-tokens", str(max_tokens),
           "--rows-per-job", "20000", "--queue", f"bench-shards-{uuid.uuid4().hex[:6]}"]
    env = os.environ | {"SLICELAB_HOME": str(home), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    peak_one = peak_tree = 0
    index_s = None
    for attempt in range(2):
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        parent = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = [p.memory_info().rss for p in [parent, *parent.children(recursive=True)]]
            except psutil.Error:
                rss = []
            if rss:
                peak_one, peak_tree = max(peak_one, max(rss)), max(peak_tree, sum(rss))
            if index_s is None and (out / "index" / "index.json").is_file():
                index_s = time.perf_counter() - t0
            time.sleep(0.2)
        stdout, stderr = proc.communicate()
        if proc.returncode >= 0 or attempt:
            break
        print(f"  label-shard was killed from outside (signal {-proc.returncode}); resuming it", flush=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"label-shard failed ({proc.returncode}):\n{stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {"summary": summary, "peak_rss_process": peak_one, "peak_rss_tree": peak_tree, "wall_s": wall,
            "index_s": index_s if attempt else summary["timings_s"]["index_s"], "resumed": attempt > 0}


def report(rows: int, r: dict) -> dict:
    t = r["summary"]["timings_s"]
    docs_s = t["label_rows"] / t["label_s"] if t.get("label_s") else None
    fig = {"rows": rows, "index_rows_s": rows / r["index_s"], "label_docs_s": docs_s, "resumed": r["resumed"],
           "end_to_end_rows_s": rows / r["wall_s"], "wall_s": r["wall_s"],
           "peak_rss_process_mib": r["peak_rss_process"] / 2 ** 20, "peak_rss_tree_mib": r["peak_rss_tree"] / 2 ** 20}
    ok_speed = "meets" if docs_s and docs_s >= TARGET_DOCS_S else "BELOW"
    ok_rss = "meets" if r["peak_rss_process"] < TARGET_RSS_BYTES else "ABOVE"
    print(f"{rows:>10,} rows | index {fig['index_rows_s']:>8,.0f} rows/s | label phase {docs_s or 0:>7,.0f} docs/s "
          f"({ok_speed} target {TARGET_DOCS_S:,}) | end to end {fig['end_to_end_rows_s']:>7,.0f} rows/s, "
          f"{r['wall_s']:.0f} s | peak RSS largest process {fig['peak_rss_process_mib']:.0f} MiB ({ok_rss} target "
          f"1,024 MiB), whole tree {fig['peak_rss_tree_mib']:.0f} MiB", flush=True)
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000, help="rows of the first shard")
    ap.add_argument("--scale", type=int, default=10, help="the second shard has rows x scale rows")
    ap.add_argument("--workers", type=int, default=2, help="worker processes")
    ap.add_argument("--max-doc-tokens", type=int, default=512, help="token budget documents are cut to")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/slicelab-bench-shards"), help="shards and runs go here")
    ap.add_argument("--keep", action="store_true", help="keep the shards and runs afterwards")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args()

    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    texts, origin = source_texts()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
          f"load average {os.getloadavg()[0]:.1f}; python {platform.python_version()}")
    print(f"documents resampled from {origin} ({len(texts):,} texts)")
    digest = train_student(work / "home")
    print(f"student {digest} (trained on the bundled document gold set)")
    figures = []
    for n in (args.rows, args.rows * args.scale):
        shard = work / f"shard-{n}.parquet"
        t0 = time.perf_counter()
        build_shard(shard, n, texts)
        print(f"built {shard.name}: {n:,} rows, {shard.stat().st_size / 2**20:,.0f} MiB in {time.perf_counter() - t0:.0f} s",
              flush=True)
        r = run_label_shard(shard, work / f"out-{n}", digest, args.workers, args.max_doc_tokens, work / "home")
        figures.append(report(n, r))
        if not args.keep:
            shard.unlink()
            shutil.rmtree(work / f"out-{n}")
    a, b = figures
    print(f"peak RSS at {args.scale}x the rows: {b['peak_rss_process_mib'] / a['peak_rss_process_mib']:.2f}x "
          f"(largest process), {b['peak_rss_tree_mib'] / a['peak_rss_tree_mib']:.2f}x (tree); load average now "
          f"{os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "source": origin, "workers": args.workers,
                                         "max_doc_tokens": args.max_doc_tokens}, indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
