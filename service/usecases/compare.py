"""Use cases of the loop: slice statistics over runs, ``compare`` two runs, ``diagnose`` a regression.

Inputs are a labeled table plus per-sample results (files), or two runs' evaluation logs (see
:mod:`slicelab.service.loop_logs`). Each function writes its JSON and reports and returns what
the command prints; lines for the user on the way (files left out, rows skipped) go to ``say``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from slicelab.service.comparison import Comparison, compare
from slicelab.service.errors import ConfigError
from slicelab.service.loop_logs import resolve_inputs
from slicelab.service.output import check_writable, read_table
from slicelab.service.passk import parse_ks
from slicelab.service.reports import write_report
from slicelab.service.results import load_results

Say = Callable[[str], None]


def ignore(line: str) -> None:
    """Drop a note line (the default ``say`` of these use cases: they never print)."""


@dataclass
class RunPair:
    """The two runs to compare and where their labels and results come from (CLI options of the same names).

    ``labels``/``results``/``baseline``/``candidate`` name files and runs; or ``baseline_logs``
    and ``candidate_logs`` hold each run's evaluation logs. ``id_field``/``run_field``: results
    fields of the sample id and run name ('+' joins fields); ``generation_field`` and
    ``aggregate_repeats``: how repeated generations are told apart; ``skip_bad_rows``: unusable
    result rows are counted instead of stopping.
    """

    labels: Path | None = None
    results: list[Path] | None = None
    baseline: str | None = None
    candidate: str | None = None
    baseline_logs: list[Path] | None = None
    candidate_logs: list[Path] | None = None
    id_field: str | None = None
    run_field: str | None = None
    skip_bad_rows: bool = False
    generation_field: str | None = None
    aggregate_repeats: bool = False

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "RunPair":
        """The pair from a command's options (a mapping holding at least every field's name)."""
        return cls(**{f.name: options[f.name] for f in fields(cls)})


@dataclass
class Settings:
    """How runs are compared: ``min_support`` (fewest shared samples a tested slice has), ``alpha``
    (Benjamini-Hochberg false discovery rate), ``examples`` (lost samples shown per slice and failure
    mode), ``k`` (pass@k values, comma-separated), ``metric`` (``pass@1`` or ``pass@k``)."""

    allow_ungated: bool = False
    min_support: int | None = 10
    alpha: float | None = 0.05
    examples: int = 3
    k: str | None = None
    metric: str = "pass@1"


def load_labels_results(labels, results, *, id_field: str | None = None, run_field: str | None = None,
                        skip_bad_rows: bool = False, generation_field: str | None = None,
                        aggregate_repeats: bool = False, runs: list[str] | None = None, say: Say = ignore):
    """``(labels, results, rejects)``: the labeled table and the results table (either may be given loaded).

    Bad result rows raise, or with ``skip_bad_rows`` are collected in ``rejects`` (their count
    and the first one go to ``say``). With ``runs``, only those runs' rows are read (memory and
    time independent of the other runs in the file); when one of them is not in the file,
    every run is read, so the error that follows names the runs the file holds.

    Raises:
        ConfigError: an unreadable labeled table; InputFormatError: bad results (see
            :func:`slicelab.service.results.load_results`).
    """
    try:
        lab = labels if isinstance(labels, pd.DataFrame) else read_table(labels)
    except Exception as e:  # pandas/pyarrow raise many types for an unreadable file
        raise ConfigError(f"--labels {labels}: not a readable labeled table (.parquet or .jsonl): {e}") from None
    rejects: list | None = [] if skip_bad_rows else None

    def read(only: list[str] | None) -> pd.DataFrame:
        if rejects is not None:
            rejects.clear()  # a second read collects the bad rows anew
        return load_results(results, id_field=id_field, run_field=run_field, rejects=rejects,
                            generation_field=generation_field, aggregate_repeats=aggregate_repeats, runs=only)

    if isinstance(results, pd.DataFrame):
        res = results
    else:
        res = read(runs)
        if runs and not set(runs) <= set(res["run"].unique()):
            res = read(None)
    if rejects:
        say(f"{len(rejects)} result rows skipped; first: {rejects[0]}")
    return lab, res, rejects


def comparison(pair: RunPair, settings: Settings, *, say: Say = ignore, warn: Say | None = None) -> Comparison:
    """Compare ``pair.candidate`` with ``pair.baseline`` per slice (see :func:`slicelab.service.comparison.compare`).

    ``say`` gets what reading the logs reports; ``warn`` (default ``say``) the count of skipped result rows.

    Raises:
        ConfigError: missing or conflicting inputs, an unknown ``metric``, ``pass@k`` without a
            ``k`` that both runs have generations for.
    """
    labels, results, baseline, candidate, logs_meta = resolve_inputs(
        pair.labels, pair.results, pair.baseline, pair.candidate, pair.baseline_logs, pair.candidate_logs,
        skip_bad_rows=pair.skip_bad_rows, say=say)
    metric, k = settings.metric, settings.k
    if metric not in ("pass@1", "pass@k"):
        raise ConfigError(f"--metric {metric!r}: allowed pass@1, pass@k")
    if metric == "pass@k" and k is None:
        raise ConfigError("--metric pass@k needs --k (e.g. --k 8)")
    lab, res, rejects = load_labels_results(labels, results, id_field=pair.id_field, run_field=pair.run_field,
                                            skip_bad_rows=pair.skip_bad_rows, generation_field=pair.generation_field,
                                            aggregate_repeats=pair.aggregate_repeats, runs=[baseline, candidate],
                                            say=warn or say)
    multi = bool((res["n_samples"] > 1).any())
    ks = parse_ks(k) if k is not None else ((1, 5, 10) if multi else ())
    cmp = compare(lab, res, baseline, candidate, allow_ungated=settings.allow_ungated,
                  min_support=settings.min_support, alpha=settings.alpha, n_examples=settings.examples, ks=ks)
    if metric == "pass@k":
        if not cmp.pass_at_k or not cmp.pass_at_k["ks"]:
            raise ConfigError(f"--metric pass@k --k {k}: no problem has that many generations in both runs "
                              f"({'; '.join(f'k={a}: {b}' for a, b in (cmp.pass_at_k or {}).get('ks_skipped', {}).items())})")
        cmp.meta["metric"], cmp.meta["metric_k"] = "pass@k", max(cmp.pass_at_k["ks"])
    cmp.meta["results_files"] = results.attrs["files"] if isinstance(results, pd.DataFrame) else [str(p) for p in results]
    cmp.meta["labels_file"] = labels.attrs.get("source") if isinstance(labels, pd.DataFrame) else str(labels)
    cmp.meta["n_result_rows_rejected"] = len(rejects or [])
    if rejects:
        cmp.meta["result_rows_rejected"] = rejects[:100]
    cmp.meta.update(logs_meta)
    return cmp


def check_report_outputs(output: Path | None, stem: Path | None) -> None:
    """Refuse, before any work, a JSON output or report location (``stem``.html/.md) that cannot be written.

    Raises:
        ConfigError: naming ``-o`` or ``--report-dir``.
    """
    if output is not None:
        check_writable(output, "-o")
    if stem is not None:
        check_writable(Path(f"{stem}.html"), "--report-dir" if output is None or stem != output.with_suffix("")
                       else "-o", Path(f"{stem}.md"))


def report_stem(output: Path | None, report_dir: Path | None, name: str) -> Path | None:
    """Where reports go: ``report_dir/name``, else beside ``output`` (its name without suffix), else nowhere."""
    if report_dir is not None:
        return report_dir / name
    return output.with_suffix("") if output is not None else None


def compare_runs(pair: RunPair, settings: Settings, *, output: Path | None = None, report_dir: Path | None = None,
                 say: Say = ignore, warn: Say | None = None) -> tuple[Comparison, list[Path]]:
    """``slicelab compare``: the comparison, written as JSON to ``output`` and as reports.

    Returns:
        ``(comparison, paths written)`` (no path without ``output`` and ``report_dir``).

    Raises:
        ConfigError: unwritable outputs (before any work), or as :func:`comparison`.
    """
    stem = report_stem(output, report_dir, "compare")
    check_report_outputs(output, stem)
    cmp = comparison(pair, settings, say=say, warn=warn)
    payload = cmp.to_dict()
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(payload, indent=2, allow_nan=False))
    if stem is None:
        return cmp, []
    paths = write_report("compare", payload, stem)
    if output is not None and report_dir is None:
        paths["json"] = output
    return cmp, list(dict.fromkeys(paths.values()))


def diagnose_runs(pair: RunPair, settings: Settings, *, output: Path, report_dir: Path | None = None,
                  rules: Path | None = None, training_config: Path | None = None,
                  ignore_setup: tuple[str, ...] = (), say: Say = ignore,
                  warn: Say | None = None) -> tuple[Comparison, dict[str, Any], list[Path]]:
    """``slicelab diagnose``: compare, evaluate the mapping rules in order, write the diagnosis and its reports.

    ``settings.min_support``/``alpha`` None: the rules' ``evidence`` values. ``training_config``: a
    tokenizer/training-config folder whose lint findings a termination verdict cites.

    Returns:
        ``(comparison, diagnosis, paths)``: ``paths`` starts with ``output``, then the reports.

    Raises:
        ConfigError: unwritable outputs (before any work), bad rules, or as :func:`comparison`.
    """
    from dataclasses import replace

    from slicelab.service.mapping import DEFAULT_RULES, diagnose, load_rules
    from slicelab.service.training_lint import lint_training_config

    stem = report_stem(output, report_dir, "diagnosis")
    check_report_outputs(output, stem)
    rule_set = load_rules(rules or DEFAULT_RULES)
    ev = rule_set.evidence
    lint = lint_training_config(training_config) if training_config else None
    settings = replace(settings, min_support=settings.min_support or ev.min_support,
                       alpha=settings.alpha if settings.alpha is not None else ev.alpha)
    cmp = comparison(pair, settings, say=say, warn=warn)
    result = diagnose(cmp, rule_set, ignore_setup=ignore_setup, training_findings=lint)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, allow_nan=False))
    paths = write_report("diagnose", result, stem, comparison=cmp.to_dict())
    return cmp, result, [output, *(p for k, p in paths.items() if k != "json")]


def slices_over_runs(labels: Path, results: list[Path], runs: list[str] | None, *, output: Path,
                     report_dir: Path | None = None, allow_ungated: bool = False, min_support: int = 10,
                     k: str = "1,5,10", say: Say = ignore) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``slicelab slices --results``: per-run pass rates, Wilson intervals and pass@k per slice, as JSON (and reports).

    With ``runs``, only those runs' rows are read from the results (see :func:`load_labels_results`).

    Returns:
        ``(table, meta)`` (see :func:`slicelab.service.slice_stats.slice_stats`).

    Raises:
        ConfigError: bad ``k``, unreadable labels or results.
    """
    from slicelab.service.slice_stats import slice_stats

    ks = parse_ks(k)
    lab, res, _ = load_labels_results(labels, results, runs=runs or None, say=say)
    table, meta = slice_stats(lab, res, runs, allow_ungated=allow_ungated, min_support=min_support, ks=ks)
    _write_slices(table, meta, output, report_dir)
    return table, meta


def slices_of_labels(labels: Path, *, output: Path, report_dir: Path | None = None, allow_ungated: bool = False,
                     min_support: int = 10) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``slicelab slices``: capability slices of a labeled table over the calibrated axes, as JSON (and reports).

    Returns:
        ``(table, meta)`` (see :func:`slicelab.service.slices.slice_table`).
    """
    from slicelab.service.slices import slice_table

    table, meta = slice_table(read_table(labels), allow_ungated=allow_ungated, min_support=min_support)
    _write_slices(table, meta, output, report_dir)
    return table, meta


def _write_slices(table: pd.DataFrame, meta: dict[str, Any], output: Path, report_dir: Path | None) -> None:
    payload = {**meta, "slices": json.loads(table.to_json(orient="records"))}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(payload, indent=2))
    if report_dir:
        write_report("slices", {"meta": meta, "slices": payload["slices"]}, report_dir / "slices")
