"""Weakness-targeted sampling: labeled documents that match a diagnosis's interventions, within a token budget.

A document matches an intervention when every field of the intervention's filter
matches its labels: ``domain``, ``document_format`` and ``education_level`` in the
listed ids; ``demonstrated_operations`` sharing at least one listed id;
``reasoning_depth`` at or above ``reasoning_depth_min`` in the taxonomy's order
(``none < descriptive < single_step < multi_step < rigorous``).

A matching document's weight is the number of distinct weak slices it addresses
(the weak slices of every intervention it matches) times the largest ``upsample``
weight among those interventions (1 for ``targeted_sampling``). Documents are taken
by weight (highest first), then fewer tokens, then id, while they fit the budget and,
for ``targeted_sampling``, the intervention's own ``token_budget``
(:func:`service.budget.select_within_budget`, shared with instruction-pool sampling).

Tokens are the ``tokens`` column when the table has one, else an estimate:
whitespace-separated words × :data:`TOKENS_PER_WORD`, rounded (about 1.3 tokens per
English word for BPE tokenizers of the GPT-2/Llama family; LaTeX-heavy text runs higher).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from slicelab.service.budget import Candidate, require_data_intervention, require_gates, select_within_budget, token_shares, write_jsonl
from slicelab.service.errors import ConfigError
from slicelab.service.taxonomy import Taxonomy, load_taxonomy

#: Tokens per whitespace-separated word in the token estimate.
TOKENS_PER_WORD = 1.3
#: Label columns a labeled document table must have.
DOC_COLUMNS = ("id", "domain", "document_format", "reasoning_depth", "demonstrated_operations", "education_level")
#: Manifest columns, in order.
MANIFEST_COLUMNS = ("doc_id", "weight", "rule_id", "rule_ids", "matched_operations", "tokens", "weak_slices")


def estimate_tokens(text: str | None) -> int:
    """Token estimate of a text: whitespace words × :data:`TOKENS_PER_WORD`, rounded (tokens)."""
    return int(round(len((text or "").split()) * TOKENS_PER_WORD))


def load_documents(path: str | Path) -> tuple[pd.DataFrame, str]:
    """Read a labeled document table (Parquet/JSONL) and give every document a token count.

    Returns:
        ``(DataFrame[id, domain, document_format, reasoning_depth, demonstrated_operations,
        education_level, tokens, ...], token_source)``: only rows with status ``labeled`` (when the
        table has a status); ``token_source`` is ``"tokens column"`` or the estimate's description.

    Raises:
        ConfigError: a label column is missing, or there is neither ``tokens`` nor ``text``.
    """
    from slicelab.service.output import read_table

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--docs {path}: no such file")
    df = read_table(path)
    missing = [c for c in DOC_COLUMNS if c not in df]
    if missing:
        raise ConfigError(f"--docs {path}: missing label columns {missing}; a labeled document table has "
                          f"{', '.join(DOC_COLUMNS)} (and tokens or text)")
    if "status" in df:
        df = df[df["status"] == "labeled"].copy()
    if "tokens" in df and df["tokens"].notna().all():
        df["tokens"] = df["tokens"].astype(int)
        source = "tokens column"
    elif "text" in df:
        df["tokens"] = df["text"].map(estimate_tokens)
        source = f"estimate: whitespace words x {TOKENS_PER_WORD}"
    else:
        raise ConfigError(f"--docs {path}: needs a 'tokens' column (no nulls) or a 'text' column to estimate tokens")
    df["demonstrated_operations"] = df["demonstrated_operations"].map(lambda v: list(v) if v is not None else [])
    return df.reset_index(drop=True), source


def matches(docs: pd.DataFrame, flt: dict[str, Any], taxonomy: Taxonomy | None = None) -> pd.Series:
    """Boolean mask of the documents an intervention filter selects (see the module docstring)."""
    tax = taxonomy or load_taxonomy()
    mask = pd.Series(True, index=docs.index)
    for axis in ("domain", "document_format", "education_level"):
        if flt.get(axis):
            mask &= docs[axis].isin(flt[axis])
    if flt.get("demonstrated_operations"):
        want = set(flt["demonstrated_operations"])
        mask &= docs["demonstrated_operations"].map(lambda ops: bool(want & set(ops)))
    if flt.get("reasoning_depth_min"):
        order = tax.axis("document", "reasoning_depth").ids
        floor = order.index(flt["reasoning_depth_min"])
        mask &= docs["reasoning_depth"].map(lambda d: d in order and order.index(d) >= floor)
    return mask


def gate_check(docs: pd.DataFrame, interventions: list[dict[str, Any]], allow_ungated: bool) -> dict[str, str]:
    """Calibration verdict of every document axis the interventions filter on.

    Returns:
        axis → ``pass`` / ``fail`` / ``ungated`` (no or mixed ``gate_<axis>`` column).

    Raises:
        ConfigError: an axis is not ``pass`` and ``allow_ungated`` is false (the message lists them).
    """
    axes = sorted({("reasoning_depth" if k == "reasoning_depth_min" else k)
                   for i in interventions for k, v in i["filter"].items() if v})
    verdicts = {}
    for axis in axes:
        col = f"gate_{axis}"
        values = set(docs[col].dropna()) if col in docs else set()
        verdicts[axis] = values.pop() if len(values) == 1 else "ungated"
    return require_gates(verdicts, allow_ungated, "document axes used by the interventions",
                         "calibrate the document labeler")


def build_manifest(docs: pd.DataFrame, diagnosis: dict[str, Any], budget_tokens: int, *,
                   allow_ungated: bool = False, token_source: str = "",
                   taxonomy: Taxonomy | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Select documents for a diagnosis's interventions within a token budget.

    Args:
        docs: from :func:`load_documents`.
        diagnosis: a :func:`service.mapping.diagnose` result with verdict ``data_intervention``.
        budget_tokens: most tokens selected in all (each document counted once).
        allow_ungated: use document axes that did not pass calibration (recorded).

    Returns:
        ``(DataFrame[doc_id, weight, rule_id, rule_ids, matched_operations, tokens, weak_slices],
        summary)``; ``summary`` holds the budget, tokens selected, per-intervention counts, the gate
        verdicts, and the mixture before (every labeled document) and after (plus the selected
        documents once more), as token shares by domain, document_format and demonstrated operation.

    Raises:
        ConfigError: the verdict is not ``data_intervention``, or ``budget_tokens`` < 1, or a gate fails.
    """
    require_data_intervention(diagnosis)
    if budget_tokens < 1:
        raise ConfigError(f"--budget-tokens must be >= 1, got {budget_tokens}")
    tax = taxonomy or load_taxonomy()
    interventions = diagnosis["interventions"]
    verdicts = gate_check(docs, interventions, allow_ungated)
    masks = {i["rule_id"]: matches(docs, i["filter"], tax) for i in interventions}
    candidates = []
    for j, doc in docs.iterrows():
        hit = [i for i in interventions if masks[i["rule_id"]].at[j]]
        if not hit:
            continue
        slices = sorted({s for i in hit for s in i["weak_slices"]})
        factor = max([i["action"]["weight"] for i in hit if i["action"]["type"] == "upsample"] or [1.0])
        targeted = {op for i in hit for op in i["operations"]}
        candidates.append(Candidate(str(doc["id"]), len(slices) * factor, int(doc["tokens"]),
                                    [i["rule_id"] for i in hit],
                                    {"matched_operations": [o for o in doc["demonstrated_operations"] if o in targeted],
                                     "weak_slices": slices}))
    caps = {i["rule_id"]: (i["action"]["token_budget"] if i["action"]["type"] == "targeted_sampling" else None)
            for i in interventions}
    chosen = [{"doc_id": p.candidate.id, "weight": p.candidate.weight, "rule_id": p.group,
               "rule_ids": p.candidate.groups, "tokens": p.candidate.tokens, **p.candidate.info}
              for p in select_within_budget(candidates, budget_tokens, caps)]
    manifest = pd.DataFrame(chosen, columns=list(MANIFEST_COLUMNS))
    per_rule = [{"rule_id": i["rule_id"], "operations": i["operations"], "n_matching": int(masks[i["rule_id"]].sum()),
                 "n_selected": int((manifest["rule_id"] == i["rule_id"]).sum()),
                 "tokens_selected": int(manifest.loc[manifest["rule_id"] == i["rule_id"], "tokens"].sum()),
                 "rule_token_budget": i["action"].get("token_budget")}
                for i in interventions]
    selected = docs[docs["id"].astype(str).isin(set(manifest["doc_id"]))]
    summary = {
        "verdict": diagnosis["verdict"], "baseline": diagnosis.get("baseline"), "candidate": diagnosis.get("candidate"),
        "budget_tokens": budget_tokens, "tokens_selected": int(manifest["tokens"].sum()),
        "n_documents": int(len(docs)), "n_candidates": len(candidates), "n_selected": int(len(manifest)),
        "token_source": token_source, "allow_ungated": allow_ungated, "gate": verdicts,
        "interventions": per_rule,
        "no_matching_documents": [r["rule_id"] for r in per_rule if r["n_matching"] == 0],
        "mixture": {"before": mixture(docs), "after": mixture(pd.concat([docs, selected])),
                    "selected": mixture(selected)},
    }
    return manifest, summary


def mixture(docs: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Token shares by ``domain``, ``document_format`` and demonstrated ``operation``.

    Returns:
        ``{"tokens": total, "domain": {id: share}, "document_format": {...}, "operation": {...}}``;
        a document demonstrating several operations counts toward each, so operation shares
        can sum past 1 (``none``: documents demonstrating none).
    """
    out: dict[str, Any] = {"tokens": int(docs["tokens"].sum())}
    for axis in ("domain", "document_format"):
        out[axis] = token_shares(docs, axis)
    out["operation"] = token_shares(docs, "demonstrated_operations")
    return out


def write_manifest(manifest: pd.DataFrame, summary: dict[str, Any], path: str | Path) -> dict[str, Path]:
    """Write the manifest (JSONL, one document a line) and its summary beside it (``.summary.json``/``.md``).

    Returns:
        ``{"manifest", "summary_json", "summary_md"}`` paths.
    """
    path = Path(path)
    write_jsonl(manifest, path)
    stem = path.with_suffix("")
    js, md = Path(f"{stem}.summary.json"), Path(f"{stem}.summary.md")
    js.write_text(json.dumps(summary, indent=2, allow_nan=False), encoding="utf-8")
    md.write_text(summary_markdown(summary), encoding="utf-8")
    return {"manifest": path, "summary_json": js, "summary_md": md}


def summary_markdown(summary: dict[str, Any]) -> str:
    """The sampling summary as Markdown: budget, interventions, and the mixture before and after."""
    lines = [f"# Sampling manifest: {summary['candidate']} vs {summary['baseline']}", "",
             f"Selected **{summary['n_selected']}** of {summary['n_candidates']} matching documents "
             f"({summary['n_documents']} labeled), **{summary['tokens_selected']:,}** of {summary['budget_tokens']:,} "
             f"budget tokens ({summary['token_source']}).", ""]
    if summary["allow_ungated"]:
        lines += [f"Document axes used without a passing calibration (--allow-ungated): "
                  f"{', '.join(a for a, v in summary['gate'].items() if v != 'pass') or 'none'}.", ""]
    if summary.get("leakage"):
        leak = summary["leakage"]
        lines += [f"Leakage check against {leak['eval_file']}: {leak['method']}; {leak['n_flagged']} documents "
                  f"flagged and dropped ({', '.join(x['item_id'] for x in leak['flagged'][:20]) or 'none'}).", ""]
    lines += ["| rule | operations | matching | selected | tokens |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['rule_id']} | {', '.join(r['operations'])} | {r['n_matching']} | {r['n_selected']} | "
              f"{r['tokens_selected']:,} |" for r in summary["interventions"]]
    if summary["no_matching_documents"]:
        lines += ["", f"No labeled document matches: {', '.join(summary['no_matching_documents'])} "
                      "(a coverage gap in the document pool)."]
    mix = summary["mixture"]
    for axis in ("domain", "document_format", "operation"):
        keys = list(dict.fromkeys([*mix["after"][axis], *mix["before"][axis]]))[:12]
        lines += ["", f"## Token share by {axis}", "", "| id | before | after | selected |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {mix['before'][axis].get(k, 0):.1%} | {mix['after'][axis].get(k, 0):.1%} | "
                  f"{mix['selected'][axis].get(k, 0):.1%} |" for k in keys]
    return "\n".join(lines) + "\n"
