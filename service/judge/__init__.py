"""Judges: one interface (:class:`Judge`), several backends.

:func:`judge_spec` turns options into a plain, JSON-serialisable spec, so RQ jobs
carry the spec (never a client); :func:`service.judge.backends.build_judge` builds
the LLM judge of a spec. Judges with exemplars or self-consistency, and the
per-axis labelers, are built (and cached per worker process) by
:func:`service.labeler_factory.make_judge`, which reads the gold files they need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slicelab.service import defaults
from slicelab.service.errors import ConfigError
from slicelab.service.judge.backends import BACKENDS, build_judge
from slicelab.service.judge.base import Attempt, Judge, JudgeResult, parse_reply, response_format
from slicelab.service.judge.spec import check_spec, parse_spec


def judge_spec(*, judge_url: str | None = None, judge_model: str | None = None, backend: str | None = None,
               max_tokens: int | None = None, max_attempts: int | None = None,
               temperature: float | None = None, request_timeout_s: float | None = None,
               gguf: str | None = None, exemplars_gold: str | None = None, exemplars_k: int = 0,
               split_seed: int = 0, holdout_frac: float = 0.5, self_consistency: int = 0,
               sc_temperature: float = defaults.SC_TEMPERATURE, sc_seed: int = 0,
               concurrency: int | None = None, output_form: str | None = None) -> dict[str, Any]:
    """A judge spec from CLI options. Without a URL the backend is ``embedded``.

    With ``self_consistency`` k > 0 the spec describes a
    :class:`service.labelers.SelfConsistentJudge`: k samples per item at
    ``sc_temperature``, per-sample seeds derived from ``sc_seed``.

    ``concurrency`` (openai backend: requests in flight per worker) does not
    change labels and is not part of the judge's ``config_hash()``. The ``vllm``
    backend (offline batch inference on this machine's GPU) needs only the model.
    ``output_form`` (embedded backend only): ``json`` (default) or ``values`` (the model writes
    only the label ids, see :mod:`service.judge.values_form`; another judge configuration).

    Raises:
        ConfigError: unknown backend, the openai backend without URL/model, the vllm
            backend without a model, concurrency below 1, or
            self-consistency with ``sc_temperature`` <= 0 and k > 1, an ``output_form`` other
            than ``json``/``values`` or with a backend other than ``embedded``.
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
    if output_form is not None:
        if output_form not in ("json", "values"):
            raise ConfigError(f"--judge-output-form: unknown form {output_form!r}; allowed: json, values")
        if backend != "embedded":
            raise ConfigError(f"--judge-output-form: only the embedded judge has output forms (backend {backend!r})")
        if output_form == "values":  # json is the default form: its spec (and configuration hash) stay as before
            spec["output_form"] = "values"
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
    return check_spec(spec, "judge options")


def self_consistency_entry(k: int, temperature: float = defaults.SC_TEMPERATURE, seed: int = 0) -> dict[str, Any]:
    """The ``self_consistency`` entry of a judge spec: ``{"k", "temperature", "seed"}``.

    Raises:
        ConfigError: k > 1 with a temperature <= 0 (every sample would be the same reply).
    """
    if k > 1 and temperature <= 0:
        raise ConfigError("--sc-temperature must be > 0: greedy samples would all be the same reply")
    return {"k": k, "temperature": temperature, "seed": seed}


__all__ = ["BACKENDS", "Attempt", "Judge", "JudgeResult", "build_judge", "check_spec", "judge_spec", "parse_reply",
           "parse_spec", "response_format", "self_consistency_entry"]
