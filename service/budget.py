"""Token-budget selection and token-share mixtures, shared by document and instruction-pool sampling.

Selection is greedy and deterministic: candidates are taken by weight (highest first),
then fewer tokens, then id, while they fit the overall budget and the cap of one of their
groups (the first group, in the candidate's own order, with room is charged). Groups are
what a sampler divides its budget by: mapping-rule ids for documents, weak slices for
an instruction pool. With repeats allowed, further passes in the same order add copies of
already selected candidates (each copy charged to the same group) while caps have room;
nothing is ever padded beyond what the candidates hold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from slicelab.service.errors import ConfigError


@dataclass
class Candidate:
    """One selectable item.

    Attributes:
        id: item id (unique among the candidates).
        weight: priority (higher first).
        tokens: tokens of one copy (tokens, ≥ 0).
        groups: groups the item may be charged to, in order of preference.
        info: anything the caller wants back with the selection.
    """

    id: str
    weight: float
    tokens: int
    groups: list[str]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pick:
    """A selected candidate: the group charged and the number of copies (1 unless repeats are allowed)."""

    candidate: Candidate
    group: str
    copies: int = 1

    @property
    def tokens_total(self) -> int:
        return self.candidate.tokens * self.copies


def select_within_budget(candidates: list[Candidate], budget_tokens: int, caps: dict[str, int | None], *,
                         allow_repeats: bool = False) -> list[Pick]:
    """Choose candidates within an overall token budget and per-group caps (see the module docstring).

    Args:
        candidates: the items that may be chosen.
        budget_tokens: most tokens chosen in all (copies counted).
        caps: group → most tokens charged to it, or None for no cap of its own. Every group a
            candidate names must be a key.
        allow_repeats: after every candidate had its chance once, add copies while caps allow.

    Returns:
        The picks in selection order (one per chosen candidate, with its copy count).

    Raises:
        KeyError: a candidate names a group missing from ``caps``.
    """
    left = dict(caps)
    remaining = budget_tokens
    picks: list[Pick] = []
    for c in sorted(candidates, key=lambda c: (-c.weight, c.tokens, c.id)):
        if c.tokens > remaining:
            continue
        group = next((g for g in c.groups if left[g] is None or left[g] >= c.tokens), None)
        if group is None:
            continue
        if left[group] is not None:
            left[group] -= c.tokens
        remaining -= c.tokens
        picks.append(Pick(c, group))
    added = allow_repeats
    while added:
        added = False
        for p in picks:
            t = p.candidate.tokens
            if 0 < t <= remaining and left[p.group] is not None and left[p.group] >= t:
                left[p.group] -= t
                remaining -= t
                p.copies += 1
                added = True
    return picks


def token_shares(table: pd.DataFrame, column: str, *, tokens: str = "tokens", empty: str = "none") -> dict[str, float]:
    """Share of all tokens per value of ``column``, largest first.

    A list-valued column (e.g. operations) counts a row toward each of its values, so the
    shares can sum past 1; an empty list or a missing value counts as ``empty``.

    Args:
        table: ``DataFrame[<column>, <tokens>]``.

    Returns:
        value → share of ``table[tokens].sum()`` (empty when the table has no tokens).
    """
    total = int(table[tokens].sum()) if len(table) else 0
    if total == 0:
        return {}
    values = table[column].map(lambda v: (list(v) or [empty]) if isinstance(v, (list, tuple))
                               else [empty if v is None or v != v or v == "" else v])
    exploded = pd.DataFrame({"value": values, "tokens": table[tokens]}).explode("value")
    shares = exploded.groupby("value")["tokens"].sum() / total
    return {str(k): float(v) for k, v in shares.sort_values(ascending=False).items()}


def require_gates(verdicts: dict[str, str], allow_ungated: bool, what: str, hint: str) -> dict[str, str]:
    """Refuse label axes whose calibration verdict is not ``pass``, unless ``allow_ungated``.

    Args:
        verdicts: axis → ``pass`` / ``fail`` / ``ungated``.
        what: the axes' description in the message (``"document axes used by the interventions"``).
        hint: what to do instead, before ``or pass --allow-ungated``.

    Returns:
        ``verdicts`` unchanged.

    Raises:
        ConfigError: an axis is not ``pass`` and ``allow_ungated`` is false (the message lists them).
    """
    bad = {a: v for a, v in verdicts.items() if v != "pass"}
    if bad and not allow_ungated:
        raise ConfigError(f"{what} did not pass calibration: " + ", ".join(f"{a} ({v})" for a, v in bad.items())
                          + f"; {hint} or pass --allow-ungated (recorded)")
    return verdicts


def require_data_intervention(diagnosis: dict[str, Any]) -> None:
    """Refuse to sample for a diagnosis whose verdict is not ``data_intervention``, saying why in plain words.

    Raises:
        ConfigError: the verdict is not ``data_intervention``; the message names the verdict, what it
            means (``broad_regression``: weaker across the board; ``unexplained_regression``: a drop no
            rule explains; ``non_data``: the checks named) and the diagnosis's own statement.
    """
    verdict = diagnosis.get("verdict")
    if verdict == "data_intervention":
        return
    why = {"broad_regression": "the candidate is weaker across the board: no slice loses significantly more of its "
                               "baseline-correct samples than the rest, so no capability slice is a target",
           "unexplained_regression": "the drop is significant but nothing explained it: no data rule names the slices "
                                     "that stand out, or the operation axis could not be used",
           "insufficient_evidence": "the evidence is too thin to say that anything dropped, or where"}
    checks = ", ".join(c["id"] for c in diagnosis.get("checks", []))
    reason = why.get(verdict, "the diagnosis points away from training data")
    statement = ((diagnosis.get("explanation") or {}).get("statement") or "").strip()
    raise ConfigError(f"--diagnosis verdict is {verdict!r}, not 'data_intervention': {reason}; there is no targeted "
                      f"data to sample, so nothing to sample for" + (f" (checks named: {checks})" if checks else "")
                      + (f". Diagnosis: {statement}" if statement else ""))


def write_jsonl(rows: pd.DataFrame, path: Path) -> None:
    """Write a table as JSON Lines (one row a line, UTF-8), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows.to_dict(orient="records"):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
