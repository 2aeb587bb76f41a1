"""Evaluation logs written in the harnesses' own formats, for tests: lm-eval output folders, Inspect ``.eval``."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

DATA = Path(__file__).parent / "data"
LM_EVAL_RUNS = (DATA / "lm_eval" / "gsm8k_tinyllama", DATA / "lm_eval" / "math_perturbed_qwen3-93m")
INSPECT_JSON = DATA / "inspect_ai" / "arc_easy_claude-sonnet-4-0.json"


def write_eval_zip(log_json: Path, out: Path) -> Path:
    """An Inspect ``.eval`` archive of a ``.json`` log, in Inspect's layout: ``header.json`` (the log
    without samples), ``samples/<id>_epoch_<n>.json``, ``summaries.json``, ``reductions.json``."""
    log = json.loads(log_json.read_text(encoding="utf-8"))
    samples, reductions = log.pop("samples"), log.pop("reductions", None)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("_journal/start.json", json.dumps({"version": log["version"], "eval": log["eval"],
                                                      "plan": log["plan"]}))
        for s in samples:
            z.writestr(f"samples/{s['id']}_epoch_{s['epoch']}.json", json.dumps(s, indent=2))
        z.writestr("summaries.json", json.dumps([{k: s.get(k) for k in ("id", "epoch", "input", "target", "scores")}
                                                 for s in samples]))
        if reductions is not None:
            z.writestr("reductions.json", json.dumps(reductions))
        z.writestr("header.json", json.dumps(log, indent=2))
    return out


def copy_run(src: Path, out_root: Path, model_name: str | None = None, flip: int = 0,
             output_suffix: str = "") -> Path:
    """Copy an lm-eval run folder to ``out_root/<model_name_sanitized>/`` as the harness lays it out.

    ``model_name`` renames the model in ``results_*.json``; ``flip`` turns the first ``flip`` correct
    samples wrong and wrong samples right (metric values and outputs changed), the rest kept.
    """
    results = next(src.glob("results_*.json"))
    res = json.loads(results.read_text(encoding="utf-8"))
    if model_name:
        res["model_name"], res["model_name_sanitized"] = model_name, model_name.replace("/", "__")
    dest = out_root / res["model_name_sanitized"]
    dest.mkdir(parents=True, exist_ok=True)
    (dest / results.name).write_text(json.dumps(res, indent=2), encoding="utf-8")
    for samples in src.glob("samples_*.jsonl"):
        lines = []
        for i, line in enumerate(samples.read_text(encoding="utf-8").splitlines()):
            rec = json.loads(line)
            if i < flip:
                for m in rec["metrics"]:
                    rec[m] = 0.0 if float(rec[m]) >= 1 else 1.0
                rec["resps"] = [[r[0] + output_suffix] for r in rec["resps"]]
            lines.append(json.dumps(rec, ensure_ascii=False))
        (dest / samples.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def copy_inspect(out_root: Path) -> Path:
    out_root.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(INSPECT_JSON, out_root / INSPECT_JSON.name))


TS = "2026-02-01T10-00-00.000001"


def write_repeats_run(out_root: Path, model_name: str, answers: dict[int, list[str]], k: int = 4) -> Path:
    """An lm-eval run of gsm8k with ``repeats: k``: every doc's ``resps`` holds k generations and the
    ``regex`` filter (no ``take_first``) keeps all k answers; ``exact_match`` scores the first.

    ``answers``: ``{doc_id: [k extracted answers]}``, the docs being the bundled gsm8k questions.
    """
    src = LM_EVAL_RUNS[0]
    base_res = json.loads(next(src.glob("results_*.json")).read_text(encoding="utf-8"))
    docs = [json.loads(line) for line in next(src.glob("samples_*.jsonl")).read_text(encoding="utf-8").splitlines()]
    cfg = dict(base_res["configs"]["gsm8k"], repeats=k,
               filter_list=[{"name": "strict-match-all", "filter": [{"function": "regex",
                                                                    "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"}]}])
    res = dict(base_res, model_name=model_name, model_name_sanitized=model_name, configs={"gsm8k": cfg},
               results={"gsm8k": {"alias": "gsm8k"}})
    dest = out_root / model_name
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"results_{TS}.json").write_text(json.dumps(res, indent=2), encoding="utf-8")
    lines = []
    for rec in docs:
        got = answers[rec["doc_id"]]
        gold = rec["target"].split("#### ")[-1]
        lines.append(json.dumps(dict(rec, resps=[[f"Reasoning.\n#### {a}" for a in got]], filtered_resps=got,
                                     filter="strict-match-all", exact_match=1.0 if got[0] == gold else 0.0)))
    (dest / f"samples_gsm8k_{TS}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def gsm8k_gold() -> dict[int, str]:
    """``{doc_id: final answer}`` of the bundled gsm8k docs."""
    src = next(LM_EVAL_RUNS[0].glob("samples_*.jsonl"))
    return {r["doc_id"]: r["target"].split("#### ")[-1]
            for r in map(json.loads, src.read_text(encoding="utf-8").splitlines())}


def add_filter(run_dir: Path, name: str) -> None:
    """Append to every samples file the records of a second filter ``name`` (same docs, the generation's
    last number as the extraction), as the harness writes one record per (doc, filter)."""
    for samples in run_dir.glob("samples_*.jsonl"):
        recs = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
        extra = [dict(r, filter=name, filtered_resps=["18"]) for r in recs]
        samples.write_text("\n".join(json.dumps(r) for r in recs + extra) + "\n", encoding="utf-8")
