"""Judges: one interface (:class:`Judge`), several backends.

``make_judge(spec)`` builds one from a plain, JSON-serialisable spec, so RQ
jobs carry the spec (never a client) and each worker process builds and keeps
its own judge.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slicelab.service import defaults
from slicelab.service.errors import ConfigError
from slicelab.service.judge.base import Attempt, Judge, JudgeResult, parse_reply, response_format

BACKENDS = ("embedded", "openai", "vllm")
_CACHE: dict[str, Judge] = {}


def judge_spec(*, judge_url: str | None = None, judge_model: str | None = None, backend: str | None = None,
               max_tokens: int | None = None, max_attempts: int | None = None,
               temperature: float | None = None, request_timeout_s: float | None = None,
               gguf: str | None = None, exemplars_gold: str | None = None, exemplars_k: int = 0,
               split_seed: int = 0, holdout_frac: float = 0.5, self_consistency: int = 0,
               sc_temperature: float = defaults.SC_TEMPERATURE, sc_seed: int = 0,
               concurrency: int | None = None) -> dict[str, Any]:
    """A judge spec from CLI options. Without a URL the backend is ``embedded``.

    With ``self_consistency`` k > 0 the spec describes a
    :class:`service.labelers.SelfConsistentJudge`: k samples per item at
    ``sc_temperature``, per-sample seeds derived from ``sc_seed``.

    ``concurrency`` (openai backend: requests in flight per worker) does not
    change labels and is not part of the judge's ``config_hash()``. The ``vllm``
    backend (offline batch inference on this machine's GPU) needs only the model.

    Raises:
        ConfigError: unknown backend, the openai backend without URL/model, the vllm
            backend without a model, concurrency below 1, or
            self-consistency with ``sc_temperature`` <= 0 and k > 1.
    """
    backend = backend or ("openai" if judge_url else "embedded")
    if backend not in BACKENDS:
        raise ConfigError(f"--judge-backend: unknown judge backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    spec: dict[str, Any] = {"backend": backend}
    if backend == "openai":
        if not judge_url or not judge_model:
            raise ConfigError("the openai backend needs --judge-url and --judge-model")
        spec |= {"base_url": judge_url, "model": judge_model}
        if request_timeout_s is not None:
            spec["request_timeout_s"] = request_timeout_s
        if concurrency is not None:
            if concurrency < 1:
                raise ConfigError(f"--judge-concurrency: must be at least 1, got {concurrency}")
            spec["concurrency"] = concurrency
    elif backend == "vllm":
        if not judge_model:
            raise ConfigError("the vllm backend needs --judge-model (a model name or path vLLM can load)")
        spec["model"] = judge_model
    elif gguf:
        spec["model_path"] = gguf
    if exemplars_k > 0:
        from slicelab.calibration.gold import BUNDLED

        gold = exemplars_gold or str(BUNDLED["eval"])
        spec["exemplars"] = {"gold": str(Path(gold).resolve()), "k": exemplars_k, "seed": split_seed,
                             "holdout_frac": holdout_frac}
    for key, value in (("max_tokens", max_tokens), ("max_attempts", max_attempts), ("temperature", temperature)):
        if value is not None:
            spec[key] = value
    if self_consistency > 0:
        spec["self_consistency"] = self_consistency_entry(self_consistency, sc_temperature, sc_seed)
    return spec


def self_consistency_entry(k: int, temperature: float = defaults.SC_TEMPERATURE, seed: int = 0) -> dict[str, Any]:
    """The ``self_consistency`` entry of a judge spec: ``{"k", "temperature", "seed"}``.

    Raises:
        ConfigError: k > 1 with a temperature <= 0 (every sample would be the same reply).
    """
    if k > 1 and temperature <= 0:
        raise ConfigError("--sc-temperature must be > 0: greedy samples would all be the same reply")
    return {"k": k, "temperature": temperature, "seed": seed}


def make_judge(spec: dict[str, Any]) -> Judge:
    """Build (and cache per process) the judge or labeler a spec describes.

    Backends: ``embedded``, ``openai``, ``vllm`` (LLM judges) and ``per_axis`` (the labelers a
    calibration record selected per axis, see :func:`per_axis_spec`). A
    ``self_consistency`` entry (``{"k", "temperature", "seed"}``) wraps the LLM
    judge, set to that temperature, in a :class:`service.labelers.SelfConsistentJudge`.

    Raises:
        ConfigError: unknown backend or unusable configuration.
    """
    key = json.dumps(spec, sort_keys=True)
    if key not in _CACHE:
        spec = dict(spec)
        sc = spec.pop("self_consistency", None)
        if sc:
            from slicelab.service.labelers import SelfConsistentJudge

            _CACHE[key] = SelfConsistentJudge(make_judge(spec | {"temperature": sc["temperature"]}), sc["k"],
                                              seed=sc.get("seed", 0))
            return _CACHE[key]
        backend = spec.pop("backend")
        if spec.get("exemplars"):
            spec |= _exemplar_kwargs(spec.pop("exemplars"))
        if backend == "per_axis":
            _CACHE[key] = _per_axis(spec)
        elif backend == "openai":
            from slicelab.service.judge.openai_backend import OpenAIJudge

            _CACHE[key] = OpenAIJudge(**spec)
        elif backend == "vllm":
            from slicelab.service.judge.vllm_backend import VLLMJudge

            _CACHE[key] = VLLMJudge(**spec)
        elif backend == "embedded":
            from slicelab.service.judge.embedded import EmbeddedJudge

            _CACHE[key] = EmbeddedJudge(**spec)
        else:
            raise ConfigError(f"unknown judge backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    return _CACHE[key]


def per_axis_spec(judge: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The spec of a labeler that uses, per axis, the labeler a calibration record selected.

    The self-consistent judge (``judge_sc``) is rebuilt with the settings the record measured.
    """
    split = record["split"]
    exemplars = split.get("exemplars") or {}
    sc = record["labelers"].get("judge_sc")
    return {"backend": "per_axis", "judge": judge, "selection": record["selection"],
            "pool": {"gold": exemplars.get("path") or record["gold"]["path"],
                     "seed": split["seed"], "holdout_frac": 0.0 if exemplars else split["holdout_frac"]},
            "cascade_threshold": record["labelers"]["cascade"]["threshold"], "calibration_id": record["id"],
            **({"judge_sc": {k: sc[k] for k in ("k", "temperature", "seed")}} if sc else {})}


def _pool(pool: dict[str, Any]):
    from slicelab.calibration.gold import GOLD, load_gold

    gold = load_gold(pool["gold"])
    ids, _ = gold.split(seed=pool["seed"], holdout_frac=pool["holdout_frac"])
    return [gold.items[i] for i in ids], {i: gold.labels[GOLD][i] for i in ids}


def _per_axis(spec: dict[str, Any]):
    from slicelab.service.labelers import CascadeLabeler, KNNLabeler, PerAxisLabeler, StudentLabeler

    judge = make_judge(spec["judge"])
    names = set(spec["selection"].values())
    labelers: dict[str, Any] = {"judge": judge}
    if "judge_sc" in names:
        labelers["judge_sc"] = make_judge(spec["judge"] | {"self_consistency": spec["judge_sc"]})
    if names & {"knn", "student", "cascade"}:
        items, labels = _pool(spec["pool"])
        settings = dict(spec["pool"])
        if names & {"knn", "cascade"}:
            labelers["knn"] = KNNLabeler(items, labels, pool_settings=settings)
        if "student" in names:
            labelers["student"] = StudentLabeler(items, labels, pool_settings=settings)
        if "cascade" in names:
            labelers["cascade"] = CascadeLabeler(labelers["knn"], judge, spec["cascade_threshold"])
    if names & {"shape", "cues"}:
        from slicelab.service.shape_labeler import CueLabeler, ShapeLabeler

        labelers |= {"shape": ShapeLabeler(), "cues": CueLabeler()}
    return PerAxisLabeler(labelers, spec["selection"])


def _exemplar_kwargs(ex: dict[str, Any]) -> dict[str, Any]:
    """Build the exemplar index from the pool split of a gold set (never its held-out items)."""
    from slicelab.calibration.gold import load_gold
    from slicelab.service.exemplars import ExemplarIndex

    gold = load_gold(ex["gold"])
    pool, _ = gold.split(seed=ex["seed"], holdout_frac=ex["holdout_frac"])
    index = ExemplarIndex([gold.items[i] for i in pool], {i: gold.labels["gold"][i] for i in pool})
    settings = {"gold_sha256": gold.sha256[:16], "seed": ex["seed"], "holdout_frac": ex["holdout_frac"],
                "pool_size": len(pool)}
    return {"exemplars": index, "k": ex["k"], "exemplar_settings": settings}


__all__ = ["Attempt", "Judge", "JudgeResult", "judge_spec", "make_judge", "parse_reply", "per_axis_spec",
           "response_format", "self_consistency_entry"]
