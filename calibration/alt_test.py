"""The alternative annotator test (alt-test): may a labeler replace the human annotators?

Calderon, Reichart and Dror, "The Alternative Annotator Test for LLM-as-a-Judge:
How to Statistically Justify Replacing Human Annotators with LLMs", ACL 2025
(arXiv 2501.10970); reference implementation github.com/nitaytech/AltTest.

Leave one annotator out at a time. On every item the left-out annotator labeled,
score the labeler and the left-out annotator against the remaining annotators
(``accuracy``: the share of remaining annotators whose label equals theirs). The
labeler "wins" the item when its score is at least the annotator's
(``W_i = 1``), the annotator when theirs is at least the labeler's (``H_i = 1``).
A one-sided one-sample t-test of ``d_i = H_i - W_i`` against ``epsilon``
(H0: mean(d) >= epsilon; ``scipy.stats.ttest_1samp(..., alternative="less")``)
asks whether the annotator's advantage is below the cost-benefit margin
``epsilon`` (0.2 for expert annotators, 0.15 skilled, 0.1 crowd workers). The
p-values of all left-out annotators are corrected with the Benjamini-Yekutieli
procedure (``scipy.stats.false_discovery_control(method="by")``, false discovery
rate ``q``); the **winning rate** ω is the share of annotators whose null was
rejected, and the labeler passes when ω >= 0.5. The **advantage probability** ρ
(mean over annotators of mean ``W_i``) estimates the chance that the labeler is
as good as a randomly chosen annotator and ranks labelers.

With two annotators (the bundled gold sets) each is scored against the other
alone; the paper recommends three or more. The adjudicated ``gold`` row is
derived from both annotators and is never an annotator here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
from scipy.stats import false_discovery_control, ttest_1samp

#: Cost-benefit margin for expert annotators (Calderon et al. 2025, rule of thumb).
EPSILON_EXPERT = 0.2
#: Winning rate at or above which the labeler passes.
PASS_RATE = 0.5


def accuracy(pred: Any, annotations: list[Any]) -> float:
    """Share of ``annotations`` equal to ``pred`` (lists compare as tuples; None never matches)."""
    key = _key(pred)
    return float(np.mean([key is not None and key == _key(a) for a in annotations]))


def _key(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


@dataclass
class AltTestResult:
    """Outcome of the alt-test for one labeler.

    Attributes:
        winning_rate: ω, share of tested annotators the labeler beat (None when none could be tested).
        advantage_probability: ρ, mean over tested annotators of the share of items the labeler
            scored at least as well as the left-out annotator (None when none could be tested).
        passed: ω >= 0.5.
        epsilon, q: the margin and the false discovery rate used.
        annotators: per left-out annotator: ``annotator, n, p_value, p_adjusted, rho, won``
            (or ``skipped`` with the reason).
        reason: a plain sentence on the outcome.
    """

    winning_rate: float | None
    advantage_probability: float | None
    passed: bool
    epsilon: float
    q: float
    annotators: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def alt_test(labeler: dict[str, Any], annotators: dict[str, dict[str, Any]], *,
             scoring: Callable[[Any, list[Any]], float] = accuracy, epsilon: float = EPSILON_EXPERT,
             q: float = 0.05, min_annotators_per_item: int = 2, min_items_per_annotator: int = 30) -> AltTestResult:
    """Run the alt-test of one labeler against a group of annotators.

    Args:
        labeler: item id → the labeler's label (None: no label, it never matches).
        annotators: annotator → item id → label. Items with fewer than
            ``min_annotators_per_item`` annotators, or unknown to ``labeler``, are dropped.
        scoring: alignment of one label with the remaining annotators' labels (higher is better).
        epsilon: cost-benefit margin of the null hypothesis, in [0, 1).
        q: false discovery rate of the Benjamini-Yekutieli correction.
        min_items_per_annotator: an annotator with fewer items is not tested (the t-test needs
            about 30 for its normality assumption).

    Returns:
        An :class:`AltTestResult`.

    Raises:
        ValueError: ``epsilon`` outside [0, 1), ``q`` outside (0, 1), or fewer than two annotators.
    """
    if not 0 <= epsilon < 1:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
    if not 0 < q < 1:
        raise ValueError(f"q must be in (0, 1), got {q}")
    if len(annotators) < 2:
        raise ValueError(f"the alt-test needs at least two annotators, got {sorted(annotators)}")
    by_item: dict[str, list[str]] = {}
    for name, labels in annotators.items():
        for i in labels:
            by_item.setdefault(i, []).append(name)
    keep = {i for i, names in by_item.items() if len(names) >= min_annotators_per_item and i in labeler}
    rows, p_values = [], []
    for left_out, labels in annotators.items():
        items = [i for i in labels if i in keep]
        if len(items) < min_items_per_annotator:
            rows.append({"annotator": left_out, "n": len(items),
                         "skipped": f"{len(items)} items < {min_items_per_annotator}"})
            continue
        wins, human = [], []
        for i in items:
            rest = [annotators[h][i] for h in by_item[i] if h != left_out]
            s_h, s_l = scoring(labels[i], rest), scoring(labeler[i], rest)
            wins.append(1 if s_l >= s_h else 0)
            human.append(1 if s_h >= s_l else 0)
        diff = np.asarray(human, float) - np.asarray(wins, float)
        p = _p_less(diff, epsilon)
        p_values.append(p)
        rows.append({"annotator": left_out, "n": len(items), "p_value": p, "rho": float(np.mean(wins))})
    tested = [r for r in rows if "p_value" in r]
    if not tested:
        return AltTestResult(None, None, False, epsilon, q, rows,
                             f"no annotator has {min_items_per_annotator} items to test")
    adjusted = false_discovery_control(p_values, method="by")
    for r, p_adj in zip(tested, adjusted):
        r["p_adjusted"] = float(p_adj)
        r["won"] = bool(p_adj <= q)
    omega = sum(r["won"] for r in tested) / len(tested)
    rho = float(np.mean([r["rho"] for r in tested]))
    passed = omega >= PASS_RATE
    reason = (f"winning rate {omega:.2f} {'>=' if passed else '<'} {PASS_RATE} over {len(tested)} annotator(s) "
              f"(epsilon {epsilon}, Benjamini-Yekutieli q {q}); advantage probability {rho:.2f}")
    return AltTestResult(omega, rho, passed, epsilon, q, rows, reason)


def _p_less(diff: np.ndarray, epsilon: float) -> float:
    """One-sided one-sample t-test p-value of H0: mean(diff) >= epsilon.

    With no spread in ``diff`` the t statistic is infinite: p is 0 when the constant is below
    ``epsilon`` and 1 otherwise.
    """
    if np.ptp(diff) == 0:
        return 0.0 if diff[0] < epsilon else 1.0
    p = float(ttest_1samp(diff, epsilon, alternative="less").pvalue)
    return 1.0 if math.isnan(p) else p
