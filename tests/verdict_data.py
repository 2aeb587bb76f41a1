"""Candidate runs built from real outputs for the localisation / verdict tests.

Every lost sample keeps its real baseline output, with the final answer replaced by a wrong
one: a complete answer that stopped normally (``finish_reason`` ``stop``), so no deterministic
check calls it a termination or format problem — it is a plain wrong answer.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path

from tests.loop_data import BBH_OUTPUTS, COT, LOOP, MATH_OUTPUTS, STRONG

_FLIP = {"True": "False", "False": "True", "Yes": "No", "No": "Yes", "yes": "no", "no": "yes",
         "valid": "invalid", "invalid": "valid"}


def wrong_answer(answer: str | None) -> str:
    """A different answer of the same shape: ``(A)`` → ``(B)``, ``True`` → ``False``, ``5`` → ``6``."""
    a = (answer or "").strip()
    if re.fullmatch(r"\([A-Z]\)", a):
        return f"({'B' if a[1] == 'A' else 'A'})"
    if a in _FLIP:
        return _FLIP[a]
    if re.fullmatch(r"-?\d+", a):
        return str(int(a) + 1)
    return "0" if a != "0" else "1"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def bbh_candidate(path: Path, lose: Callable[[dict, random.Random], bool], *, run: str, seed: int = 0) -> Path:
    """The BBH CoT outputs as run ``COT`` plus run ``run`` that answers wrongly where ``lose(row, rng)``
    is true for a baseline-correct row (``So the answer is <wrong>.``)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for r in _rows(BBH_OUTPUTS):
            base = {"sample_id": r["id"], "run": COT, "correct": r["correct"], "output": r["output"],
                    "extracted_answer": r["extracted_answer"], "finish_reason": "stop"}
            lost = r["correct"] and lose(r, rng)
            _write_pair(fh, base, run, "So the answer is {}." if lost else None, "So the answer is", " ")
    return path


def math_subject_candidate(path: Path, subjects: set[str], *, run: str) -> Path:
    """The MATH-500 outputs of Qwen2.5-14B as they are, plus run ``run``: the same outputs, with the boxed
    answer made wrong on every problem of ``subjects`` that Qwen solved."""
    subject = {r["id"]: r["subject"] for r in _rows(LOOP / "math500_problems.jsonl")}
    with path.open("w", encoding="utf-8") as fh:
        for r in _rows(MATH_OUTPUTS):
            if r["model"] != STRONG:
                continue
            base = {"sample_id": r["problem_id"], "run": STRONG, "correct": r["correct"], "output": r["output"],
                    "extracted_answer": r["extracted_answer"], "finish_reason": "stop"}
            lost = r["correct"] and subject[r["problem_id"]] in subjects
            _write_pair(fh, base, run, "\\boxed{{{}}}" if lost else None, "\\boxed{", "\n")
    return path


def _write_pair(fh, base: dict, run: str, ending: str | None, marker: str, sep: str) -> None:
    """Write ``base``, then its copy as ``run``; with ``ending`` (a format string for the wrong answer) the copy's
    output is cut at the last ``marker`` and ends with the wrong answer instead."""
    fh.write(json.dumps(base) + "\n")
    if ending is not None:
        wrong = wrong_answer(base["extracted_answer"])
        cut = base["output"].rfind(marker)
        text = (base["output"][:cut] if cut >= 0 else base["output"] + sep) + ending.format(wrong)
        base = {**base, "output": text, "extracted_answer": wrong, "correct": False}
    fh.write(json.dumps({**base, "run": run}) + "\n")
