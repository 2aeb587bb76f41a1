"""The loop: ``slices``, ``compare`` and ``diagnose``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from slicelab.service.cli.common import console, fail, loop_console
from slicelab.service.cli.loop_print import print_axes_used, print_comparison, print_diagnosis
from slicelab.service.cli.options import AllowUngated
from slicelab.service.errors import SlicelabError

_GENERATION_HELP = "results field telling repeated generations of one (sample, run) apart, e.g. checkpoint (sample_index/generation/repeat/seed are read without it); they become n_samples/n_correct"
_REPEATS_HELP = "read repeated (sample, run) rows as repeated generations in file order instead of refusing them"
_K_HELP = "pass@k values, comma-separated (e.g. 1,8,128); paired pass@k comparison per problem (default 1,5,10 when results have several generations per item)"
_METRIC_HELP = "pass@1 (per-sample correctness, exact McNemar) or pass@k (the largest --k, Wilcoxon signed-rank on per-problem pass@k) for the overall test behind the verdict"
_LOGS_HELP = "evaluation logs of one run, read as the harness wrote them: an lm-evaluation-harness --output_path folder (or results_<ts>.json / samples file), Inspect AI logs (.json/.eval) or a folder of them (repeatable); results and set-up come from them and their samples are labeled in-process unless --labels is given"
_RESULTS_HELP = "per-sample results: lm-eval --log_samples JSONL or output folder, Inspect log (.json/.eval), the shared BBH/math model-output JSONL, or JSONL/Parquet with sample_id, run, correct|score, output, finish_reason (repeat --results for several files)"

# the inputs compare and diagnose share
Labels = Annotated[Optional[Path], typer.Option("--labels", exists=True, dir_okay=False, help="labeled samples (.parquet or .jsonl); with --baseline-logs/--candidate-logs, used instead of labeling in-process")]
Results = Annotated[Optional[list[Path]], typer.Option("--results", exists=True, help=_RESULTS_HELP)]
Baseline = Annotated[Optional[str], typer.Option("--baseline", help="baseline run name (with --baseline-logs: only when its logs hold several runs)")]
Candidate = Annotated[Optional[str], typer.Option("--candidate", help="candidate run name (with --candidate-logs: only when its logs hold several runs)")]
BaselineLogs = Annotated[Optional[list[Path]], typer.Option("--baseline-logs", exists=True, help=_LOGS_HELP)]
CandidateLogs = Annotated[Optional[list[Path]], typer.Option("--candidate-logs", exists=True, help=_LOGS_HELP)]
IdField = Annotated[Optional[str], typer.Option(help="results field holding the sample id ('+' joins fields)")]
RunField = Annotated[Optional[str], typer.Option(help="results field holding the run name ('+' joins fields)")]
SkipBadRows = Annotated[bool, typer.Option(help="skip unusable result rows (counted and listed in the output) instead of stopping")]
GenerationField = Annotated[Optional[str], typer.Option(help=_GENERATION_HELP)]
AggregateRepeats = Annotated[bool, typer.Option(help=_REPEATS_HELP)]
Examples = Annotated[int, typer.Option("--examples", min=0, help="example lost samples (id, output tails) per dropped slice and per failure mode")]
K = Annotated[Optional[str], typer.Option("--k", help=_K_HELP)]
Metric = Annotated[str, typer.Option("--metric", help=_METRIC_HELP)]


def slices(
    labels: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="labeled samples (.parquet or .jsonl)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="slice table as JSON")],
    allow_ungated: AllowUngated = False,
    min_support: Annotated[int, typer.Option(min=1, help="slices with fewer samples are flagged low_support")] = 10,
    results: Annotated[Optional[list[Path]], typer.Option("--results", exists=True, help="per-sample results of runs (repeat for several files; lm-eval output folders and Inspect logs as written); adds per-run pass rates, Wilson intervals and pass@k over capability, combination and marginal slices")] = None,
    run: Annotated[Optional[list[str]], typer.Option("--run", help="with --results: only these runs (repeatable; default: all)")] = None,
    report_dir: Annotated[Optional[Path], typer.Option("--report-dir", file_okay=False, help="also write slices.html/.md/.json here")] = None,
    k: Annotated[str, typer.Option("--k", help="with --results: pass@k values, comma-separated (only k <= generations per item are reported)")] = "1,5,10",
) -> None:
    """Group labeled samples into capability slices with pass rates, using only calibrated axes."""
    from slicelab.service.usecases import compare as usecase

    if results:
        try:
            table, meta = usecase.slices_over_runs(labels, results, run, output=output, report_dir=report_dir,
                                                   allow_ungated=allow_ungated, min_support=min_support, k=k,
                                                   say=_say_yellow)
        except SlicelabError as e:
            fail(e)
        _print_slices_over_runs(table, meta, output)
    else:
        table, meta = usecase.slices_of_labels(labels, output=output, report_dir=report_dir,
                                               allow_ungated=allow_ungated, min_support=min_support)
    print_axes_used(meta, console)
    if not results:
        Console().print(f"{len(table)} slices over {meta['axes_used'] or 'no axis'} written to {escape(str(output))}")


def _say_yellow(line: str) -> None:
    console.print(f"[yellow]{escape(line)}[/yellow]")


def _print_slices_over_runs(table, meta: dict, output: Path) -> None:
    Console().print(f"{table['slice_id'].nunique()} slices x {len(meta['runs'])} runs over "
                    f"{meta['axes_used'] or 'no axis'} written to {escape(str(output))}")
    for kk, why in meta.get("ks_skipped", {}).items():
        console.print(f"[yellow]pass@{kk} not reported: {why}[/yellow]")
    for r, short in meta.get("items_short", {}).items():
        for kk, n in short.items():
            if n:
                console.print(f"[yellow]{escape(r)}: {n} items have fewer than {kk} generations; slices holding "
                              f"them have no pass@{kk}[/yellow]")


def _say_loop(line: str) -> None:
    loop_console().print(escape(line))


def compare_runs(
    labels: Labels = None, results: Results = None, baseline: Baseline = None, candidate: Candidate = None,
    baseline_logs: BaselineLogs = None, candidate_logs: CandidateLogs = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", dir_okay=False, help="comparison JSON (reports .html/.md beside it)")] = None,
    report_dir: Annotated[Optional[Path], typer.Option("--report-dir", file_okay=False, help="write compare.html/.md/.json here")] = None,
    allow_ungated: AllowUngated = False,
    min_support: Annotated[int, typer.Option(min=1, help="slices with fewer shared samples are not tested")] = 10,
    alpha: Annotated[float, typer.Option(help="Benjamini-Hochberg false discovery rate")] = 0.05,
    id_field: IdField = None, run_field: RunField = None, skip_bad_rows: SkipBadRows = False,
    generation_field: GenerationField = None, aggregate_repeats: AggregateRepeats = False,
    examples: Examples = 3, k: K = None, metric: Metric = "pass@1",
) -> None:
    """Per-slice change from a baseline run to a candidate: exact McNemar, Benjamini-Hochberg, spread, failure modes."""
    from slicelab.service.usecases.compare import RunPair, Settings, compare_runs as compare_use_case

    pair = RunPair.from_options(locals())
    try:
        cmp, paths = compare_use_case(pair, Settings(allow_ungated, min_support, alpha, examples, k, metric),
                                      output=output, report_dir=report_dir, say=_say_loop, warn=_say_yellow)
    except SlicelabError as e:
        fail(e)
    print_comparison(cmp, loop_console())
    if paths:
        typer.echo("wrote " + ", ".join(str(p) for p in paths))


def diagnose_runs(
    labels: Labels = None, results: Results = None, baseline: Baseline = None, candidate: Candidate = None,
    baseline_logs: BaselineLogs = None, candidate_logs: CandidateLogs = None,
    output: Annotated[Path, typer.Option("-o", "--output", dir_okay=False, help="diagnosis JSON (reports .html/.md beside it)")] = ...,
    rules: Annotated[Optional[Path], typer.Option("--rules", exists=True, dir_okay=False, help="mapping rules YAML (default: prompts/mapping-rules-v1.yaml)")] = None,
    report_dir: Annotated[Optional[Path], typer.Option("--report-dir", file_okay=False, help="write diagnosis.html/.md/.json here instead of beside -o")] = None,
    allow_ungated: AllowUngated = False,
    min_support: Annotated[Optional[int], typer.Option(min=1, help="override the rules' evidence.min_support")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="override the rules' evidence.alpha")] = None,
    id_field: IdField = None, run_field: RunField = None, skip_bad_rows: SkipBadRows = False,
    generation_field: GenerationField = None, aggregate_repeats: AggregateRepeats = False,
    ignore_setup: Annotated[Optional[list[str]], typer.Option("--ignore-setup", help="a set-up field not to compare (repeatable; recorded): prompt_template, num_fewshot, max_tokens, temperature, top_p, do_sample, stop, n_samples, extractor")] = None,
    training_config: Annotated[Optional[Path], typer.Option("--training-config", exists=True, file_okay=False, help="tokenizer/training-config folder to lint (slicelab lint-training-config); its findings are cited by a termination verdict")] = None,
    examples: Examples = 3, k: K = None, metric: Metric = "pass@1",
) -> None:
    """Compare two runs, evaluate the mapping rules in order, and write the verdict with its evidence."""
    from slicelab.service.usecases.compare import RunPair, Settings, diagnose_runs as diagnose_use_case

    pair = RunPair.from_options(locals())
    try:
        cmp, result, paths = diagnose_use_case(pair, Settings(allow_ungated, min_support, alpha, examples, k, metric),
                                               output=output, report_dir=report_dir, rules=rules,
                                               training_config=training_config, ignore_setup=tuple(ignore_setup or ()),
                                               say=_say_loop, warn=_say_yellow)
    except SlicelabError as e:
        fail(e)
    out = loop_console()
    print_comparison(cmp, out)
    print_diagnosis(result, out)
    typer.echo(f"wrote {paths[0]}, " + ", ".join(str(p) for p in paths[1:]))


def register(app: typer.Typer) -> None:
    """Add ``slices``, ``compare`` and ``diagnose`` to the ``slicelab`` app."""
    app.command("slices")(slices)
    app.command("compare")(compare_runs)
    app.command("diagnose")(diagnose_runs)
