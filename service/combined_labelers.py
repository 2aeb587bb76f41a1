"""Labelers that combine others, per axis: the selection of calibration, or a confidence cascade.

- :class:`PerAxisLabeler` — per axis, the labeler calibration selected.
- :class:`CascadeLabeler` — per axis, a cheap labeler's answer when its confidence clears a
  threshold, the LLM judge's otherwise (one judge call per item at most).
"""

from __future__ import annotations

import time
from typing import Any

from slicelab.service.judge.base import JudgeResult, apply_failure_rules
from slicelab.service.labeler_base import Labeler, axes_for
from slicelab.service.samples import Status
from slicelab.service.taxonomy import Taxonomy


class CombinedLabeler(Labeler):
    """Per axis, take the label of one of several labelers, recording which."""

    backend = "combined"

    def __init__(self, labelers: dict[str, Any], taxonomy: Taxonomy | None = None):
        super().__init__(taxonomy)
        self.labelers = labelers
        self.model = "+".join(f"{n}:{getattr(lab, 'model', '')}" for n, lab in labelers.items())

    def predict(self, item):  # pragma: no cover - label() is overridden
        raise NotImplementedError

    def _merge(self, item, pick: dict[str, str], results: dict[str, JudgeResult], t0: float) -> JudgeResult:
        labels: dict[str, Any] = {}
        by_axis, conf = {}, {}
        for axis, name in pick.items():
            r = results[name]
            if r.labels is None or axis not in r.labels:
                continue
            labels[axis] = r.labels[axis]
            by_axis[axis] = name
            conf[axis] = r.extra.get("confidence_by_axis", {}).get(axis)
        judged = [r for r in results.values() if r.backend not in ("knn", "student", "shape", "cues")]
        main = judged[0] if judged else next(iter(results.values()))
        complete = set(labels) == set(pick)
        status = Status.labeled if complete else main.status
        labels_out, fm_source = apply_failure_rules(item, labels if complete else None, by_axis.get("failure_mode", ""))
        return JudgeResult(
            status=status, labels=labels_out, raw_texts=[t for r in results.values() for t in r.raw_texts],
            finish_reason=main.finish_reason, prompt_tokens=sum(r.prompt_tokens for r in results.values()),
            completion_tokens=sum(r.completion_tokens for r in results.values()),
            attempts=sum(r.attempts for r in results.values()), model=self.model, backend=self.backend,
            error=None if complete else main.error, latency_s=time.perf_counter() - t0,
            request_hash=main.request_hash, prompt_ref=main.prompt_ref, failure_mode_source=fm_source,
            extra={**main.extra, "labeler_by_axis": by_axis, "confidence_by_axis": conf},
        )

    def config(self) -> dict[str, Any]:
        return {"backend": self.backend, "labelers": {n: lab.config() for n, lab in self.labelers.items()}}


class PerAxisLabeler(CombinedLabeler):
    """Per axis, the labeler calibration selected (``selection``: axis → labeler name)."""

    backend = "per_axis"

    def __init__(self, labelers: dict[str, Any], selection: dict[str, str], taxonomy: Taxonomy | None = None):
        super().__init__(labelers, taxonomy)
        unknown = sorted(set(selection.values()) - set(labelers))
        if unknown:
            raise ValueError(f"selection names labelers {unknown}; available: {sorted(labelers)}")
        self.selection = selection

    def label(self, item):
        t0 = time.perf_counter()
        axes = [a.name for a in axes_for(self.taxonomy, item)]
        pick = {a: self.selection.get(a, "judge") for a in axes}
        results = {name: self.labelers[name].label(item) for name in sorted(set(pick.values()))}
        return self._merge(item, pick, results, t0)

    def config(self) -> dict[str, Any]:
        return super().config() | {"selection": self.selection}


class CascadeLabeler(CombinedLabeler):
    """A cheap labeler's answer per axis when its confidence is at least ``threshold``, else the judge's."""

    backend = "cascade"

    def __init__(self, cheap: Labeler, judge: Any, threshold: float, taxonomy: Taxonomy | None = None):
        super().__init__({"cheap": cheap, "judge": judge}, taxonomy)
        self.cheap, self.judge, self.threshold = cheap, judge, threshold

    def label(self, item):
        t0 = time.perf_counter()
        cheap = self.cheap.label(item)
        conf = cheap.extra["confidence_by_axis"]
        pick = {a: ("cheap" if conf.get(a, 0.0) >= self.threshold else "judge") for a in cheap.labels}
        results = {"cheap": cheap}
        if "judge" in pick.values():
            results["judge"] = self.judge.label(item)
        result = self._merge(item, pick, results, t0)
        result.extra["labeler_by_axis"] = {a: (self.cheap.backend if n == "cheap" else "judge")
                                           for a, n in result.extra["labeler_by_axis"].items()}
        return result

    def config(self) -> dict[str, Any]:
        return super().config() | {"threshold": self.threshold}
