"""Label quality on a CPU: every labeler on every axis of the bundled gold sets.

Runs ``slicelab calibrate`` twice per gold set — the embedded LLM judge zero-shot
and with k nearest exemplars in the prompt — each also measuring the k-NN,
student and cascade labelers on the same held-out items, then prints one
axis × labeler table per gold set: Cohen's kappa with its 95% bootstrap
interval, accuracy, and seconds per label, with the machine it ran on. With
``--self-consistency K`` the few-shot run also measures the self-consistent
judge (``judge_sc``: K samples at ``--sc-temperature``, majority vote per axis;
Wang et al. 2023, ICLR), which costs K judge calls per item.

    python bench/label_quality.py [--kinds eval,document] [--k 3] [--workers 2] [--limit N]
                                  [--self-consistency K [--sc-temperature T]]

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

from calibration.gold import BUNDLED  # noqa: E402
from calibration.run import run_calibration, table  # noqa: E402
from service.defaults import SC_TEMPERATURE  # noqa: E402
from service.judge import judge_spec  # noqa: E402
from service.redis_conn import resolve_redis_url  # noqa: E402


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
            print(f"  {axis}: knn κ {fmt(lobo['knn'][axis]['kappa'])}, student κ {fmt(lobo['student'][axis]['kappa'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default="eval,document")
    ap.add_argument("--k", type=int, default=3, help="exemplars in the few-shot judge's prompt")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="held-out items per gold set (default: all)")
    ap.add_argument("--self-consistency", type=int, default=0, metavar="K",
                    help="also measure the self-consistent few-shot judge with K samples (default 0: off)")
    ap.add_argument("--sc-temperature", type=float, default=SC_TEMPERATURE,
                    help="sampling temperature of the self-consistent judge's samples")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "label_quality.json")
    args = ap.parse_args()
    os.environ.setdefault("SLICELAB_HOME", tempfile.mkdtemp(prefix="slicelab-bench-"))
    redis_url, origin = resolve_redis_url(Path(os.environ["SLICELAB_HOME"]) / "redis")
    print(f"machine: {machine()}; Redis: {origin}; embedded judge; SLICELAB_HOME={os.environ['SLICELAB_HOME']}")
    results = {"machine": machine(), "k": args.k, "self_consistency": args.self_consistency,
               "sc_temperature": args.sc_temperature if args.self_consistency else None, "kinds": {}}
    for kind in args.kinds.split(","):
        zero = run(kind, 0, args.workers, args.limit, redis_url)
        few = run(kind, args.k, args.workers, args.limit, redis_url, args.self_consistency, args.sc_temperature)
        rows = merged_table(zero, few, args.k)
        print_table(kind, rows, few)
        results["kinds"][kind] = {"axes": rows, "wall_s": {"zero_shot": zero["wall_s"], "few_shot": few["wall_s"]},
                                  "records": [zero["record"]["id"], few["record"]["id"]],
                                  "output_tokens_per_label": {"zero_shot": zero["record"].get("output_tokens_per_label"),
                                                              "few_shot": few["record"].get("output_tokens_per_label")}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, allow_nan=False))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
