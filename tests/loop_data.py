"""Real items labeled in-process for the compare / diagnose / sample tests (see tests/data/loop/README.md).

Labels come from labelers trained on the bundled gold pools (no LLM): MATH-500 from the per-axis
best of them (:func:`service.pool_labels.make_best_labeler`), the rest from k-NN; every
axis's gate is set to ``pass`` with a test calibration record, as a passed calibration would.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path

import pandas as pd

from slicelab.service.pool_labels import label_items
from slicelab.service.readers import read_documents, read_eval_samples
from slicelab.service.taxonomy import load_taxonomy
from tests.conftest import DATA

LOOP = DATA / "loop"
BBH_OUTPUTS = LOOP / "bbh_cot_model_outputs.jsonl"
MATH_OUTPUTS = LOOP / "math500_model_outputs.jsonl"
STRONG, WEAK = "Qwen/Qwen2.5-14B-Instruct", "google/gemma-2-27b-it"
COT = "code-davinci-002:cot"


def passing_record(kind: str) -> dict:
    """A calibration record whose verdict is ``pass`` on every axis of ``kind``."""
    return {"id": "test", "verdicts": {a.name: "pass" for a in load_taxonomy().axes(kind)}}


@lru_cache(maxsize=None)
def math_labels() -> pd.DataFrame:
    """The MATH-500 subset labeled by the best labelers without an LLM per axis, every gate ``pass``.

    The per-axis choice is the bundled calibration record's (v1 and v2 gold); the items are
    never in the labelers' pool.
    """
    items = list(read_eval_samples(LOOP / "math500_problems.jsonl", benchmark="math500"))
    return label_items(items, kind="eval", labeler="per_axis", record=passing_record("eval"))


@lru_cache(maxsize=None)
def bbh_labels() -> pd.DataFrame:
    """The BBH subset (40 items per task) labeled by the eval k-NN labeler, every gate ``pass``."""
    items = list(read_eval_samples(LOOP / "bbh_tasks.jsonl", benchmark="bbh"))
    return label_items(items, kind="eval", record=passing_record("eval"))


@lru_cache(maxsize=None)
def doc_labels() -> pd.DataFrame:
    """The document subset labeled by the document k-NN labeler, every gate ``pass``."""
    return label_items(list(read_documents(LOOP / "pretrain_docs.jsonl")), kind="document",
                       record=passing_record("document"))


def truncated_bbh(path: Path, *, share: float = 0.3, seed: int = 0) -> tuple[Path, str]:
    """Write the BBH CoT outputs again as run ``<cot>-truncated``: ``share`` of them, drawn within every
    task, cut just before ``So the answer is`` with ``finish_reason`` ``length`` and scored wrong.

    Returns:
        ``(path, run name)``; the file also holds the original run with ``finish_reason`` ``stop``.
    """
    rows = [json.loads(line) for line in BBH_OUTPUTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)
    by_task: dict[str, list[str]] = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r["id"])
    cut = {i for ids in by_task.values() for i in rng.sample(ids, round(share * len(ids)))}
    run = f"{COT}-truncated"
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            base = {"sample_id": r["id"], "run": COT, "correct": r["correct"], "output": r["output"],
                    "extracted_answer": r["extracted_answer"], "finish_reason": "stop"}
            fh.write(json.dumps(base) + "\n")
            if r["id"] in cut:
                end = r["output"].rfind("So the answer is")
                text = r["output"][:end] if end > 0 else r["output"][: len(r["output"]) // 2]
                base = {**base, "output": text.rstrip(), "extracted_answer": None, "correct": False,
                        "finish_reason": "length"}
            fh.write(json.dumps({**base, "run": run}) + "\n")
    return path, run
