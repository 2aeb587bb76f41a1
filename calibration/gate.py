"""The calibration gate: per-axis thresholds (YAML data) turned into pass/fail verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from slicelab.service.errors import ConfigError

GATE_FILE = Path(__file__).resolve().parent / "gate.yaml"
Metric = Literal["cohen_kappa_ci_low", "cohen_kappa", "accuracy_ci_low", "accuracy", "macro_f1"]
#: Verdict of an axis whose labels were never calibrated for this judge configuration.
UNGATED = "ungated"


class Threshold(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    metric: Metric
    bound: float
    min_n: int


class AltTestRule(BaseModel):
    """Settings of the alternative annotator test (:mod:`calibration.alt_test`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    epsilon: float = 0.2
    q: float = 0.05
    min_items: int = 30


#: What an axis must show to pass: the kappa threshold, the alt-test, both, or either.
Require = Literal["kappa", "alt_test", "both", "either"]


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int
    default: Threshold
    axes: dict[str, Threshold] = {}
    require: Require = "kappa"
    alt_test: AltTestRule = AltTestRule()

    def threshold(self, axis: str) -> Threshold:
        return self.axes.get(axis, self.default)


def load_gate(path: str | Path = GATE_FILE) -> GateConfig:
    """Load gate thresholds. Raises ConfigError naming the file and the bad field."""
    try:
        return GateConfig.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as e:
        raise ConfigError(f"{path}: invalid gate file: {e}") from e


def metric_value(metrics: dict[str, Any], metric: str) -> float | None:
    """Read one gate metric from single_label_metrics output (``*_ci_low``: the interval's lower end)."""
    if metric.endswith("_ci_low"):
        ci = metrics.get(metric[: -len("_low")])
        return ci[0] if ci else None
    return metrics.get(metric)


def verdict(metrics: dict[str, Any], threshold: Threshold) -> dict[str, Any]:
    """Pass or fail one axis, with the evidence and a plain reason.

    Args:
        metrics: single_label_metrics output for the axis (for operation axes: of the primary).
    """
    n = metrics.get("n", 0)
    value = metric_value(metrics, threshold.metric)
    base = {"metric": threshold.metric, "bound": threshold.bound, "min_n": threshold.min_n, "n": n, "value": value}
    if n < threshold.min_n:
        return base | {"verdict": "fail", "reason": f"too few held-out items: n={n} < {threshold.min_n}"}
    if value is None:
        why = (metrics.get("undefined") or {}).get(threshold.metric.replace("_ci_low", "_ci"), "undefined")
        return base | {"verdict": "fail", "reason": f"{threshold.metric} is undefined ({why})"}
    if value < threshold.bound:
        return base | {"verdict": "fail", "reason": f"{threshold.metric} {value:.3f} < {threshold.bound:.2f}"}
    return base | {"verdict": "pass", "reason": f"{threshold.metric} {value:.3f} >= {threshold.bound:.2f}"}


def combine(kappa_verdict: dict[str, Any], alt: dict[str, Any] | None, require: str) -> dict[str, Any]:
    """One axis's verdict from the kappa threshold and the alt-test, as ``require`` says.

    Args:
        kappa_verdict: :func:`verdict` output.
        alt: :meth:`calibration.alt_test.AltTestResult.to_dict` output, or None when not run.
        require: ``kappa`` (the alt-test is reported only), ``alt_test``, ``both`` or ``either``.

    Returns:
        ``kappa_verdict`` with ``verdict`` and ``reason`` set by the rule, plus ``require`` and
        ``alt_test`` (pass/fail/None).
    """
    k_ok = kappa_verdict["verdict"] == "pass"
    a_ok = bool(alt and alt.get("passed"))
    alt_word = None if alt is None else ("pass" if a_ok else "fail")
    ok = {"kappa": k_ok, "alt_test": a_ok, "both": k_ok and a_ok, "either": k_ok or a_ok}[require]
    reason = kappa_verdict["reason"]
    if require != "kappa":
        alt_reason = (alt or {}).get("reason") or "alt-test not run"
        reason = f"{reason}; alt-test: {alt_reason} (requires {require})"
    return kappa_verdict | {"verdict": "pass" if ok else "fail", "reason": reason, "require": require,
                            "alt_test": alt_word}
