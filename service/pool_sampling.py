"""Weakness-targeted sampling from an instruction pool labeled with the evaluation taxonomy.

The targets are the weak slices of a diagnosis (verdict ``data_intervention``): by
default those its fired data rules name (each intervention's ``weak_slices``), or every
weak slice of the chosen slice keys. A pool item falls in a slice exactly as an
evaluation sample would (:func:`item_slice_ids`, the slice ids of
:func:`service.slice_stats.slice_index` over the diagnosis's ``axes_used``):

- ``capability``: same background condition, task type, primary operation and output
  constraint;
- ``combination``: the same set of solving operations;
- ``marginal``: the same value on that one axis.

**Weights.** A weak slice's deficit is its net losses, ``losses − gains`` (the drop in
pass rate times its support, ``−delta × n``). Nested targets are resolved first
(:mod:`service.slice_nesting`): a marginal that contains a localised target capability
slice keeps only its residual deficit, and only if that residual itself stands out;
otherwise it is *explained* by the slices inside it (listed under ``explained``). The
token budget is divided among the remaining target slices in proportion to their
deficits (each slice's *sampling weight*, its quota ``⌊budget × deficit / Σ deficit⌋``).
An item is matched by the most specific target slice it falls in (capability, then
combination, then marginal; a slice containing another of its matches is left out) and
weighted once, by that slice's deficit; items are taken by weight, then fewer tokens, then
id, each charged to the first of its slices with quota left
(:func:`service.budget.select_within_budget`); the manifest's ``slice_id`` / ``slice_key``
say which. Nothing is padded: a slice the pool cannot fill keeps its shortfall, reported
as unfilled; an item appears once unless ``allow_repeats``, which adds copies of the
selected items while quotas have room.

Items flagged by the leakage check (:mod:`service.leakage`) are dropped before selection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from slicelab.service.budget import Candidate, require_data_intervention, require_gates, select_within_budget, token_shares
from slicelab.service.errors import ConfigError
from slicelab.service.leakage import MIN_SHARE, NGRAM, Leak
from slicelab.service.slice_nesting import item_groups, resolve_nesting
from slicelab.service.slices import SLICE_AXES, axis_verdicts

#: Slice keys a pool item can be matched on.
MATCH_KEYS = ("capability", "combination", "marginal")
#: Manifest columns, in order.
MANIFEST_COLUMNS = ("item_id", "weight", "slice_id", "slice_key", "rule_id", "tokens", "copies", "source",
                    "primary_operation", "solving_operations", "weak_slices")
_NONE = "none"


def item_slice_ids(row: dict[str, Any], axes_used: list[str]) -> set[str]:
    """The capability, combination and marginal slice ids of one labeled item (``none`` for a missing value)."""
    values = [str(row.get(a) or _NONE) for a in axes_used]
    ids = {"capability:" + "/".join(values)} if axes_used else set()
    if "primary_operation" in axes_used:
        ids.add("combination:" + "+".join(sorted(set(row.get("solving_operations") or [])) or [_NONE]))
    ids.update(f"marginal:{a}={v}" for a, v in zip(axes_used, values))
    return ids


def weak_slice_targets(diagnosis: dict[str, Any], slice_keys: list[str] | None = None) -> list[dict[str, Any]]:
    """The weak slices to sample for, with their evidence and deficit, largest deficit first.

    Args:
        diagnosis: a :func:`service.mapping.diagnose` result.
        slice_keys: target every weak slice of these keys; None: the slices the interventions name.

    Returns:
        One dict per slice: ``slice_id, key, label, operations, n, losses, gains, deficit, delta,
        baseline_pass, candidate_pass, q_value, rule_id`` (the first intervention naming it, or whose
        operations it shares; None if none) and ``rule_ids``.

    Raises:
        ConfigError: the verdict is not ``data_intervention``, a slice key is unknown, or no weak
            slice with a positive deficit is left (the evidence localises nothing to sample for).
    """
    require_data_intervention(diagnosis)
    bad = [k for k in slice_keys or [] if k not in MATCH_KEYS]
    if bad:
        raise ConfigError(f"--slice-key: unknown key(s) {', '.join(bad)}; allowed: {', '.join(MATCH_KEYS)}")
    fired = [s for f in diagnosis.get("fired_rules") or [] for c in f.get("conditions") or []
             for s in (c.get("evidence") or {}).get("weak_slices") or []]
    evidence = {s["slice_id"]: {**s, "key": s["slice_id"].split(":", 1)[0]} for s in fired}
    evidence |= {s["slice_id"]: {**s, "key": key} for key, rows in (diagnosis.get("weak_slices") or {}).items()
                 for s in rows}
    interventions = diagnosis.get("interventions") or []
    if slice_keys:
        ids = [sid for sid, s in evidence.items() if s["key"] in slice_keys]
    else:
        ids = list(dict.fromkeys(sid for i in interventions for sid in i.get("weak_slices", [])))
    targets = []
    for sid in ids:
        s = evidence.get(sid)
        if s is None or sid.split(":", 1)[0] not in MATCH_KEYS:
            continue
        deficit = int(s["losses"]) - int(s["gains"])
        if deficit <= 0:
            continue
        rules = [i["rule_id"] for i in interventions if sid in i.get("weak_slices", [])] or \
                [i["rule_id"] for i in interventions if set(i.get("operations", [])) & set(s.get("operations", []))]
        targets.append({k: s.get(k) for k in ("slice_id", "key", "label", "operations", "n", "losses", "gains",
                                              "kept", "loss_rate", "delta", "baseline_pass", "candidate_pass", "q_value")}
                       | {"deficit": deficit, "rule_id": rules[0] if rules else None, "rule_ids": rules})
    if not targets:
        raise ConfigError("--diagnosis names no weak slice with net losses that a pool item could match "
                          f"(keys {', '.join(MATCH_KEYS)}): the evidence does not localise anything to sample for")
    return sorted(targets, key=lambda t: (-t["deficit"], t["slice_id"]))


def pool_gate(pool: pd.DataFrame, targets: list[dict[str, Any]], axes_used: list[str],
              allow_ungated: bool) -> dict[str, str]:
    """Calibration verdict, on the pool's labels, of every axis the target slices match on.

    Raises:
        ConfigError: an axis is not ``pass`` and ``allow_ungated`` is false (the message lists them).
    """
    need: set[str] = set()
    for t in targets:
        if t["key"] == "capability":
            need.update(axes_used)
        elif t["key"] == "combination":
            need.add("primary_operation")
        else:
            need.add(t["slice_id"].split(":", 1)[1].split("=", 1)[0])
    return require_gates({a: v for a, v in axis_verdicts(pool).items() if a in need}, allow_ungated,
                         "pool label axes the weak slices match on", "label the pool with a calibrated labeler")


def build_pool_manifest(pool: pd.DataFrame, diagnosis: dict[str, Any], budget_tokens: int, *,
                        allow_repeats: bool = False, allow_ungated: bool = False,
                        slice_keys: list[str] | None = None, leaks: list[Leak] | None = None,
                        ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Select pool items for a diagnosis's weak slices within a token budget (see the module docstring).

    Args:
        pool: from :func:`service.pool_items.load_pool`: ``DataFrame[id, status, <eval label axes>,
            primary_operation, solving_operations, source, tokens, gate_<axis>...]``.
        diagnosis: a :func:`service.mapping.diagnose` result with verdict ``data_intervention``.
        budget_tokens: most tokens selected in all (copies counted).
        allow_repeats: fill quotas with further copies of selected items.
        allow_ungated: match on pool label axes that did not pass calibration (recorded).
        slice_keys: see :func:`weak_slice_targets`.
        leaks: items found near-duplicating evaluation items; they are never selected.

    Returns:
        ``(DataFrame[item_id, weight, slice_id, slice_key, rule_id, tokens, copies, source,
        primary_operation, solving_operations, weak_slices], mixture)``: ``tokens`` per copy.
        ``mixture`` holds the budget, per-slice sampling weights, quotas and fill
        (``slices``), the containing slices left out (``explained``), selected items per
        matching slice key (``matched_by_key``), what could not be filled, and the token mixture
        ``before`` (the labeled pool) and ``after`` (the selection) by operation, primary
        operation, background, output constraint and source.

    Raises:
        ConfigError: see :func:`weak_slice_targets` and :func:`pool_gate`; ``budget_tokens`` < 1.
    """
    if budget_tokens < 1:
        raise ConfigError(f"--token-budget must be >= 1, got {budget_tokens}")
    axes_used = list((diagnosis.get("meta") or {}).get("axes_used") or SLICE_AXES)
    alpha = float((diagnosis.get("evidence_settings") or {}).get("alpha", 0.05))
    targets, explained = resolve_nesting(weak_slice_targets(diagnosis, slice_keys), diagnosis.get("overall") or {},
                                         axes_used, alpha)
    labeled = pool[pool["status"] == "labeled"].reset_index(drop=True)
    gate = pool_gate(labeled, targets, axes_used, allow_ungated)
    leaked = {lk.item_id for lk in leaks or []}
    total = sum(t["deficit"] for t in targets)
    for t in targets:
        t["sampling_weight"] = t["deficit"] / total
        t["quota_tokens"] = int(budget_tokens * t["deficit"] // total)
    deficit = {t["slice_id"]: t["deficit"] for t in targets}
    ids = set(deficit)
    members = [item_slice_ids(r, axes_used) & ids for r in labeled.to_dict(orient="records")]
    labeled["weak_slices"] = [item_groups(m, targets) for m in members]
    candidates = [Candidate(str(r["id"]), float(deficit[r["weak_slices"][0]]), int(r["tokens"]),
                            r["weak_slices"]) for r in labeled.to_dict(orient="records")
                  if r["weak_slices"] and str(r["id"]) not in leaked]
    picks = select_within_budget(candidates, budget_tokens, {t["slice_id"]: t["quota_tokens"] for t in targets},
                                 allow_repeats=allow_repeats)
    by_id = labeled.set_index(labeled["id"].astype(str))
    key_of = {t["slice_id"]: t for t in targets}
    rows = [{"item_id": p.candidate.id, "weight": p.candidate.weight, "slice_id": p.group,
             "slice_key": key_of[p.group]["key"], "rule_id": key_of[p.group]["rule_id"], "tokens": p.candidate.tokens,
             "copies": p.copies, "source": by_id.at[p.candidate.id, "source"],
             "primary_operation": by_id.at[p.candidate.id, "primary_operation"],
             "solving_operations": list(by_id.at[p.candidate.id, "solving_operations"] or []),
             "weak_slices": p.candidate.groups} for p in picks]
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    _fill(targets, labeled, manifest, leaked)
    selected = by_id.loc[list(manifest["item_id"])].assign(tokens=list(manifest["tokens"] * manifest["copies"]))
    mixture = {
        "baseline": diagnosis.get("baseline"), "candidate": diagnosis.get("candidate"),
        "budget_tokens": budget_tokens, "tokens_selected": int((manifest["tokens"] * manifest["copies"]).sum()),
        "n_selected": int(len(manifest)), "copies_selected": int(manifest["copies"].sum()),
        "n_pool_labeled": int(len(labeled)), "n_matching": int(sum(1 for m in members if m)),
        "allow_repeats": allow_repeats, "allow_ungated": allow_ungated, "gate": gate, "axes_used": axes_used,
        "slice_weights": {t["slice_id"]: t["sampling_weight"] for t in targets}, "slices": targets,
        "explained": explained, "matched_by_key": {k: int(v) for k, v in manifest["slice_key"].value_counts().items()},
        "unfilled": [{"slice_id": t["slice_id"], "unfilled_tokens": t["unfilled_tokens"], "pool_items": t["pool_items"],
                      "pool_exhausted": t["pool_exhausted"]} for t in targets if t["unfilled_tokens"] > 0],
        "before": pool_mixture(labeled), "after": pool_mixture(selected),
    }
    return manifest, mixture


def _fill(targets: list[dict[str, Any]], labeled: pd.DataFrame, manifest: pd.DataFrame, leaked: set[str]) -> None:
    """Add to each target what the pool held for it and what was selected and left unfilled."""
    for t in targets:
        inside = labeled[labeled["weak_slices"].map(lambda m, s=t["slice_id"]: s in m)]
        usable = inside[~inside["id"].astype(str).isin(leaked)]
        mine = manifest[manifest["slice_id"] == t["slice_id"]]
        t["pool_items"] = int(len(inside))
        t["pool_items_leaked"] = int(len(inside) - len(usable))
        t["pool_tokens"] = int(usable["tokens"].sum())
        t["selected_items"] = int(len(mine))
        t["selected_tokens"] = int((mine["tokens"] * mine["copies"]).sum())
        t["unfilled_tokens"] = max(0, t["quota_tokens"] - t["selected_tokens"])
        t["pool_exhausted"] = set(usable["id"].astype(str)) <= set(manifest["item_id"])
        t["example_item_ids"] = list(mine["item_id"][:5])


def pool_mixture(items: pd.DataFrame) -> dict[str, Any]:
    """Token shares of a set of pool items by operation (each listed one), primary operation,
    background condition, output constraint and source (see :func:`service.budget.token_shares`)."""
    out: dict[str, Any] = {"tokens": int(items["tokens"].sum()) if len(items) else 0, "items": int(len(items))}
    out["operation"] = token_shares(items, "solving_operations")
    for axis in ("primary_operation", "background_condition", "output_constraint", "source"):
        out[axis] = token_shares(items, axis)
    return out


def sample_pool(pool_path: str | Path, diagnosis: dict[str, Any], budget_tokens: int, *, labeler: str = "knn",
                record: dict[str, Any] | None = None, extra_gold: tuple[str | Path, ...] = (),
                dedupe_against: str | Path | None = None, ngram: int = NGRAM, min_share: float = MIN_SHARE,
                **options: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read (and if needed label) a pool, drop near-duplicates of an evaluation file, and build the manifest.

    Args:
        pool_path: the pool (:func:`service.pool_items.load_pool`).
        diagnosis, budget_tokens, options: as for :func:`build_pool_manifest`.
        labeler, record, extra_gold: in-process labeling of an unlabeled pool.
        dedupe_against: an evaluation file; pool items containing at least ``min_share`` of the word
            ``ngram``-grams of one of its questions are dropped (:mod:`service.leakage`).

    Returns:
        ``(manifest, mixture spec)``; the spec also holds ``pool`` (path, rows, status counts,
        labeled, matching, how labeled, token method) and ``leakage`` (None without ``dedupe_against``).

    Raises:
        ConfigError: see :func:`build_pool_manifest`; the pool or evaluation file is unreadable.
    """
    from slicelab.service.leakage import check_leakage
    from slicelab.service.pool_items import load_pool

    weak_slice_targets(diagnosis, options.get("slice_keys"))  # refuse before labeling anything
    pool, info = load_pool(pool_path, labeler=labeler, record=record, extra_gold=tuple(extra_gold))
    labeled = pool[pool["status"] == "labeled"]
    leaks, leakage = [], None
    if dedupe_against is not None:
        leaks, leakage = check_leakage(zip(labeled["id"].astype(str), labeled["text"]), dedupe_against, ngram, min_share)
    manifest, spec = build_pool_manifest(pool, diagnosis, budget_tokens, leaks=leaks, **options)
    spec["pool"] = {**info, "n_rows": int(len(pool)), "n_labeled": int(len(labeled)),
                    "n_matching": spec["n_matching"]}
    spec["leakage"] = leakage
    return manifest, spec
