"""Label quality on a CPU: every labeler on every axis of the bundled gold sets (v1 + v2).

By default no LLM is run: the labelers without one (``shape``, ``knn``,
``student``) are measured on the held-out split of the merged bundled gold sets
of each kind, and the script prints, per kind,

1. **leave-one-benchmark-out** (the headline: what to expect on a benchmark with
   no gold items): every item labeled from pools of the other benchmarks only,
   Cohen's kappa with its 95% bootstrap interval per labeler and axis, beside the
   1-NN nearest-exemplar baseline, and per held-out benchmark;
2. the in-distribution axis × labeler table: Cohen's kappa [95% CI], the
   alternative annotator test's winning rate ω and advantage probability ρ
   (Calderon, Reichart & Dror, ACL 2025; ε from ``calibration/gate.yaml``), the
   selected labeler and its gate verdict, the 1-NN baseline and the annotators' κ;
3. seconds per label, and the machine.

``--judge`` also runs ``slicelab calibrate`` with the embedded LLM judge
(zero-shot and with ``--k`` exemplars) on each gold file, as before; with
``--self-consistency K`` the few-shot run also measures the self-consistent judge
(Wang et al. 2023, ICLR).

    python bench/label_quality.py [--kinds eval,document] [--judge [--k 3] [--workers 2] [--limit N]
                                  [--self-consistency K [--sc-temperature T]]]

Figures are printed and written to ``--out`` (JSON); nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slicelab.calibration.gold import BUNDLED, BUNDLED_ALL  # noqa: E402
from slicelab.calibration.offline import calibrate_offline  # noqa: E402
from slicelab.calibration.run import run_calibration, table  # noqa: E402
from slicelab.service.defaults import SC_TEMPERATURE  # noqa: E402
from slicelab.service.judge import judge_spec  # noqa: E402
from slicelab.service.redis_conn import resolve_redis_url  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def fmt(x, d=2):
    return "—" if x is None else f"{x:.{d}f}"


def run(kind: str, k: int, workers: int, limit: int | None, redis_url: str, self_consistency: int = 0,
        sc_temperature: float = SC_TEMPERATURE) -> dict:
    spec = judge_spec(exemplars_k=k, exemplars_gold=str(BUNDLED[kind]) if k else None)
    t0 = time.perf_counter()
    record = run_calibration(BUNDLED[kind], spec, redis_url, workers=workers, limit=limit,
                             threads_per_worker=max(1, (os.cpu_count() or 1) // workers),
                             self_consistency=self_consistency, sc_temperature=sc_temperature)
    return {"record": record, "wall_s": round(time.perf_counter() - t0, 1)}


def merged_table(zero: dict, few: dict, k: int) -> dict:
    """Per axis: judge zero-shot, judge k-shot, and the cheap labelers (from the k-shot run)."""
    t0, tk = table(zero["record"]), table(few["record"])
    out = {}
    for axis in tk:
        row = {"judge (zero-shot)": t0[axis]["labelers"]["judge"], f"judge ({k}-shot)": tk[axis]["labelers"]["judge"]}
        for name in ("knn", "student"):
            row[name] = tk[axis]["labelers"][name]
        row[f"cascade (knn + {k}-shot judge)"] = tk[axis]["labelers"]["cascade"]
        if "judge_sc" in tk[axis]["labelers"]:
            sc = few["record"]["labelers"]["judge_sc"]
            row[f"judge_sc ({k}-shot, {sc['k']} samples, T={sc['temperature']})"] = tk[axis]["labelers"]["judge_sc"]
        ann = few["record"]["axes"][axis].get("annotators", {})
        ann = ann.get("primary", ann) if few["record"]["axes"][axis]["kind"] == "operations" else ann
        out[axis] = {"labelers": row, "selected": tk[axis]["selected"], "annotators_kappa": ann.get("cohen_kappa"),
                     "nearest_exemplar_1nn_kappa": _baseline(few["record"], axis)}
    return out


def _baseline(record: dict, axis: str):
    m = record["axes"][axis]["baselines"]["nearest_exemplar"]
    return (m.get("primary", m) if record["axes"][axis]["kind"] == "operations" else m).get("cohen_kappa")


def print_table(kind: str, rows: dict, few: dict) -> None:
    names = list(next(iter(rows.values()))["labelers"])
    print(f"\n### {kind} gold set — held-out n={few['record']['split']['n_heldout']}, "
          f"pool n={few['record']['split']['n_pool']}\n")
    print("| axis | " + " | ".join(names) + " | selected (k-shot run) | 1-NN baseline κ | annotators κ |")
    print("|---" * (len(names) + 4) + "|")
    for axis, row in rows.items():
        cells = [f"κ {fmt(s['kappa'])} [{fmt(s['kappa_ci_low'])}, {fmt(s['kappa_ci_high'])}], acc {fmt(s['accuracy'])}"
                 for s in row["labelers"].values()]
        label = axis.replace("solving_operations", "primary operation").replace(
            "demonstrated_operations", "primary demonstrated operation")
        print(f"| {label} | " + " | ".join(cells) + f" | {row['selected']} | {fmt(row['nearest_exemplar_1nn_kappa'])}"
              f" | {fmt(row['annotators_kappa'])} |")
    spl = {n: s.get("seconds_per_label") for n, s in next(iter(rows.values()))["labelers"].items()}
    print("\nseconds per label: " + ", ".join(f"{n} {fmt(v, 4)}" for n, v in spl.items()))
    share = few["record"]["labelers"]["cascade"]["share_to_judge"]["any_axis"]
    print(f"cascade sends {share:.0%} of items to the judge (threshold "
          f"{few['record']['labelers']['cascade']['threshold']})")
    lobo = few["record"].get("leave_one_benchmark_out")
    if lobo:
        print(f"\nleave-one-benchmark-out (pool = other sources of {', '.join(lobo['sources'])}):")
        for axis in rows:
            print(f"  {axis}: " + ", ".join(f"{n} κ {fmt(lobo[n][axis]['kappa'])}" for n in lobo if n != "sources"))


AXIS_NAMES = {"solving_operations": "primary operation", "demonstrated_operations": "primary demonstrated operation"}


def _ci(s: dict | None) -> str:
    if not s or s.get("kappa") is None:
        return "—"
    return f"{fmt(s['kappa'])} [{fmt(s['kappa_ci_low'])}, {fmt(s['kappa_ci_high'])}]"


def print_lobo(kind: str, lobo: dict) -> None:
    names = [n for n in lobo if n != "sources"]
    print(f"\n### {kind}: leave-one-benchmark-out — each of {', '.join(lobo['sources'])} labeled from pools "
          "of the others only; Cohen's kappa [95% CI]\n")
    print("| axis | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for axis in lobo[names[0]]:
        print(f"| {AXIS_NAMES.get(axis, axis)} | " + " | ".join(_ci(lobo[n][axis]) for n in names) + " |")
    print("\nper held-out benchmark (κ): " + "; ".join(
        f"{src}: " + ", ".join(f"{AXIS_NAMES.get(a, a)} " + "/".join(
            f"{n} {fmt((lobo[n][a]['by_source'].get(src) or {}).get('kappa'))}" for n in names)
            for a in lobo[names[0]]) for src in lobo["sources"]))


def print_offline(kind: str, record: dict) -> None:
    axes = record["axes"]
    names = list(dict.fromkeys(n for m in axes.values() for n in m["labelers"]))
    split = record["split"]
    print(f"\n### {kind}: in distribution — held-out n={split['n_heldout']}, pool n={split['n_pool']} "
          f"(gold: {', '.join(Path(p).name for p in record['gold']['path'])}); κ [95% CI], alt-test ω / ρ "
          f"(ε {record['gate']['alt_test']['epsilon']})\n")
    print("| axis | n | " + " | ".join(names) + " | selected (gate) | 1-NN baseline κ | annotators κ |")
    print("|---" * (len(names) + 5) + "|")
    for axis, m in axes.items():
        cells = []
        for n in names:
            if n not in m["labelers"]:
                cells.append("—")
                continue
            s = _single(m["labelers"][n], m["kind"])
            alt = m["alt_test"].get(n) or {}
            ci = s.get("cohen_kappa_ci") or [None, None]
            cells.append(f"{fmt(s.get('cohen_kappa'))} [{fmt(ci[0])}, {fmt(ci[1])}], "
                         f"ω {fmt(alt.get('winning_rate'))} ρ {fmt(alt.get('advantage_probability'))}")
        ann = _single(m.get("annotators") or {}, m["kind"])
        print(f"| {AXIS_NAMES.get(axis, axis)} | {m['n']} | " + " | ".join(cells)
              + f" | {m['selected']} ({m['verdict']['verdict']}) | {fmt(_baseline(record, axis))}"
              f" | {fmt(ann.get('cohen_kappa'))} |")
    spl = record["labelers"]["seconds_per_label"]
    print("\nseconds per label: " + ", ".join(f"{n} {v:.6f}" for n, v in spl.items()))


def _single(m: dict, kind: str) -> dict:
    return (m.get("primary", m) if kind == "operations" else m) or {}


def offline(kind: str, n_boot: int) -> dict:
    t0 = time.perf_counter()
    record = calibrate_offline(BUNDLED_ALL[kind], n_boot=n_boot)
    wall = round(time.perf_counter() - t0, 1)
    print_lobo(kind, record["leave_one_benchmark_out"])
    print_offline(kind, record)
    print(f"wall time {wall} s (both tables, {n_boot} bootstrap resamples)")
    return {"record": record, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default="eval,document")
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the kappa intervals")
    ap.add_argument("--judge", action="store_true", help="also run the embedded LLM judge (slow: minutes per item set)")
    ap.add_argument("--k", type=int, default=3, help="with --judge: exemplars in the few-shot judge's prompt")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="with --judge: held-out items per gold set (default: all)")
    ap.add_argument("--self-consistency", type=int, default=0, metavar="K",
                    help="with --judge: also measure the self-consistent few-shot judge with K samples")
    ap.add_argument("--sc-temperature", type=float, default=SC_TEMPERATURE,
                    help="sampling temperature of the self-consistent judge's samples")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "label_quality.json")
    args = ap.parse_args()
    os.environ.setdefault("SLICELAB_HOME", tempfile.mkdtemp(prefix="slicelab-bench-"))
    print(f"machine: {machine()}; SLICELAB_HOME={os.environ['SLICELAB_HOME']}")
    results = {"machine": machine(), "kinds": {}}
    for kind in args.kinds.split(","):
        res = offline(kind, args.n_boot)
        r = res["record"]
        results["kinds"][kind] = {"wall_s": res["wall_s"], "split": r["split"], "gold": r["gold"],
                                  "leave_one_benchmark_out": r["leave_one_benchmark_out"],
                                  "axes": {a: {"selected": m["selected"], "verdict": m["verdict"]["verdict"],
                                               "labelers": {n: _single(x, m["kind"]) | {"alt_test": m["alt_test"].get(n)}
                                                            for n, x in m["labelers"].items()},
                                               "nearest_exemplar_1nn_kappa": _baseline(r, a)}
                                           for a, m in r["axes"].items()},
                                  "seconds_per_label": r["labelers"]["seconds_per_label"]}
    if args.judge:
        redis_url, origin = resolve_redis_url(Path(os.environ["SLICELAB_HOME"]) / "redis")
        print(f"\nembedded LLM judge; Redis: {origin}")
        results["judge"] = {"k": args.k, "self_consistency": args.self_consistency, "kinds": {}}
        for kind in args.kinds.split(","):
            zero = run(kind, 0, args.workers, args.limit, redis_url)
            few = run(kind, args.k, args.workers, args.limit, redis_url, args.self_consistency, args.sc_temperature)
            rows = merged_table(zero, few, args.k)
            print_table(kind, rows, few)
            results["judge"]["kinds"][kind] = {"axes": rows, "records": [zero["record"]["id"], few["record"]["id"]],
                                               "wall_s": {"zero_shot": zero["wall_s"], "few_shot": few["wall_s"]}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, allow_nan=False, default=str))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
