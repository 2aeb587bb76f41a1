"""``slicelab sample``: training data for a diagnosis's weak slices."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from slicelab.service.cli.common import fail, loop_console
from slicelab.service.cli.options import AllowUngated
from slicelab.service.errors import SlicelabError


def sample_docs(
    docs: Annotated[Optional[Path], typer.Option("--docs", exists=True, dir_okay=False, help="labeled documents (.parquet or .jsonl): id, domain, document_format, reasoning_depth, demonstrated_operations, education_level, and tokens or text")] = None,
    pool: Annotated[Optional[Path], typer.Option("--pool", exists=True, dir_okay=False, help="instruction pool (problem + solution; JSONL/JSON/CSV/Parquet), or a table labeled by label-benchmark; unlabeled pools are labeled in-process (--labeler)")] = None,
    diagnosis: Annotated[Path, typer.Option("--diagnosis", exists=True, dir_okay=False, help="a diagnosis JSON from `slicelab diagnose`")] = ...,
    budget_tokens: Annotated[int, typer.Option("--budget-tokens", "--token-budget", min=1, help="most tokens to select (copies counted)")] = ...,
    output: Annotated[Path, typer.Option("-o", "--output", dir_okay=False, help="manifest JSONL (summary or mixture spec and report beside it)")] = ...,
    allow_ungated: AllowUngated = False,
    labeler: Annotated[str, typer.Option(help="--pool: in-process labeler of an unlabeled pool (knn or student)")] = "knn",
    gold: Annotated[Optional[list[Path]], typer.Option("--gold", exists=True, dir_okay=False, help="--pool: more eval gold sets for the in-process labeler's pool (repeatable)")] = None,
    slice_key: Annotated[Optional[list[str]], typer.Option("--slice-key", help="--pool: target every weak slice of this key (capability, combination, marginal; repeatable) instead of the slices the interventions name")] = None,
    allow_repeats: Annotated[bool, typer.Option(help="--pool: fill a slice's quota with further copies of its selected items")] = False,
    dedupe_against: Annotated[Optional[Path], typer.Option("--dedupe-against", exists=True, dir_okay=False, help="evaluation file; documents or pool items containing >= 25%% of the word 13-grams of one of its questions are dropped")] = None,
) -> None:
    """Select labeled documents (--docs) or instruction-pool items (--pool) for a diagnosis's weak slices."""
    from slicelab.service.usecases import sample as usecase

    try:
        usecase.check_source(docs, pool, pool_options_given=bool(slice_key or allow_repeats or gold or labeler != "knn"))
        if pool is not None:
            from slicelab.service.pool_report import print_summary

            spec, paths = usecase.sample_pool(pool, diagnosis, budget_tokens, output, labeler=labeler,
                                              extra_gold=tuple(gold or ()), dedupe_against=dedupe_against,
                                              allow_repeats=allow_repeats, allow_ungated=allow_ungated,
                                              slice_keys=slice_key)
            print_summary(spec, loop_console())
        else:
            summary, paths = usecase.sample_documents(docs, diagnosis, budget_tokens, output,
                                                      dedupe_against=dedupe_against, allow_ungated=allow_ungated)
            _print_documents_summary(summary, budget_tokens, dedupe_against, allow_ungated)
    except SlicelabError as e:
        fail(e)
    typer.echo("wrote " + ", ".join(str(p) for p in paths))


def _print_documents_summary(summary: dict, budget_tokens: int, dedupe_against: Optional[Path],
                             allow_ungated: bool) -> None:
    out = loop_console()
    out.print(f"selected {summary['n_selected']} of {summary['n_candidates']} matching documents "
              f"({summary['n_documents']} labeled): {summary['tokens_selected']:,} of {budget_tokens:,} tokens "
              f"({summary['token_source']})")
    for r in summary["interventions"]:
        out.print(f"  {r['rule_id']}: {r['n_matching']} matching, {r['n_selected']} selected, "
                  f"{r['tokens_selected']:,} tokens")
    if summary["no_matching_documents"]:
        out.print(f"[yellow]no labeled document matches {', '.join(summary['no_matching_documents'])}[/yellow]")
    if summary["leakage"]:
        out.print(f"leakage: {summary['leakage']['n_flagged']} documents near-duplicate an item of {dedupe_against} "
                  "and were dropped")
    if allow_ungated and any(v != "pass" for v in summary["gate"].values()):
        out.print("[yellow]--allow-ungated: document axes used without a passing calibration: "
                  + ", ".join(a for a, v in summary["gate"].items() if v != "pass") + "[/yellow]")


def register(app: typer.Typer) -> None:
    """Add ``sample`` to the ``slicelab`` app."""
    app.command("sample")(sample_docs)
