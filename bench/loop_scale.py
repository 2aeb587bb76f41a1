"""The loop at training-run scale: slices, compare, diagnose and a checkpoint series over 10k–100k samples.

    python bench/loop_scale.py [--sizes 10000,30000,100000] [--runs 50] [--skip-cli] [--keep DIR]

For every size N, a temporary folder gets labels for N samples and the results of ``--runs``
checkpoints of all of them in one Parquet file (N × runs rows; ``bench/loop_data.py``). Each
measurement then runs in a fresh Python process, timed from its start (imports included) to its
end, with its CPU time and peak RSS from ``os.wait4``; the operation's own time, inside the
process, is reported beside it (on a shared machine the CPU time is the steadier figure):

- ``slices``: ``load_results(runs=[baseline, candidate])`` + ``slice_stats`` + the JSON the
  command writes;
- ``compare``: ``load_results(runs=...)`` + ``compare`` + its JSON;
- ``diagnose``: ``compare`` + ``mapping.diagnose`` + its JSON and HTML/Markdown reports, as the
  command writes them;
- ``series``: every checkpoint, ``load_results(scores_only=True)`` + ``checkpoint_series``;
- ``slices_all``: ``slice_stats`` over every checkpoint (``slices --results`` without ``--run``);
- ``diagnose_cli``: the ``slicelab diagnose`` command as users run it (it reads only the two runs compared);
- ``slices_cli``: the ``slicelab slices --results --run A --run B`` command (reads only those runs);
- at the largest N, ``diagnose`` on a file holding only the two runs compared (memory must not
  depend on the other runs) and the read of two runs by pyarrow (``load_results``), pyarrow
  dataset filters and DuckDB (``--duckdb-python``: a Python with duckdb and this project's
  packages; skipped when there is none).

The baseline and candidate are the last two checkpoints (the last one regresses in two task
families, so diagnose has a verdict to find). Targets: ``diagnose`` of two runs over 100k
samples < 10 s and < 2 GiB; its memory the same whatever the number of runs in the file.
Figures are printed next to their targets and written to ``--out``; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from loop_data import run_names, write_labels, write_results  # noqa: E402
from throughput import machine, write_result  # noqa: E402

GIB = 1024 ** 3
TARGET_S, TARGET_GIB = 10.0, 2.0


# --- measurements, each in its own process ----------------------------------------------------------------


def measure(kind: str, data: Path, baseline: str, candidate: str, out: Path) -> dict:
    """Run one measurement in this process (called by ``--measure``); returns what it found."""
    from slicelab.service.output import read_table
    from slicelab.service.results import load_results

    t0 = time.perf_counter()
    labels = read_table(data / "labels.parquet")
    results_file = data / "results.parquet"
    pair = [baseline, candidate]
    if kind in ("slices", "slices_all"):
        from slicelab.service.slice_stats import slice_stats

        res = load_results(results_file, runs=pair if kind == "slices" else None, scores_only=kind == "slices_all")
        table, meta = slice_stats(labels, res, pair if kind == "slices" else None)
        out.write_text(json.dumps({**meta, "slices": json.loads(table.to_json(orient="records"))}))
        found = {"rows": len(table), "result_rows": len(res)}
    elif kind == "series":
        from slicelab.service.series import checkpoint_series

        res = load_results(results_file, scores_only=True)
        table, meta = checkpoint_series(labels, res)
        table.to_json(out, orient="records")
        found = {"slices": len(table), "checkpoints": len(meta["runs"]), "result_rows": len(res)}
    elif kind in ("compare", "diagnose"):
        from slicelab.service.comparison import compare

        res = load_results(results_file, runs=pair)
        cmp = compare(labels, res, baseline, candidate, ks=(1, 5, 10) if bool((res["n_samples"] > 1).any()) else ())
        payload = cmp.to_dict()
        found = {"slices": len(cmp.slices), "result_rows": len(res)}
        if kind == "compare":
            out.write_text(json.dumps(payload, allow_nan=False))
        else:
            from slicelab.service.mapping import diagnose
            from slicelab.service.reports import write_report

            result = diagnose(cmp)
            out.write_text(json.dumps(result, allow_nan=False))
            write_report("diagnose", result, out.with_suffix(""), comparison=payload)
            found["verdict"] = result["verdict"]
    elif kind == "read_pyarrow_dataset":
        import pyarrow.dataset as ds

        table = ds.dataset(results_file).to_table(filter=ds.field("run").isin(pair))
        found = {"result_rows": len(table.to_pandas())}
    elif kind == "read_duckdb":
        import duckdb

        frame = duckdb.sql(f"SELECT * FROM read_parquet('{results_file}') WHERE run IN ('{baseline}', '{candidate}')").df()
        found = {"result_rows": len(frame)}
    elif kind == "read_load_results":
        found = {"result_rows": len(load_results(results_file, runs=pair))}
    else:
        raise SystemExit(f"unknown measurement {kind}")
    return {**found, "op_s": round(time.perf_counter() - t0, 3)}


def in_process(kind: str, data: Path, baseline: str, candidate: str, *, python: str = sys.executable) -> dict:
    """One measurement in a new process: wall time and peak RSS (``os.wait4``), plus what it reported."""
    out = data / f"{kind}.json"
    cmd = [python, __file__, "--measure", kind, "--data", str(data), "--baseline", baseline, "--candidate", candidate]
    return _timed(cmd, out)


def cli_diagnose(data: Path, baseline: str, candidate: str) -> dict:
    """``slicelab diagnose`` as users run it (only the two compared runs of the file are read)."""
    cmd = [sys.executable, "-m", "slicelab.service.cli", "diagnose", "--labels", str(data / "labels.parquet"),
           "--results", str(data / "results.parquet"), "--baseline", baseline, "--candidate", candidate,
           "-o", str(data / "cli_diagnosis.json")]
    return _timed(cmd, None)


def cli_slices(data: Path, baseline: str, candidate: str) -> dict:
    """``slicelab slices --results FILE --run A --run B`` as users run it (only those runs are read)."""
    cmd = [sys.executable, "-m", "slicelab.service.cli", "slices", str(data / "labels.parquet"),
           "--results", str(data / "results.parquet"), "--run", baseline, "--run", candidate,
           "-o", str(data / "cli_slices.json")]
    return _timed(cmd, None)


def _timed(cmd: list[str], report: Path | None) -> dict:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    row = {"wall_s": round(wall, 2), "peak_rss_gib": round(usage.ru_maxrss * 1024 / GIB, 3),
           "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "load_average": [round(x, 2) for x in os.getloadavg()]}
    if proc.returncode != 0:
        return {**row, "error": (stderr or stdout)[-1500:]}
    if report is not None:
        row.update(json.loads(stdout.strip().splitlines()[-1]))
    return row


# --- the run ----------------------------------------------------------------------------------------------


def make_data(folder: Path, n: int, runs: int) -> float:
    """Labels and results of ``runs`` checkpoints for ``n`` samples in ``folder``; seconds taken."""
    from slicelab.service.taxonomy import load_taxonomy

    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    axes = {a.name: [label.id for label in a.labels] for a in load_taxonomy().axes("eval")}
    family = write_labels(folder / "labels.parquet", n, axes)
    write_results(folder / "results.parquet", family, runs)
    return time.perf_counter() - t0


def two_run_copy(src: Path, dst: Path, pair: list[str]) -> None:
    """The labels and only the two compared runs of ``src``, in ``dst``."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    dst.mkdir(parents=True, exist_ok=True)
    (dst / "labels.parquet").write_bytes((src / "labels.parquet").read_bytes())
    pq.write_table(ds.dataset(src / "results.parquet").to_table(filter=ds.field("run").isin(pair)),
                   dst / "results.parquet")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def row_text(name: str, r: dict) -> str:
    if "error" in r:
        return f"{name:<34} failed: {r['error'].strip().splitlines()[-1]}"
    extra = "".join(f", {k} {r[k]}" for k in ("verdict", "slices", "rows", "checkpoints") if k in r)
    op = f"{r['op_s']:>8.2f} s" if "op_s" in r else f"{'':>10}"
    rows = f"{r['result_rows']:>10,} rows" if "result_rows" in r else f"{'':>15}"
    return f"{name:<34} {r['wall_s']:>8.2f} s {r['cpu_s']:>8.2f} s {op} {r['peak_rss_gib']:>7.2f} GiB {rows}" + extra


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--baseline", help=argparse.SUPPRESS)
    ap.add_argument("--candidate", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="10000,30000,100000", help="sample counts, comma-separated")
    ap.add_argument("--runs", type=int, default=50, help="checkpoints in the results file")
    ap.add_argument("--skip-cli", action="store_true", help="do not run the `slicelab diagnose` and `slicelab slices` commands")
    ap.add_argument("--duckdb-python", default=str(Path("/work/peer-venvs/prof/bin/python")),
                    help="a Python with duckdb and this project's packages, for the DuckDB read")
    ap.add_argument("--keep", type=Path, help="write the data here and keep it (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "loop_scale.json")
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.data, args.baseline, args.candidate,
                                 args.data / f"{args.measure}.out.json")))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    baseline, candidate = run_names(args.runs)[-2:]
    result: dict = {"machine_start": machine(), "runs": args.runs, "baseline": baseline, "candidate": candidate,
                    "targets": {"diagnose_s": TARGET_S, "diagnose_gib": TARGET_GIB}, "sizes": {}}
    m = result["machine_start"]
    print(f"machine: {m['cores']} cores, {m['cpu']}, load average {m['load_average']}")
    print(f"{args.runs} checkpoints per file; compared: {baseline} -> {candidate}")
    print(f"{'measurement':<34} {'wall':>10} {'CPU':>10} {'in-process':>10} {'peak RSS':>11} {'result rows':>15}")
    with tempfile.TemporaryDirectory(prefix="slicelab-loop-") as tmp:
        root = args.keep or Path(tmp)
        for n in sizes:
            data = root / f"n{n}"
            made = make_data(data, n, args.runs)
            print(f"--- {n:,} samples x {args.runs} checkpoints = {n * args.runs:,} result rows "
                  f"(written in {made:.1f} s, {(data / 'results.parquet').stat().st_size / 2**20:.0f} MiB Parquet)")
            rows = {}
            for kind in ("slices", "compare", "diagnose", "series", "slices_all"):
                rows[kind] = in_process(kind, data, baseline, candidate)
                print(row_text(kind, rows[kind]))
            if not args.skip_cli:
                rows["diagnose_cli"] = cli_diagnose(data, baseline, candidate)
                print(row_text("diagnose_cli (the command)", rows["diagnose_cli"]))
                rows["slices_cli"] = cli_slices(data, baseline, candidate)
                print(row_text("slices_cli (--run x2, the command)", rows["slices_cli"]))
            if n == max(sizes):
                two = root / f"n{n}-2runs"
                two_run_copy(data, two, [baseline, candidate])
                rows["diagnose_2_run_file"] = in_process("diagnose", two, baseline, candidate)
                print(row_text("diagnose, file of the 2 runs only", rows["diagnose_2_run_file"]))
                for kind in ("read_load_results", "read_pyarrow_dataset"):
                    rows[kind] = in_process(kind, data, baseline, candidate)
                    print(row_text(kind, rows[kind]))
                if Path(args.duckdb_python).is_file():
                    rows["read_duckdb"] = in_process("read_duckdb", data, baseline, candidate,
                                                     python=args.duckdb_python)
                    print(row_text("read_duckdb", rows["read_duckdb"]))
            result["sizes"][str(n)] = rows
    big, small = result["sizes"][str(max(sizes))], result["sizes"][str(min(sizes))]
    d = big["diagnose"]
    if "error" not in d:
        print(f"diagnose of two runs over {max(sizes):,} samples: {d['wall_s']} s wall, {d['cpu_s']} s CPU "
              f"(target < {TARGET_S:.0f} s) {verdict(d['wall_s'] < TARGET_S)} on wall, {verdict(d['cpu_s'] < TARGET_S)} on "
              f"CPU; {d['peak_rss_gib']} GiB (target < {TARGET_GIB:.0f} GiB) {verdict(d['peak_rss_gib'] < TARGET_GIB)}")
    two = big.get("diagnose_2_run_file", {})
    if "peak_rss_gib" in two and "error" not in d:
        ratio = d["peak_rss_gib"] / two["peak_rss_gib"]
        print(f"memory vs runs in the file: {d['peak_rss_gib']} GiB with {args.runs} runs, {two['peak_rss_gib']} GiB "
              f"with 2 (ratio {ratio:.2f}; target: independent) {verdict(ratio < 1.1)}")
    if len(sizes) > 1:
        for kind in ("slices", "compare", "diagnose", "series"):
            a, b = small.get(kind, {}), big.get(kind, {})
            if "error" not in a and "error" not in b:
                print(f"growth {min(sizes):,} -> {max(sizes):,} samples, {kind}: wall x{b['wall_s'] / a['wall_s']:.2f}, "
                      f"in-process x{b['op_s'] / a['op_s']:.2f}, peak RSS x{b['peak_rss_gib'] / a['peak_rss_gib']:.2f}")
    write_result(result, args.out)


if __name__ == "__main__":
    main()
