"""Synthetic labels and checkpoint results at training-run scale, for ``bench/loop_scale.py``.

Labels: ``n`` labeled evaluation samples drawn from 120 task families (a family fixes the
background condition, task type, output constraint, primary operation and the usual further
operations; family sizes follow a Zipf law), taxonomy v1 label ids, every gate ``pass``;
1% of the rows failed labeling (``status`` ``judge_error``).

Results: ``runs`` checkpoints ``ckpt-001`` … of every sample, written one run after another into
one Parquet file (one ``write_table`` per run) with the slicelab results columns ``sample_id``,
``run``, ``correct``, ``output``, ``extracted_answer``, ``finish_reason`` and set-up columns
``max_tokens``, ``temperature``, ``prompt_template``. A sample's chance of being correct rises
with the checkpoint (``sigmoid(ability_r - difficulty)``); draws are correlated across
checkpoints, as repeated evaluations of one model family are. The last checkpoint loses ground
in two families (``REGRESSED``) and cuts 4% of its outputs at the length limit, so ``diagnose``
of the last two runs has something to find. Every output is a distinct string of 200–900
characters ending in the sample id.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

#: Task families whose samples the last checkpoint gets wrong more often.
REGRESSED = (3, 7)
FAMILIES = 120
_SENTENCES = (
    "We list what the question gives us and what it asks for.",
    "First, restate the constraints in our own words.",
    "Counting the cases one by one keeps track of every possibility.",
    "The second clue rules out two of the options.",
    "Carrying the remainder to the next step gives the partial result.",
    "Now compare the two candidate answers against the premises.",
    "The date moves forward by the stated number of days.",
    "Swapping the objects again returns the ball to its first owner.",
    "Each term grows by the same difference, so the pattern continues.",
    "The sentence is sarcastic because the praise contradicts the situation.",
    "Evaluating the inner brackets first gives a simpler expression.",
    "A quick check of the units confirms the magnitude is plausible.",
)


def run_names(runs: int) -> list[str]:
    """``["ckpt-001", ..., f"ckpt-{runs:03d}"]`` in checkpoint order."""
    return [f"ckpt-{i:03d}" for i in range(1, runs + 1)]


def _families(rng: np.random.Generator, axes: dict[str, list[str]]) -> list[dict]:
    ops = axes["solving_operations"]
    out = []
    for _ in range(FAMILIES):
        more = rng.choice(len(ops), size=rng.integers(0, 3), replace=False)
        out.append({"background_condition": axes["background_condition"][rng.integers(len(axes["background_condition"]))],
                    "task_type": axes["task_type"][rng.integers(len(axes["task_type"]))],
                    "output_constraint": axes["output_constraint"][rng.integers(len(axes["output_constraint"]))],
                    "primary": ops[rng.integers(len(ops))], "more": [ops[i] for i in more]})
    return out


def write_labels(path: Path, n: int, axes: dict[str, list[str]], seed: int = 0) -> np.ndarray:
    """Write ``n`` labeled samples to ``path`` (Parquet).

    Args:
        axes: label ids per eval axis (``background_condition``, ``task_type``,
            ``solving_operations``, ``output_constraint``).

    Returns:
        The family index of every sample (``int`` array of length ``n``).
    """
    rng = np.random.default_rng(seed)
    fams = _families(rng, axes)
    weights = 1.0 / np.arange(1, FAMILIES + 1) ** 0.9
    family = rng.choice(FAMILIES, size=n, p=weights / weights.sum())
    failed = rng.random(n) < 0.01
    keep_more = rng.random(n) < 0.7
    cols: dict[str, list] = {k: [] for k in ("background_condition", "task_type", "output_constraint",
                                             "primary_operation", "solving_operations")}
    for f, bad, more in zip(family, failed, keep_more):
        fam = fams[f]
        if bad:
            for k in cols:
                cols[k].append(None)
            continue
        for k in ("background_condition", "task_type", "output_constraint"):
            cols[k].append(fam[k])
        cols["primary_operation"].append(fam["primary"])
        cols["solving_operations"].append([fam["primary"], *(fam["more"] if more else [])])
    ids = [f"synth/{i:07d}" for i in range(n)]
    gates = {f"gate_{a}": pa.array(["pass"] * n) for a in ("background_condition", "task_type",
                                                           "solving_operations", "output_constraint",
                                                           "failure_mode")}
    labelers = {f"labeler_{a}": pa.array([None if b else "judge" for b in failed], pa.string())
                for a in ("background_condition", "task_type", "solving_operations", "output_constraint")}
    table = pa.table({"id": ids, "benchmark": ["synth"] * n, "task": [f"family_{f:03d}" for f in family],
                      "status": ["judge_error" if b else "labeled" for b in failed],
                      **{k: pa.array(v, pa.list_(pa.string()) if k == "solving_operations" else pa.string())
                         for k, v in cols.items()},
                      **gates, **labelers, "calibration_id": ["bench"] * n})
    pq.write_table(table, path)
    return family


def write_results(path: Path, family: np.ndarray, runs: int, seed: int = 1) -> None:
    """Write ``runs`` checkpoints' results for every sample to ``path`` (Parquet, one run after another)."""
    rng = np.random.default_rng(seed)
    n = len(family)
    frng = np.random.default_rng(0)
    difficulty = np.array([frng.normal(0.0, 1.0) for _ in range(FAMILIES)])[family] + rng.normal(0.0, 0.8, n)
    stable = rng.random(n)  # the part of every draw a sample keeps across checkpoints
    regressed = np.isin(family, REGRESSED)
    ids = pa.array([f"synth/{i:07d}" for i in range(n)])
    pool = pa.array([" ".join(_SENTENCES[j % len(_SENTENCES)] for j in range(i, i + 3 + i % 13))
                     for i in range(997)])
    letters = np.array(["(A)", "(B)", "(C)", "(D)", "(E)"])
    writer = None
    try:
        for r, name in enumerate(run_names(runs)):
            last = r == runs - 1
            ability = -0.5 + 2.0 * r / max(runs - 1, 1)
            p = 1.0 / (1.0 + np.exp(difficulty - ability))
            if last:
                p = np.where(regressed, p * 0.45, p)
            draw = 0.75 * stable + 0.25 * rng.random(n)
            correct = draw < p
            capped = rng.random(n) < (0.04 if last else 0.01)
            answer = letters[rng.integers(0, 5, n)]
            body = pool.take(pa.array(rng.integers(0, len(pool), n)))
            tail = pc.binary_join_element_wise(pa.array(np.char.add(" So the answer is ", answer)), ids, " #")
            output = pc.if_else(pa.array(capped), pc.binary_join_element_wise(body, ids, " …#"),
                                pc.binary_join_element_wise(body, tail, " "))
            table = pa.table({"sample_id": ids, "run": pa.array([name] * n), "correct": pa.array(correct & ~capped),
                              "output": output,
                              "extracted_answer": pa.array(np.where(capped, None, answer), pa.string()),
                              "finish_reason": pa.array(np.where(capped, "length", "stop")),
                              "max_tokens": pa.array(np.full(n, 2048)), "temperature": pa.array(np.zeros(n)),
                              "prompt_template": pa.array(["cot"] * n)})
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
