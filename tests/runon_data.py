"""Real BBH chain-of-thought outputs that run on after their answer, as a checkpoint with a masked EOS writes them."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from tests.loop_data import BBH_OUTPUTS, COT

#: Whitespace-separated words a run-on generation is cut at (the length limit of the constructed run).
WORD_CAP = 300


def last_answer(text: str) -> str | None:
    """The BBH extractor (shared/data DATA.md): the text after the last "So the answer is", to the newline, one "." off."""
    i = text.rfind("So the answer is ")
    if i < 0:
        return None
    ans = text[i + len("So the answer is "):].split("\n", 1)[0].strip()
    return ans[:-1] if ans.endswith(".") else ans


def runon_bbh(path: Path, *, finish_reason: bool, share: float = 0.3, seed: int = 0, char_cap: bool = False,
              markers: bool = True) -> tuple[Path, str]:
    """The BBH CoT outputs again as run ``<cot>-runon``: ``share`` of the correct ones, drawn within every task,
    go on after their answer into invented next turns ("\\n\\nQ: <another question>\\nA: Let's think step by
    step. <its reasoning>") until ``WORD_CAP`` words, then are scored by the last-answer extractor.

    With ``finish_reason`` the run-on rows say ``length`` and the others ``stop``; without it no row has the field.
    With ``char_cap`` the limit is in characters instead: the longest output of the run, which every run-on
    reaches. Without ``markers`` the invented turns carry no "Q:" / "A:" labels (a plain long tail).
    """
    tasks = {json.loads(line)["id"]: json.loads(line) for line in (BBH_OUTPUTS.parent / "bbh_tasks.jsonl")
             .read_text(encoding="utf-8").splitlines() if line.strip()}
    rows = [json.loads(line) for line in BBH_OUTPUTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)
    by_task: dict[str, list[dict]] = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r)
    chosen = set()
    for task_rows in by_task.values():
        ok = [r["id"] for r in task_rows if r["correct"] and len(r["output"].split()) < WORD_CAP // 2]
        chosen |= set(rng.sample(ok, min(len(ok), round(share * len(task_rows)))))
    run = f"{COT}-runon"
    cap = max(len(r["output"]) for r in rows) if char_cap else None
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            base = {"sample_id": r["id"], "run": COT, "correct": r["correct"], "output": r["output"],
                    "extracted_answer": r["extracted_answer"]}
            cand = dict(base, run=run)
            if finish_reason:
                base["finish_reason"] = cand["finish_reason"] = "stop"
            if r["id"] in chosen:
                others = [o for o in by_task[r["task"]] if o["id"] != r["id"]]
                text = r["output"]
                q, a = ("Q: ", "A: ") if markers else ("", "")
                while (len(text) < cap) if cap else (len(text.split()) < WORD_CAP):
                    o = rng.choice(others)
                    text += f"\n\n{q}{tasks[o['id']]['input']}\n{a}Let's think step by step.\n{o['output']}"
                # the first WORD_CAP words, or the first cap characters
                text = text[:cap] if cap else "".join(re.split(r"(\s+)", text)[: 2 * WORD_CAP - 1])
                extracted = last_answer(text)
                cand.update(output=text, extracted_answer=extracted, correct=extracted == tasks[r["id"]]["target"])
                if finish_reason:
                    cand["finish_reason"] = "length"
            fh.write(json.dumps(base) + "\n")
            fh.write(json.dumps(cand) + "\n")
    return path, run
