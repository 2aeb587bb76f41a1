"""The comparison inputs straight from two runs' evaluation logs (``diagnose/compare --baseline-logs/--candidate-logs``).

Results and each run's set-up come from the logs (:func:`service.results.load_results` over
:func:`service.harness_logs.expand_logs`); the samples of both runs are labeled in-process by the
gate-selected labelers that need no LLM (:func:`service.pool_labels.selected_labeler`), unless a
labeled table is given, which wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from slicelab.service.errors import ConfigError


@dataclass
class LoopInputs:
    """What the comparison reads: a labeled table, a results table and the two run names.

    Attributes:
        labels: labeled samples (a path, or the table labeled in-process).
        results: results of both runs, ``attrs["setup"]`` and ``attrs["files"]`` set.
        baseline, candidate: the run names in ``results``.
        meta: ``{"logs": {...}, "labels_source": ...}`` recorded in the output.
    """

    labels: Any
    results: pd.DataFrame
    baseline: str
    candidate: str
    meta: dict[str, Any] = field(default_factory=dict)


def _side(paths: list[Path], which: str, run: str | None, rejects: list | None):
    from slicelab.service.harness_logs import expand_logs
    from slicelab.service.results import load_results

    files = expand_logs(paths)
    res = load_results(files.files, rejects=rejects)
    runs = sorted(set(res["run"]))
    if run is None and len(runs) > 1:
        raise ConfigError(f"--{which}-logs holds {len(runs)} runs ({', '.join(runs)}); name one with --{which}")
    if run is not None and run not in runs:
        raise ConfigError(f"--{which} {run!r}: no such run in --{which}-logs; runs there: {', '.join(runs)}")
    return files, res, run or runs[0]


def _rename(b: str, c: str, b_paths: list[Path], c_paths: list[Path]) -> tuple[str, str]:
    """Distinct run names: two checkpoints evaluated under one model name are told apart by their folders."""
    if b != c:
        return b, c
    bn, cn = b_paths[0].resolve().name, c_paths[0].resolve().name
    return (f"{b}@{bn}", f"{c}@{cn}") if bn != cn else (f"{b}@baseline", f"{c}@candidate")


def logs_inputs(baseline_logs: list[Path], candidate_logs: list[Path], *, labels: Path | None = None,
                baseline: str | None = None, candidate: str | None = None,
                rejects: list | None = None, say=print) -> LoopInputs:
    """Read both runs' logs and label their samples (unless ``labels`` is given).

    Args:
        baseline_logs, candidate_logs: lm-eval output folders, Inspect logs, or folders of them.
        labels: a labeled table (``label-benchmark`` output); when given it is used as is.
        baseline, candidate: the run to take when a side's logs hold several.
        rejects: bad result rows are appended here instead of raising.
        say: called with the one-line data flow before any labeling.

    Raises:
        InputFormatError: a path is missing or holds no log; ConfigError: a side holds several runs
            and none is named, or a named run is not there.
    """
    from slicelab.service.readers import read_log_samples

    bf, full_b, b_run = _side(baseline_logs, "baseline", baseline, rejects)
    cf, full_c, c_run = _side(candidate_logs, "candidate", candidate, rejects)
    nb, nc = _rename(b_run, c_run, baseline_logs, candidate_logs)
    parts = []
    for full, run, new in ((full_b, b_run, nb), (full_c, c_run, nc)):
        part = full[full["run"] == run].copy()
        part["run"] = new
        parts.append(part)
    res = pd.concat(parts, ignore_index=True)
    res.attrs["setup"] = {nb: full_b.attrs["setup"].get(b_run, {}), nc: full_c.attrs["setup"].get(c_run, {})}
    res.attrs["files"] = [str(f) for f in bf.files + cf.files]
    flow = (f"read baseline {nb}: {bf.summary()}, {int((res['run'] == nb).sum())} samples; candidate {nc}: "
            f"{cf.summary()}, {int((res['run'] == nc).sum())} samples")
    meta: dict[str, Any] = {"logs": {"baseline": [str(p) for p in baseline_logs],
                                     "candidate": [str(p) for p in candidate_logs],
                                     "readers": {str(f): r for f, r in {**bf.readers, **cf.readers}.items()},
                                     "skipped": {str(f): r for f, r in {**bf.skipped, **cf.skipped}.items()},
                                     "runs": {"baseline": nb, "candidate": nc}}}
    if labels is not None:
        meta["labels_source"] = f"labeled table {labels}"
        say(f"{flow}; labels from {labels} (not relabeled)")
        return LoopInputs(labels, res, nb, nc, meta)
    from slicelab.service.pool_labels import label_items, selected_labeler
    from slicelab.service.samples import Rejected

    read = list(read_log_samples([*baseline_logs, *candidate_logs]))
    wanted = set(res["sample_id"])
    items = [s for s in read if not isinstance(s, Rejected) and s.id in wanted]
    bad = sum(isinstance(s, Rejected) for s in read)
    say(f"{flow}; labeling {len(items)} distinct samples in-process with the gate-selected labelers "
        "that need no LLM" + (f" ({bad} unreadable samples not labeled)" if bad else ""))
    _, gate = selected_labeler("eval")
    lab = label_items(items, kind="eval", labeler="selected")
    by = ", ".join(f"{a} {n} ({gate['verdicts'][a]})" for a, n in gate["selection"].items())
    meta["labels_source"] = (f"labeled in-process: {len(lab)} samples, per axis {by}; calibration record "
                             f"{gate['id']}")
    lab.attrs["source"] = meta["labels_source"]
    say(f"labels: {meta['labels_source']}")
    return LoopInputs(lab, res, nb, nc, meta)


def resolve_inputs(labels: Path | None, results: list[Path] | None, baseline: str | None, candidate: str | None,
                   baseline_logs: list[Path] | None, candidate_logs: list[Path] | None, *,
                   skip_bad_rows: bool = False, say=print) -> tuple[Any, Any, str, str, dict[str, Any]]:
    """``(labels, results, baseline, candidate, meta)`` for ``compare``/``diagnose``, from files or from logs.

    Raises:
        ConfigError: only one of ``--baseline-logs``/``--candidate-logs``; logs together with
            ``--results``; without logs, a missing ``--labels``, ``--results``, ``--baseline`` or ``--candidate``.
    """
    if baseline_logs or candidate_logs:
        if not (baseline_logs and candidate_logs):
            raise ConfigError("--baseline-logs and --candidate-logs go together (one folder or log per run)")
        if results:
            raise ConfigError("--results cannot be combined with --baseline-logs/--candidate-logs: "
                              "the results come from the logs")
        got = logs_inputs(baseline_logs, candidate_logs, labels=labels, baseline=baseline, candidate=candidate,
                          rejects=[] if skip_bad_rows else None, say=say)
        return got.labels, got.results, got.baseline, got.candidate, got.meta
    missing = [o for o, v in (("--labels", labels), ("--results", results), ("--baseline", baseline),
                              ("--candidate", candidate)) if not v]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}; or give --baseline-logs and --candidate-logs "
                          "(evaluation-harness output folders or Inspect logs) instead")
    return labels, results, baseline, candidate, {}
