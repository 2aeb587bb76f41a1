"""Compare two runs slice by slice on the samples both ran: paired tests, spread, failure modes.

For every slice (:mod:`service.slice_stats` keys) the shared samples form a paired
2×2 table: ``n11`` both correct, ``n10`` correct in the baseline only (losses),
``n01`` correct in the candidate only (gains), ``n00`` both wrong. From it:

- the exact McNemar test (:func:`service.stats.mcnemar_exact`) and the Benjamini–Hochberg adjusted
  p-value over every slice with enough support at every key (``q_value``; ``meta["n_tests"]``);
- the change ``delta`` = candidate − baseline pass rate with the Agresti–Min interval
  (:func:`service.stats.paired_delta_interval`), and each run's Wilson interval;
- whether the two runs' Wilson intervals overlap.

How spread a regression is: the share of tested slices with a significant drop, the
Gini coefficient of per-slice net loss rates and the Herfindahl–Hirschman index of
per-slice net losses (:func:`service.stats.gini`, :func:`service.stats.hhi`). Whether a
drop is *localised* — a slice losing more of its baseline-correct samples than the rest — and whether loss rates are
homogeneous across the slices of a key: :mod:`service.localisation`. Newly failing samples
get a failure mode from the deterministic checks on the candidate's output
(:func:`classify_failure`). Evidence (join, examples, output lengths, finish reasons,
calibration state): :mod:`service.evidence`; pass@k: :mod:`service.passk`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control

from slicelab.service.checks import UNCLASSIFIED, classify_output, failure_excerpt
from slicelab.service.errors import ConfigError
from slicelab.service.evidence import N_EXAMPLES, calibration_state, examples, join_report, run_profile
from slicelab.service.localisation import heterogeneity, loss_rate_tests
from slicelab.service.passk import compare_pass_at_k
from slicelab.service.slice_stats import KEYS, check_runs, positions, slice_index
from slicelab.service.slices import MIN_SUPPORT, SLICE_AXES
from slicelab.service.stats import gini, hhi, mcnemar_exact, paired_delta_interval, wilson_interval, wilson_intervals
from slicelab.service.termination import length_capped

#: Family-wise false discovery rate for the Benjamini–Hochberg step.
ALPHA = 0.05


def classify_failure(output: str | None, finish_reason: str | None, extracted_answer: str | None = None,
                     label_failure_mode: str | None = None, *, at_cap: bool | None = None) -> tuple[str, str]:
    """Failure mode of an output scored wrong, deterministic checks first (taxonomy v1 §1.5).

    Order: empty output → ``refusal_or_empty``; a final answer followed by a new turn, stopped by
    the length cap (``finish_reason`` ``length``, or ``at_cap`` inferred for the run), or repeating at
    the end → ``non_termination`` (:func:`service.checks.failure_check`); no extractable final answer
    otherwise → ``format_violation``; else the label's ``failure_mode`` when given, else
    :data:`UNCLASSIFIED` (a wrong answer only a judge can explain). The detail is
    :func:`service.checks.classify_output`'s.

    Returns:
        ``(failure_mode, check)``: ``check`` names what decided (``"empty output"``,
        ``"finish_reason=length, no final answer"``, ``"no final answer"``, ``"labels"``, ``"none"``).
    """
    c = classify_output(output, finish_reason, extracted_answer, label_failure_mode, at_cap=at_cap)
    return c.mode, c.rule


@dataclass
class Comparison:
    """The result of :func:`compare`.

    Attributes:
        baseline, candidate: run names.
        slices: ``DataFrame[slice_id, key, label, background_condition, task_type, primary_operation,
            output_constraint, operations, n, n11, n10, n01, n00, baseline_pass,
            baseline_ci_low, baseline_ci_high, candidate_pass, candidate_ci_low, candidate_ci_high,
            delta, delta_ci_low, delta_ci_high, p_value, q_value, tested, low_support,
            significant_drop, significant_gain, intervals_overlap, axis, loss_rate, loss_rate_outside,
            loss_p, loss_q, localised]`` (rates are proportions; ``q_value``/``loss_q`` None for
            untested slices; ``localised``: see :func:`service.localisation.loss_rate_tests`).
        overall: the same figures over every shared sample.
        spread: per key family: ``n_tested``, ``n_significant_drop``, ``share_slices_significant_drop``,
            ``gini_net_loss_rate``, ``hhi_net_losses``, ``hhi_net_losses_normalized``.
        failure_modes: ``n_newly_failing``, ``counts`` and ``shares`` by failure mode, ``checks``,
            ``detail_counts``, ``detail_shares`` and ``detail_examples`` (up to 3 sample ids with the check and
            an output excerpt) by ``failure_mode_detail``, ``length_cap`` (how the
            candidate's length cap was found, :func:`service.termination.length_capped`), ``examples``
            (failure mode → lost samples with output tails).
        newly_failing: ``DataFrame[sample_id, failure_mode, failure_mode_detail, check, excerpt]``.
        meta: runs, sample counts, slice-index meta, ``min_support``, ``alpha``, ``n_tests``, ``setup``
            (run → evaluation set-up fields).
        heterogeneity: chi-square homogeneity of loss rates per slice family
            (:func:`service.localisation.heterogeneity`).
        evidence: ``join`` (:func:`service.evidence.join_report`), ``runs`` (run → profile,
            :func:`service.evidence.run_profile`), ``calibration``
            (:func:`service.evidence.calibration_state`), ``slice_examples`` (slice id → lost
            samples with output tails, for slices with a significant drop), ``n_examples``.
        pass_at_k: paired pass@k comparison (:func:`service.passk.compare_pass_at_k`), or None.
        members: ``DataFrame[sample_id, slice_id]`` of the shared samples (not serialised).
    """

    baseline: str
    candidate: str
    slices: pd.DataFrame
    overall: dict[str, Any]
    spread: dict[str, dict[str, Any]]
    failure_modes: dict[str, Any]
    newly_failing: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    heterogeneity: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    pass_at_k: dict[str, Any] | None = None
    members: pd.DataFrame | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (no NaN)."""
        return jsonable({"baseline": self.baseline, "candidate": self.candidate, "meta": self.meta,
                       "overall": self.overall, "spread": self.spread, "failure_modes": self.failure_modes,
                       "heterogeneity": self.heterogeneity, "evidence": self.evidence,
                       "pass_at_k": self.pass_at_k, "slices": self.slices.to_dict(orient="records")})


def compare(labels: pd.DataFrame, results: pd.DataFrame, baseline: str, candidate: str, *,
            allow_ungated: bool = False, min_support: int = MIN_SUPPORT, alpha: float = ALPHA,
            n_examples: int = N_EXAMPLES, ks: tuple[int, ...] = ()) -> Comparison:
    """Per-slice change from ``baseline`` to ``candidate`` on the samples both runs scored.

    Args:
        labels: a labeled table (see :func:`service.slice_stats.slice_index`).
        results: a results table (:func:`service.results.load_results`) holding both runs.
        baseline, candidate: run names.
        allow_ungated: also slice on axes that did not pass calibration (recorded in meta).
        min_support: slices with fewer shared samples are not tested (``low_support``).
        alpha: false discovery rate of the Benjamini–Hochberg step (Benjamini & Hochberg 1995,
            ``scipy.stats.false_discovery_control``), applied over the tested slices of every key.
        n_examples: lost samples with output tails kept per dropped slice and per failure mode.
        ks: pass@k values for the paired pass@k comparison (:mod:`service.passk`); empty: none.

    Returns:
        A :class:`Comparison`.

    Raises:
        ConfigError: the runs are equal or missing from ``results``, no sample has results in
            both, no labeled sample has results in both (the message shows ids of both sides),
            or ``alpha`` is not in (0, 1).
    """
    if baseline == candidate:
        raise ConfigError(f"--baseline and --candidate are the same run {baseline!r}; compare two runs")
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha must be in (0, 1), got {alpha}")
    check_runs(results, [baseline, candidate])
    base = results[results["run"] == baseline].set_index("sample_id")
    cand = results[results["run"] == candidate].set_index("sample_id")
    shared = base.index.intersection(cand.index)
    if shared.empty:
        raise ConfigError(f"runs {baseline!r} and {candidate!r} share no sample id")
    join = join_report(labels, results, [baseline, candidate])
    pair = pd.DataFrame({"b": base.loc[shared, "correct"].astype(bool), "c": cand.loc[shared, "correct"].astype(bool)})
    index = slice_index(labels, allow_ungated=allow_ungated)
    members = index.members[positions(index.members["sample_id"], shared) >= 0]
    overall = _slice_rows(np.zeros(len(pair), dtype=np.int64), ["overall"], pair)[0]
    codes, slice_ids = pd.factorize(members["slice_id"], sort=False)  # slices in order of first member
    at = positions(members["sample_id"], pair.index)  # each member's row of pair
    rows = _slice_rows(codes, list(slice_ids), pair.iloc[at])
    if rows:
        slices = pd.DataFrame(rows).merge(index.slices[["slice_id", "key", "label", *SLICE_AXES, "operations", "axis"]],
                                          on="slice_id")
        slices = loss_rate_tests(_test(slices, min_support, alpha), overall, alpha)
    else:
        slices = pd.DataFrame(columns=_COLUMNS)
    labeled_ids = pd.Index(index.members["sample_id"].unique())
    meta = {**index.meta, "baseline": baseline, "candidate": candidate, "n_shared": int(len(shared)),
            "n_shared_labeled": int((labeled_ids.get_indexer(shared) >= 0).sum()),
            "n_baseline_only": int(len(base.index.difference(cand.index))),
            "n_candidate_only": int(len(cand.index.difference(base.index))),
            "min_support": min_support, "alpha": alpha,
            "n_tests": int(slices["tested"].astype(bool).sum()) if len(slices) else 0}
    setup = results.attrs.get("setup") or {}
    meta["setup"] = {run: setup.get(run, {}) for run in (baseline, candidate)}
    newly, cap = _newly_failing(pair, cand, labels, meta["setup"][candidate])
    failures = {**_failure_summary(newly), "length_cap": cap}
    failures["examples"] = {m: examples(list(g["sample_id"]), base, cand, n_examples)
                            for m, g in newly.groupby("failure_mode")}
    lost = members[(pair["b"] & ~pair["c"]).to_numpy()[at]].groupby("slice_id", sort=False)["sample_id"]
    lost = {sid: list(ids) for sid, ids in lost}
    dropped = slices[slices["significant_drop"].astype(bool)] if len(slices) else slices
    slice_examples = {sid: examples(lost.get(sid, []), base, cand, n_examples) for sid in dropped["slice_id"]}
    evidence = {"join": join, "n_examples": n_examples,
                "runs": {baseline: run_profile(base.loc[shared]), candidate: run_profile(cand.loc[shared])},
                "calibration": calibration_state(labels, index.meta), "slice_examples": slice_examples}
    passk = (compare_pass_at_k(base.loc[shared], cand.loc[shared], members, index.slices, tuple(ks),
                               min_support=min_support, alpha=alpha) if ks else None)
    return Comparison(baseline, candidate, slices[_COLUMNS].reset_index(drop=True), overall,
                      {k: _spread(slices[slices["key"] == k]) for k in KEYS if k in set(slices["key"])},
                      failures, newly, meta, heterogeneity(slices) if len(slices) else [], evidence, passk,
                      members.reset_index(drop=True))


_COLUMNS = ["slice_id", "key", "label", *SLICE_AXES, "operations", "n", "n11", "n10", "n01", "n00", "baseline_pass",
            "baseline_ci_low", "baseline_ci_high", "candidate_pass", "candidate_ci_low", "candidate_ci_high",
            "delta", "delta_ci_low", "delta_ci_high", "p_value", "q_value", "tested", "low_support",
            "significant_drop", "significant_gain", "intervals_overlap", "axis", "loss_rate", "loss_rate_outside",
            "loss_p", "loss_q", "localised"]


def _slice_rows(codes: np.ndarray, slice_ids: list[str], pair: pd.DataFrame) -> list[dict[str, Any]]:
    """The paired counts, pass rates, intervals and McNemar p-value of every slice.

    Args:
        codes: for each row of ``pair``, the index in ``slice_ids`` of the slice it counts for.
        slice_ids: the slices, each with at least one row.
        pair: ``DataFrame[b, c]``, baseline and candidate correctness (bools) of a shared sample.
    """
    b, c = pair["b"].to_numpy(dtype=bool), pair["c"].to_numpy(dtype=bool)
    size = len(slice_ids)
    n = np.bincount(codes, minlength=size)
    n11, n10, n01 = (np.bincount(codes[m], minlength=size) for m in (b & c, b & ~c, ~b & c))
    kb, kc = np.bincount(codes[b], minlength=size), np.bincount(codes[c], minlength=size)
    b_low, b_high = wilson_intervals(kb, n)
    c_low, c_high = wilson_intervals(kc, n)
    rows = []
    for i, sid in enumerate(slice_ids):
        dci = paired_delta_interval(int(n11[i]), int(n10[i]), int(n01[i]), int(n[i] - n11[i] - n10[i] - n01[i]))
        rows.append({"slice_id": sid, "n": int(n[i]), "n11": int(n11[i]), "n10": int(n10[i]), "n01": int(n01[i]),
                     "n00": int(n[i] - n11[i] - n10[i] - n01[i]), "baseline_pass": float(kb[i] / n[i]),
                     "baseline_ci_low": float(b_low[i]), "baseline_ci_high": float(b_high[i]),
                     "candidate_pass": float(kc[i] / n[i]), "candidate_ci_low": float(c_low[i]),
                     "candidate_ci_high": float(c_high[i]), "delta": float(kc[i] / n[i] - kb[i] / n[i]),
                     "delta_ci_low": dci[0], "delta_ci_high": dci[1], "p_value": mcnemar_exact(n10[i], n01[i])})
    return rows


def _test(slices: pd.DataFrame, min_support: int, alpha: float) -> pd.DataFrame:
    slices = slices.copy()
    slices["low_support"] = slices["n"] < min_support
    slices["tested"] = ~slices["low_support"]
    slices["q_value"] = None
    if slices["tested"].any():
        slices.loc[slices["tested"], "q_value"] = false_discovery_control(
            slices.loc[slices["tested"], "p_value"].to_numpy(dtype=float), method="bh")
    q = slices["q_value"].astype(float)
    sig = slices["tested"] & (q < alpha)
    slices["significant_drop"] = sig & (slices["delta"] < 0)
    slices["significant_gain"] = sig & (slices["delta"] > 0)
    slices["intervals_overlap"] = ((slices["candidate_ci_high"] >= slices["baseline_ci_low"])
                                   & (slices["baseline_ci_high"] >= slices["candidate_ci_low"]))
    order = {k: i for i, k in enumerate(KEYS)}
    return slices.sort_values(["key", "n", "slice_id"], ascending=[True, False, True],
                              key=lambda s: s.map(order) if s.name == "key" else s, ignore_index=True)


def _spread(slices: pd.DataFrame) -> dict[str, Any]:
    tested = slices[slices["tested"]]
    net = (tested["n10"] - tested["n01"]).clip(lower=0).to_numpy(dtype=float)
    rates = net / tested["n"].to_numpy(dtype=float) if len(tested) else net
    h = hhi(net)
    n_sig = int(tested["significant_drop"].sum())
    return {"n_slices": int(len(slices)), "n_tested": int(len(tested)), "n_significant_drop": n_sig,
            "share_slices_significant_drop": n_sig / len(tested) if len(tested) else None,
            "share_samples_in_significant_drop": (float(tested.loc[tested["significant_drop"], "n"].sum()
                                                        / tested["n"].sum()) if len(tested) else None),
            "gini_net_loss_rate": gini(rates), "hhi_net_losses": h[0] if h else None,
            "hhi_net_losses_normalized": h[1] if h else None}


def _newly_failing(pair: pd.DataFrame, cand: pd.DataFrame, labels: pd.DataFrame,
                   setup: dict[str, Any] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    ids = pair.index[pair["b"] & ~pair["c"]]
    # a label's failure_mode describes the output that was labeled: use it only for that same output
    label_fm: dict[str, tuple[str, str]] = {}
    if {"id", "failure_mode", "model_output"} <= set(labels.columns):
        for sid, fm, out in zip(labels["id"], labels["failure_mode"], labels["model_output"]):
            if isinstance(fm, str) and fm and isinstance(out, str):
                label_fm[str(sid)] = (fm, out)
    capped, cap = length_capped(cand, setup)  # the candidate run's length cap, for outputs without finish_reason
    lost = cand.loc[ids]
    answers = lost["extracted_answer"].tolist() if "extracted_answer" in lost else [None] * len(lost)
    rows = []
    for sid, output, finish, answer in zip(ids, lost["output"].tolist(), lost["finish_reason"].tolist(), answers):
        fm, out = label_fm.get(sid, (None, None))
        c = classify_output(output, finish, answer, fm if out == output else None, at_cap=capped.get(sid))
        rows.append({"sample_id": sid, "failure_mode": c.mode, "failure_mode_detail": c.detail, "check": c.rule,
                     "excerpt": failure_excerpt(output, c.detail)})
    return pd.DataFrame(rows, columns=["sample_id", "failure_mode", "failure_mode_detail", "check", "excerpt"]), cap


def _failure_summary(newly: pd.DataFrame) -> dict[str, Any]:
    n = len(newly)
    counts = newly["failure_mode"].value_counts().to_dict()
    details = newly["failure_mode_detail"].dropna().value_counts().to_dict()
    return {"n_newly_failing": n, "counts": {k: int(v) for k, v in counts.items()},
            "shares": {k: v / n for k, v in counts.items()} if n else {},
            "checks": {k: int(v) for k, v in newly["check"].value_counts().to_dict().items()},
            "detail_counts": {k: int(v) for k, v in details.items()},
            "detail_shares": {k: v / n for k, v in details.items()} if n else {},
            "detail_examples": {d: g.head(3)[["sample_id", "check", "excerpt"]].to_dict(orient="records")
                                for d, g in newly.dropna(subset=["failure_mode_detail"]).groupby("failure_mode_detail")}}


def jsonable(v: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays converted, NaN → None."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [jsonable(x) for x in v]
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    return v
