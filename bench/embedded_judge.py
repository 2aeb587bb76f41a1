"""The embedded judge's output forms, side by side in one run: JSON object, values only, values jump-forward.

Zero-shot, prefix warm (one unmeasured call per form first), on ``--n`` held-out
items of the bundled evaluation gold set (seeded split, items spread over its
sources). The forms take turns in blocks of ``--block`` items, so both see the
same machine load. Per form it reports the median and p90 seconds per label,
output and prompt tokens per label, the share of prompt tokens llama.cpp reused
from the previous call (longest common token prefix), statuses, and Cohen's
kappa against gold per axis (``calibration.metrics``; operation axes: the
primary operation), each next to its target: at most 20 output tokens and
1.0 s per label on an idle 2-core machine, kappa not lower than the JSON form's.

    python bench/embedded_judge.py [--n 40] [--threads 2] [--block 5] [--out bench/results/embedded_judge.json]

The machine (``lscpu``) and its load (``uptime``, before and after) are
recorded; on a shared machine compare the forms by their ratios. The values form runs twice: with
llama.cpp's grammar sampler and with jump-forward decoding
(:mod:`service.judge.jump_forward`); the share of identical replies of the two is reported.
Figures are printed and written to ``--out``; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slicelab.calibration.gold import BUNDLED, GOLD, load_gold  # noqa: E402
from slicelab.calibration.metrics import operation_set_metrics, single_label_metrics  # noqa: E402
from slicelab.service.judge.embedded import EmbeddedJudge  # noqa: E402
from slicelab.service.samples import EvalSample, Status  # noqa: E402

#: The judges compared: output form, and for values replies the decoding (llama.cpp's grammar
#: sampler, or :class:`service.judge.jump_forward.ValuesDecoder`).
FORMS = {"json": {"output_form": "json"}, "values": {"output_form": "values", "jump_forward": False},
         "values_jf": {"output_form": "values", "jump_forward": True}}
TARGETS = {"output_tokens_per_label": 20, "s_per_label_idle_2_cores": 1.0}


def shell(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


def machine() -> dict:
    """CPU model and count (``lscpu``) of this machine."""
    info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in shell("lscpu").splitlines() if ":" in line)}
    return {"cpu": info.get("Model name"), "cpus": info.get("CPU(s)"), "threads_per_core": info.get("Thread(s) per core")}


def pick_items(n: int) -> tuple[list[str], str, object]:
    """``n`` held-out ids spread evenly over the sorted held-out split, one pool id for warming, and the gold set."""
    gold = load_gold(BUNDLED["eval"])
    pool, held = gold.split(seed=0, holdout_frac=0.5)
    n = min(n, len(held))
    return [held[round(i * len(held) / n)] for i in range(n)], pool[0], gold


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def measure(judge: EmbeddedJudge, item) -> dict:
    """Label one item; seconds, tokens, status and the prompt tokens reused from the previous call."""
    before = judge.cached_tokens()
    t0 = time.perf_counter()
    r = judge.label(item)
    dt = time.perf_counter() - t0
    prompt = r.prompt_tokens // max(1, r.attempts)
    reused = min(common_prefix(before, judge.cached_tokens()[:prompt]), max(0, prompt - 1))
    return {"id": item.id, "s": dt, "status": str(r.status), "labels": r.labels, "output_tokens": r.completion_tokens,
            "prompt_tokens": prompt, "reused_tokens": reused, "attempts": r.attempts, "raw": r.raw_texts[-1]}


def kappas(rows: list[dict], gold, judge: EmbeddedJudge) -> dict:
    """Cohen's kappa vs gold per axis (failure_mode on wrong items only); a row not labeled counts as invalid."""
    out = {}
    for axis in judge.taxonomy.axes("eval"):
        use = [r for r in rows if not axis.only_when or gold.items[r["id"]].scored_wrong]
        truth = [gold.labels[GOLD][r["id"]][axis.name] for r in use]
        pred = [(r["labels"] or {}).get(axis.name) for r in use]
        if axis.kind == "operations":
            m = operation_set_metrics(truth, pred, axis.ids, n_boot=200)["primary"]
        else:
            m = single_label_metrics(truth, pred, axis.ids, n_boot=200)
        out[axis.name] = {"n": len(use), "kappa": m["cohen_kappa"], "accuracy": m["accuracy"]}
    return out


def summary(rows: list[dict], gold, judge: EmbeddedJudge) -> dict:
    secs = sorted(r["s"] for r in rows)
    prompt = sum(r["prompt_tokens"] for r in rows)
    return {
        "n": len(rows),
        "median_s_per_label": statistics.median(secs),
        "p90_s_per_label": secs[min(len(secs) - 1, int(0.9 * len(secs)))],
        "output_tokens_per_label": statistics.mean(r["output_tokens"] for r in rows),
        "max_output_tokens": max(r["output_tokens"] for r in rows),
        "prompt_tokens_per_label": prompt / len(rows),
        "prefix_reuse_share": sum(r["reused_tokens"] for r in rows) / prompt if prompt else None,
        "statuses": {s: sum(r["status"] == s for r in rows) for s in sorted({r["status"] for r in rows})},
        "config_hash": judge.config_hash(),
        "kappa": kappas(rows, gold, judge),
    }


def run(n: int, threads: int, block: int) -> dict:
    ids, warm_id, gold = pick_items(n)
    judges = {form: EmbeddedJudge(n_threads=threads, **kw) for form, kw in FORMS.items()}
    rows: dict[str, list[dict]] = {form: [] for form in FORMS}
    load_before = shell("uptime")
    t0 = time.perf_counter()
    for start in range(0, len(ids), block):
        for form, judge in judges.items():
            measure(judge, gold.items[warm_id])  # the static prefix of this form into llama.cpp's state
            for item_id in ids[start:start + block]:
                row = measure(judge, gold.items[item_id])
                rows[form].append(row)
                print(f"{form:9} {item_id:28} {row['status']:12} {row['s']:7.2f} s {row['output_tokens']:4} out "
                      f"{row['prompt_tokens']:5} prompt {row['reused_tokens']:5} reused", flush=True)
    forms = {form: summary(rows[form], gold, judges[form]) for form in FORMS}
    j, v, jf = forms["json"], forms["values"], forms["values_jf"]
    return {
        "machine": machine(), "threads": threads, "load_before": load_before, "load_after": shell("uptime"),
        "wall_s": time.perf_counter() - t0, "items": ids, "n_wrong": sum(gold.items[i].scored_wrong for i in ids),
        "targets": TARGETS | {"kappa": "values form not lower than json form, per axis"},
        "forms": forms,
        "ratios_json_over_values": {"median_s_per_label": j["median_s_per_label"] / v["median_s_per_label"],
                                    "output_tokens_per_label": j["output_tokens_per_label"] / v["output_tokens_per_label"]},
        "ratios_over_values_jf": {"json": j["median_s_per_label"] / jf["median_s_per_label"],
                                  "values": v["median_s_per_label"] / jf["median_s_per_label"]},
        "values_jf_same_reply_share": sum(a["raw"] == b["raw"] for a, b in zip(rows["values"], rows["values_jf"]))
        / len(ids),
        "rows": rows,
    }


def fmt(x, d=2) -> str:
    return "—" if x is None else f"{x:.{d}f}"


def report(res: dict) -> None:
    f = res["forms"]
    print(f"\nmachine: {res['machine']['cpu']}, {res['machine']['cpus']} CPUs; llama.cpp threads {res['threads']}")
    print(f"load before: {res['load_before']}\nload after:  {res['load_after']}")
    print(f"items: {len(res['items'])} held-out eval gold items ({res['n_wrong']} scored wrong), zero-shot, prefix warm\n")
    print("| figure | json | values | values, jump-forward | target |\n|---|---|---|---|---|")
    lines = [("median s/label", "median_s_per_label", f"≤ {TARGETS['s_per_label_idle_2_cores']} (idle 2 cores)"),
             ("p90 s/label", "p90_s_per_label", ""),
             ("output tokens/label", "output_tokens_per_label", f"≤ {TARGETS['output_tokens_per_label']}"),
             ("max output tokens", "max_output_tokens", ""),
             ("prompt tokens/label", "prompt_tokens_per_label", ""),
             ("prefix reuse share", "prefix_reuse_share", "")]
    for label, key, target in lines:
        print(f"| {label} | " + " | ".join(fmt(f[form][key]) for form in FORMS) + f" | {target} |")
    for axis in f["json"]["kappa"]:
        ks = [f[form]["kappa"][axis] for form in FORMS]
        print(f"| κ {axis} (n={ks[0]['n']}) | " + " | ".join(fmt(k["kappa"]) for k in ks) + " | values ≥ json |")
    print("| statuses | " + " | ".join(str(f[form]["statuses"]) for form in FORMS) + " | |")
    r, rj = res["ratios_json_over_values"], res["ratios_over_values_jf"]
    print(f"\njson / values, same run: {r['median_s_per_label']:.1f}× median s/label, "
          f"{r['output_tokens_per_label']:.1f}× output tokens/label")
    print(f"json / values jump-forward: {rj['json']:.1f}× median s/label (target ≥ 5×); values / values jump-forward: "
          f"{rj['values']:.2f}×; replies identical to the grammar sampler's: {100 * res['values_jf_same_reply_share']:.0f}%")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=40, help="held-out gold items per form")
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    ap.add_argument("--block", type=int, default=5, help="items per turn of each form")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "embedded_judge.json"))
    args = ap.parse_args(argv)
    res = run(args.n, args.threads, args.block)
    report(res)
    Path(args.out).write_text(json.dumps(res, indent=1, default=str))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
