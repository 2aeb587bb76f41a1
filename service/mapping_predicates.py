"""The predicates a mapping rule's ``when`` may use, their parameters, and when a slice counts as evidence.

Each predicate reads a :class:`~service.comparison.Comparison` and gives an :class:`Outcome`:
whether it holds, its evidence, and the slices that dropped without enough evidence.
:data:`PREDICATES` is the registry of names a rule file may use (:mod:`service.mapping_rules`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slicelab.service.comparison import Comparison
from slicelab.service.slices import MIN_SUPPORT

_Frac = Annotated[float, Field(ge=0.0, le=1.0)]
_Key = Literal["capability", "combination", "marginal"]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegressionSpreadParams(_Params):
    """The regression touches most slices: share of tested slices with a significant drop."""

    key: Literal["capability", "combination", "marginal"] = "capability"
    min_share_slices: _Frac
    min_tested: int = Field(3, ge=1)
    max_gini: _Frac | None = None
    max_hhi_normalized: _Frac | None = None


class FailureModeShareParams(_Params):
    """Most newly failing samples have one of ``modes`` (and, with ``details``, one of those
    ``failure_mode_detail`` ids, :data:`service.checks.FAILURE_DETAILS`)."""

    modes: list[str] = Field(min_length=1)
    details: list[str] | None = None
    min_share: _Frac
    min_newly_failing: int = Field(10, ge=1)


class WeakSlicesParams(_Params):
    """At least ``min_slices`` slices matching the filters dropped, localised, with enough evidence.

    ``key`` is one slice key or a list of them (``[capability, marginal]``: the 4-axis capability
    slices and the single-axis slices, among them the primary-operation key
    ``marginal:primary_operation=<op>``). The axis filters apply to capability slices only
    (a marginal slice spans every value of the other axes); ``combination`` refuses them.
    """

    key: _Key | list[_Key] = "capability"
    primary_operation: str | None = None
    operations: list[str] | None = None
    background_condition: list[str] | None = None
    exclude_background_condition: list[str] | None = None
    task_type: list[str] | None = None
    output_constraint: list[str] | None = None
    min_slices: int = Field(1, ge=1)
    max_delta: float = Field(0.0, le=0.0)

    @model_validator(mode="after")
    def _one_operation_filter(self):
        if self.primary_operation and self.operations:
            raise ValueError("give primary_operation or operations, not both")
        axes = ("background_condition", "exclude_background_condition", "task_type", "output_constraint")
        if "combination" in self.keys and any(getattr(self, a) for a in axes):
            raise ValueError(f"key combination spans every background, task and output; drop {', '.join(axes)}")
        return self

    @property
    def keys(self) -> list[str]:
        return [self.key] if isinstance(self.key, str) else list(dict.fromkeys(self.key))

    @property
    def ops(self) -> list[str] | None:
        return [self.primary_operation] if self.primary_operation else self.operations


class EvidenceSettings(BaseModel):
    """When a slice counts as evidence (CLI options override ``min_support`` and ``alpha``)."""

    model_config = ConfigDict(extra="forbid")
    min_support: int = Field(MIN_SUPPORT, ge=1)
    alpha: float = Field(0.05, gt=0, lt=1)
    require_separated_intervals: bool = True


@dataclass
class Outcome:
    """What a predicate found: whether it holds, the evidence, and slices too weak to count."""

    holds: bool
    evidence: dict[str, Any]
    insufficient: list[dict[str, Any]]


def _regression_spread(cmp: Comparison, p: RegressionSpreadParams, ev: EvidenceSettings) -> Outcome:
    s = cmp.spread.get(p.key)
    if not s or s["n_tested"] < p.min_tested:
        n = s["n_tested"] if s else 0
        return Outcome(False, {"n_tested": n, "reason": f"{n} {p.key} slices with support >= {ev.min_support}, "
                                                        f"need {p.min_tested}"}, [])
    holds = (s["share_slices_significant_drop"] or 0) >= p.min_share_slices
    if p.max_gini is not None:
        holds &= s["gini_net_loss_rate"] is not None and s["gini_net_loss_rate"] <= p.max_gini
    if p.max_hhi_normalized is not None:
        holds &= s["hhi_net_losses_normalized"] is not None and s["hhi_net_losses_normalized"] <= p.max_hhi_normalized
    drops = cmp.slices[(cmp.slices["key"] == p.key) & cmp.slices["significant_drop"].astype(bool)]
    return Outcome(bool(holds), {**s, "key": p.key, "significant_drop_slices": list(drops["slice_id"])}, [])


def _failure_mode_share(cmp: Comparison, p: FailureModeShareParams, ev: EvidenceSettings) -> Outcome:
    fm = cmp.failure_modes
    n = fm["n_newly_failing"]
    share = sum(fm["shares"].get(m, 0.0) for m in p.modes)
    evidence = {"n_newly_failing": n, "modes": p.modes, "share": share,
                "counts": {m: fm["counts"].get(m, 0) for m in p.modes}}
    if p.details:  # the share of those details (each belongs to one failure mode, service.checks)
        share = sum(fm.get("detail_shares", {}).get(d, 0.0) for d in p.details)
        evidence.update(details=p.details, share=share,
                        detail_counts={d: fm.get("detail_counts", {}).get(d, 0) for d in p.details},
                        examples=[e for d in p.details for e in fm.get("detail_examples", {}).get(d, [])])
    if n < p.min_newly_failing:
        return Outcome(False, {**evidence, "reason": f"{n} newly failing samples, need {p.min_newly_failing}"}, [])
    return Outcome(share >= p.min_share, evidence, [])


def _weak_slices(cmp: Comparison, p: WeakSlicesParams, ev: EvidenceSettings) -> Outcome:
    df = cmp.slices[cmp.slices["key"].isin(p.keys)]
    if p.ops:
        df = df[df["operations"].map(lambda ops: bool(set(ops or []) & set(p.ops)))]
    cap = df["key"] == "capability"
    for axis in ("background_condition", "task_type", "output_constraint"):
        if getattr(p, axis):
            df = df[~cap | df[axis].isin(getattr(p, axis))]
            cap = df["key"] == "capability"
    if p.exclude_background_condition:
        df = df[~cap | ~df["background_condition"].isin(p.exclude_background_condition)]
    dropped = df[df["delta"] < p.max_delta]
    weak, insufficient = [], []
    for r in dropped.itertuples(index=False):
        reasons = []
        if r.low_support:
            reasons.append(f"support {r.n} < {ev.min_support}")
        elif not r.significant_drop:
            reasons.append(f"not significant after Benjamini-Hochberg (q={r.q_value:.3g} >= {ev.alpha})")
        elif not r.localised:
            reasons.append(_not_localised(r, ev.alpha))
        if ev.require_separated_intervals and r.intervals_overlap:
            reasons.append("candidate and baseline 95% intervals overlap")
        (insufficient if reasons else weak).append(slice_evidence(r, reasons, cmp))
    return Outcome(len(weak) >= p.min_slices, {"key": p.key, "n_matching": int(len(df)), "weak_slices": weak}, insufficient)


def _not_localised(r: Any, alpha: float) -> str:
    rate = lambda x: "—" if x is None or x != x else f"{x:.2f}"  # noqa: E731 - NaN-safe
    q = "untested" if r.loss_q is None or r.loss_q != r.loss_q else f"q={r.loss_q:.3g} >= {alpha}"
    return (f"not localised: loss rate {rate(r.loss_rate)} among baseline-correct samples is not significantly "
            f"above the {rate(r.loss_rate_outside)} outside the slice (one-sided Fisher exact, {q})")


def slice_evidence(r: Any, reasons: list[str] | None = None, cmp: Comparison | None = None) -> dict[str, Any]:
    """The figures a diagnosis quotes for one slice (a row of ``Comparison.slices``), with example
    lost samples (ids and output tails) when ``cmp`` holds them."""
    out = {"slice_id": r.slice_id, "key": r.key, "label": r.label, "operations": list(r.operations or []),
           "n": int(r.n), "baseline_pass": r.baseline_pass, "candidate_pass": r.candidate_pass, "delta": r.delta,
           "delta_ci": [r.delta_ci_low, r.delta_ci_high], "losses": int(r.n10), "gains": int(r.n01),
           "kept": int(r.n11), "p_value": r.p_value, "q_value": r.q_value, "loss_rate": r.loss_rate,
           "loss_rate_outside": r.loss_rate_outside, "loss_q": r.loss_q, "localised": bool(r.localised)}
    if cmp is not None and not reasons:
        out["examples"] = cmp.evidence.get("slice_examples", {}).get(r.slice_id, [])
    if reasons:
        out["reasons"] = reasons
    return out


#: Predicate name → (parameter model, function). The only names a rule's ``when`` may use.
PREDICATES: dict[str, tuple[type[_Params], Callable[[Comparison, Any, EvidenceSettings], Outcome]]] = {
    "regression_spread": (RegressionSpreadParams, _regression_spread),
    "failure_mode_share": (FailureModeShareParams, _failure_mode_share),
    "weak_slices": (WeakSlicesParams, _weak_slices),
}
