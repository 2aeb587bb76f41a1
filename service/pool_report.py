"""Outputs of instruction-pool sampling: manifest JSONL, mixture spec JSON, and a Markdown/HTML report.

For ``-o out/pool_manifest.jsonl``:

- ``out/pool_manifest.jsonl``: one selected item a line (``item_id, weight, slice_id,
  slice_key, rule_id, tokens`` (one copy), ``copies, source, primary_operation,
  solving_operations, weak_slices``);
- ``out/pool_manifest.mixture.json``: the mixture spec (sampling weight per slice, quotas
  and fill, the token mixture before and after), plus the pool, labeling and leakage
  summary under ``pool`` and ``leakage``;
- ``out/pool_manifest.report.md`` / ``.report.html``: the same as tables.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from slicelab.service.budget import write_jsonl
from slicelab.service.report_templates import sections_html, sections_markdown

#: Rows shown per mixture table.
MAX_ROWS = 12


def write_pool_outputs(manifest: pd.DataFrame, spec: dict[str, Any], path: str | Path) -> dict[str, Path]:
    """Write the manifest, the mixture spec and the report (see the module docstring).

    Returns:
        ``{"manifest", "mixture", "report_md", "report_html"}`` → path.
    """
    path = Path(path)
    write_jsonl(manifest, path)
    stem = path.with_suffix("")
    paths = {"manifest": path, "mixture": Path(f"{stem}.mixture.json"),
             "report_md": Path(f"{stem}.report.md"), "report_html": Path(f"{stem}.report.html")}
    paths["mixture"].write_text(json.dumps(spec, indent=2, allow_nan=False), encoding="utf-8")
    title, sections = report_sections(spec)
    paths["report_md"].write_text(sections_markdown(title, sections), encoding="utf-8")
    paths["report_html"].write_text(sections_html(title, sections), encoding="utf-8")
    return paths


def headline(spec: dict[str, Any]) -> str:
    """One sentence: what was selected from how much, and what could not be filled."""
    pool = spec.get("pool", {})
    unfilled = sum(u["unfilled_tokens"] for u in spec["unfilled"])
    line = (f"Selected {spec['n_selected']} items ({spec['copies_selected']} with copies) of "
            f"{pool.get('n_labeled', '?')} labeled pool items ({pool.get('n_matching', '?')} in a target slice): "
            f"{spec['tokens_selected']:,} of {spec['budget_tokens']:,} budget tokens ({pool.get('token_method', '')}).")
    if unfilled:
        line += (f" The pool could not fill {unfilled:,} tokens of the quotas of {len(spec['unfilled'])} slices "
                 f"(nothing was padded{'' if spec['allow_repeats'] else '; no item repeated'}).")
    return line


def report_sections(spec: dict[str, Any]) -> tuple[str, list]:
    """Title and sections (heading, paragraphs, table, figure) of the pool sampling report."""
    pool, leak = spec.get("pool", {}), spec.get("leakage") or {}
    intro = [headline(spec), f"Pool {pool.get('path', '')}: {pool.get('n_rows', '?')} records, status counts "
             f"{pool.get('status_counts', {})}; labels: {pool.get('labeled_by', '')}."]
    if spec["allow_ungated"] and any(v != "pass" for v in spec["gate"].values()):
        intro.append("Matched on pool label axes without a passing calibration (--allow-ungated): "
                     + ", ".join(a for a, v in spec["gate"].items() if v != "pass") + ".")
    head = ["slice", "rule", "n", "losses", "gains", "deficit", "sampling weight", "quota tokens", "pool items",
            "selected", "selected tokens", "unfilled tokens"]
    rows = [[t["label"] or t["slice_id"], t["rule_id"] or "—", t["n"], t["losses"], t["gains"], t["deficit"],
             f"{t['sampling_weight']:.3f}", f"{t['quota_tokens']:,}", t["pool_items"], t["selected_items"],
             f"{t['selected_tokens']:,}", f"{t['unfilled_tokens']:,}"] for t in spec["slices"]]
    sections = [(f"Sampling: {spec['candidate']} vs {spec['baseline']}", intro, (head, rows), None),
                ("Nested slices", nesting_lines(spec), None, None)]
    empty = [t["label"] or t["slice_id"] for t in spec["slices"] if t["pool_items"] == 0]
    gaps = ([f"No pool item falls in: {', '.join(empty)} (a coverage gap in the pool)."] if empty else []) + \
           [f"{u['slice_id']}: {u['unfilled_tokens']:,} tokens unfilled ({u['pool_items']} pool items; "
            + ("every usable one selected)" if u["pool_exhausted"] else "the items left are longer than the quota left)")
            for u in spec["unfilled"]]
    sections.append(("What the pool could not fill", gaps or ["Every quota was filled."], None, None))
    if leak:
        text = [f"{leak['method']}; checked against {leak['eval_file']} ({leak['n_eval_items']} items): "
                f"{leak['n_flagged']} pool items flagged and dropped."]
        table = (["pool item", "evaluation item", "shared n-grams", "share", "excerpt"],
                 [[x["item_id"], x["eval_id"], x["shared_ngrams"], f"{x['share']:.2f}", x["excerpt"]]
                  for x in leak["flagged"][:50]])
        sections.append(("Leakage check", text, table if leak["flagged"] else None, None))
    for axis in ("operation", "primary_operation", "background_condition", "output_constraint", "source"):
        before, after = spec["before"][axis], spec["after"][axis]
        keys = list(dict.fromkeys([*after, *before]))[:MAX_ROWS]
        sections.append((f"Token share by {axis}", [], (["id", "pool (before)", "selection (after)"],
                         [[k, f"{before.get(k, 0):.1%}", f"{after.get(k, 0):.1%}"] for k in keys]), None))
    return f"Pool sampling manifest: {spec['candidate']} vs {spec['baseline']}", sections


def nesting_lines(spec: dict[str, Any]) -> list[str]:
    """Plain sentences: which slice key the selected items were matched by, and which containing slices were
    sampled only for their residual or not at all (see :mod:`service.slice_nesting`)."""
    counts = spec.get("matched_by_key") or {}
    lines = ["Each item is matched by the most specific target slice it falls in (capability, then combination, "
             "then marginal) and weighted once, by that slice's deficit. Selected items matched by: "
             + (", ".join(f"{k} {n}" for k, n in counts.items()) or "none") + "."]
    for t in spec["slices"]:
        if t.get("contains"):
            lines.append(f"{t['slice_id']}: sampled for its residual deficit {t['deficit']} of {t['slice_deficit']} "
                         f"(outside {', '.join(t['contains'])}); {_residual(t['residual'])}.")
    for e in spec.get("explained") or []:
        lines.append(f"{e['slice_id']} (deficit {e['deficit']}) is not sampled on its own: it is explained by "
                     f"{', '.join(e['explained_by'])}; {_residual(e['residual'])}.")
    return lines


def _residual(r: dict[str, Any]) -> str:
    if r.get("p_value") is None:
        return f"residual {r['losses']} losses, {r['gains']} gains (not testable)"
    return (f"residual {r['losses']} losses, {r['gains']} gains, loss rate {r['loss_rate']:.1%} of baseline-correct "
            f"samples vs {r['loss_rate_outside']:.1%} elsewhere (one-sided Fisher exact p={r['p_value']:.3g}, "
            f"BH q={r['q_value']:.3g})")


def print_summary(spec: dict[str, Any], out) -> None:
    """Print the headline, one line per target slice, the leakage count and any ungated axes (a rich Console)."""
    from rich.markup import escape

    out.print(escape(headline(spec)))
    for t in spec["slices"]:
        out.print(escape(f"  {t['slice_id']}: deficit {t['deficit']} (weight {t['sampling_weight']:.3f}), "
                         f"{t['pool_items']} pool items, {t['selected_items']} selected, "
                         f"{t['selected_tokens']:,} of {t['quota_tokens']:,} quota tokens"))
    for e in spec.get("explained") or []:
        out.print(escape(f"  {e['slice_id']}: not sampled on its own, explained by {', '.join(e['explained_by'])}; "
                         f"{_residual(e['residual'])}"))
    leak = spec.get("leakage")
    if leak:
        out.print(escape(f"leakage: {leak['n_flagged']} pool items contain >= {leak['min_share']:.0%} of the "
                         f"{leak['ngram']}-grams of an item of {leak['eval_file']} and were dropped"))
    bad = [a for a, v in spec["gate"].items() if v != "pass"]
    if spec["allow_ungated"] and bad:
        out.print(f"[yellow]--allow-ungated: pool label axes used without a passing calibration: {', '.join(bad)}[/yellow]")
