"""Self-consistency for an LLM judge: ``k`` sampled replies, a majority vote per axis."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from typing import Any

from slicelab.service.exemplars import base_id
from slicelab.service.judge.base import JudgeResult, apply_failure_rules
from slicelab.service.labeler_base import axes_for, modal, operations_label, target_class
from slicelab.service.samples import Document, EvalSample, Status
from slicelab.service.taxonomy import Taxonomy


#: Labeler name of the self-consistent judge in calibration tables, selections and rows.
SELF_CONSISTENT = "judge_sc"


class SelfConsistentJudge:
    """Self-consistency for an LLM judge: ``k`` sampled replies, a majority vote per axis.

    Wang et al. 2023, "Self-Consistency Improves Chain of Thought Reasoning in
    Language Models" (ICLR): sample several replies at a temperature above zero
    and keep the answer most of them agree on. Here each axis is voted on
    separately over the replies that validated:

    - single-label axes: the commonest label; ties go to the label of the
      earliest sample;
    - operation axes (an ordered list, primary first): the primary operation by
      the same majority vote over each reply's first item (an empty list votes
      for "no operation"), then every other operation listed by more than half
      of the valid replies, commonest first (ties: first seen), up to the
      axis's ``max_items``.

    Confidence per axis is the vote share of the chosen (primary) label over all
    ``k`` samples, so a reply that failed to validate counts against it. It is
    recorded like the other labelers' (``extra["confidence_by_axis"]``, output
    column ``confidence_<axis>``), with ``judge_sc`` as the labeler of every axis.

    Sample ``j`` of an item gets the seed ``sample_seed(item, j)`` (31 bits, from
    sha256 of ``seed``, the item id and ``j``): replies differ between samples and
    a rerun reproduces them on backends that take a seed (``takes_seed = True``
    on the judge, e.g. the embedded llama.cpp judge). Other backends get ``k``
    separate requests without a seed.

    Args:
        judge: the LLM judge (a :class:`service.judge.base.Judge`), already set to
            the sampling temperature (> 0 for replies to differ).
        k: samples per item, >= 1.
        seed: base of the per-sample seeds.

    Raises:
        ValueError: ``k`` < 1.
    """

    backend = SELF_CONSISTENT

    def __init__(self, judge: Any, k: int, seed: int = 0):
        if k < 1:
            raise ValueError(f"self-consistency needs k >= 1 samples, got {k}")
        self.judge, self.k, self.seed = judge, k, seed
        self.taxonomy: Taxonomy = judge.taxonomy
        self.model = judge.model

    def config(self) -> dict[str, Any]:
        """The judge's config (temperature included) plus ``self_consistency``: k and seed."""
        return self.judge.config() | {"self_consistency": {"k": self.k, "seed": self.seed}}

    def config_hash(self) -> str:
        """sha256 prefix of :meth:`config` (differs from the judge's own, and by k)."""
        return hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()[:16]

    def sample_seed(self, item: EvalSample | Document, j: int) -> int:
        """The seed of sample ``j`` (0-based) of ``item``: a 31-bit integer."""
        digest = hashlib.sha256(f"{self.seed}:{base_id(item.id)}:{j}".encode()).digest()
        return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF

    def _sample(self, item: EvalSample | Document, seed: int) -> JudgeResult:
        """One full judge labeling (with its own retries on invalid replies) under ``seed``."""
        send = self.judge._send
        if getattr(self.judge, "takes_seed", False):
            def send(messages, model_cls):
                return self.judge._send(messages, model_cls, seed=seed)
        steps = self.judge.label_steps(item)
        try:
            request = next(steps)
            while True:
                request = steps.send(send(*request))
        except StopIteration as done:
            return done.value

    def label(self, item: EvalSample | Document) -> JudgeResult:
        """Label one item from ``k`` samples.

        Returns:
            ``labeled`` when at least one sample validated, with the voted labels;
            otherwise the commonest status of the samples (ties: earliest) and the
            error of its first sample, with no labels. Raw texts of every attempt
            of every sample are kept in order; token counts and attempts are summed.
            Never raises for judge-side problems.
        """
        t0 = time.perf_counter()
        seeds = [self.sample_seed(item, j) for j in range(self.k)]
        samples = [self._sample(item, s) for s in seeds]
        valid = [r.labels if r.status == Status.labeled else None for r in samples]
        labels, conf = self.vote(item, valid)
        first = samples[0]
        if labels is not None:
            status, error = Status.labeled, None
        else:
            status = modal([r.status for r in samples])[0]
            error = next(r.error for r in samples if r.status == status)
        labels, fm_source = apply_failure_rules(item, labels, "judge")
        return JudgeResult(
            status=status, labels=labels, raw_texts=[t for r in samples for t in r.raw_texts],
            finish_reason=samples[-1].finish_reason, prompt_tokens=sum(r.prompt_tokens for r in samples),
            completion_tokens=sum(r.completion_tokens for r in samples),
            attempts=sum(r.attempts for r in samples), model=self.model, backend=self.judge.backend,
            error=error, latency_s=time.perf_counter() - t0, request_hash=first.request_hash,
            prompt_ref=first.prompt_ref, failure_mode_source=fm_source,
            extra={**first.extra, "labeler_by_axis": {a: self.backend for a in labels or {}},
                   "confidence_by_axis": conf,
                   "self_consistency": {"k": self.k, "valid": sum(v is not None for v in valid), "seeds": seeds}},
        )

    def label_many(self, items: list[EvalSample | Document]) -> list[JudgeResult]:
        """:meth:`label` for each item, in input order."""
        return [self.label(item) for item in items]

    def predict(self, item: EvalSample | Document) -> tuple[dict[str, Any], dict[str, float]]:
        """Voted labels (empty when no sample validated) and per-axis vote share of one item."""
        result = self.label(item)
        return result.labels or {}, result.extra["confidence_by_axis"]

    def vote(self, item: EvalSample | Document,
             samples: list[dict[str, Any] | None]) -> tuple[dict[str, Any] | None, dict[str, float]]:
        """Per-axis majority vote over sample labels (None: a sample that did not validate).

        Returns:
            ``(labels, confidence)``: labels is None when no sample validated;
            confidence maps each axis to its vote share over ``len(samples)`` (0-1, 4 decimals).
        """
        valid = [s for s in samples if s is not None]
        if not valid:
            return None, {}
        labels, conf = {}, {}
        for axis in axes_for(self.taxonomy, item):
            values = [None if s is None else s.get(axis.name) for s in samples]
            if all(v is None for v in values):
                continue
            if axis.kind != "operations":
                labels[axis.name], share = modal(values)
            else:
                best, share = modal([target_class(axis, {axis.name: v}) for v in values])
                listed = [op for v in values if v for op in dict.fromkeys(v)]
                counts = Counter(listed)
                extra = sorted((op for op in counts if op != best and counts[op] > len(valid) / 2),
                               key=lambda op: (-counts[op], listed.index(op)))
                labels[axis.name] = operations_label(axis, best, extra)
            conf[axis.name] = round(share, 4)
        return labels, conf
