"""Build the judge or labeler a spec describes, reading the gold files it names.

``make_judge(spec)`` takes the plain, JSON-serialisable spec a run's manifest or an RQ job
carries (never a client), so each worker process builds and keeps its own labeler:

- an LLM judge spec (:func:`service.judge.judge_spec`) → :func:`service.judge.backends.build_judge`,
  with the exemplar index built here from the pool split of its gold set (``exemplars``);
- a ``self_consistency`` entry → :class:`service.labelers.SelfConsistentJudge` around that judge;
- ``backend: per_axis`` (:func:`per_axis_spec`) → the labelers a calibration record selected per
  axis, the pool labelers trained on the pool split of the record's gold set.

Labelers, exemplar indexes and gold sets are imported on first use, so a worker whose judge
needs none of them starts without scikit-learn.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from slicelab.service.judge.backends import build_judge
from slicelab.service.samples import Document, EvalSample

if TYPE_CHECKING:
    from slicelab.service.labelers import PerAxisLabeler

_CACHE: dict[str, Any] = {}


def make_judge(spec: dict[str, Any]):
    """Build (and cache per process) the judge or labeler a spec describes.

    Backends: ``embedded``, ``openai``, ``vllm`` (LLM judges) and ``per_axis`` (the labelers a
    calibration record selected per axis, see :func:`per_axis_spec`). A
    ``self_consistency`` entry (``{"k", "temperature", "seed"}``) wraps the LLM
    judge, set to that temperature, in a :class:`service.labelers.SelfConsistentJudge`.
    An ``exemplars`` entry (``{"gold", "k", "seed", "holdout_frac"}``) gives the judge the
    ``k`` nearest exemplars from the pool split of that gold set.

    Returns:
        A :class:`service.judge.base.Judge`, a :class:`service.labelers.SelfConsistentJudge`
        or a :class:`service.labelers.PerAxisLabeler`; the same object for an equal spec.

    Raises:
        ConfigError: unknown backend or unusable configuration.
        RecordError: a gold set the spec names cannot be read.
    """
    key = json.dumps(spec, sort_keys=True)
    if key not in _CACHE:
        _CACHE[key] = _build(dict(spec))
    return _CACHE[key]


def _build(spec: dict[str, Any]):
    sc = spec.pop("self_consistency", None)
    if sc:
        from slicelab.service.labelers import SelfConsistentJudge

        return SelfConsistentJudge(make_judge(spec | {"temperature": sc["temperature"]}), sc["k"],
                                   seed=sc.get("seed", 0))
    exemplars = spec.pop("exemplars", None)
    prepared = _exemplar_kwargs(exemplars) if exemplars else {}
    if spec["backend"] == "per_axis":
        return _per_axis(spec)
    return build_judge(spec, **prepared)


def per_axis_spec(judge: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The spec of a labeler that uses, per axis, the labeler a calibration record selected.

    The self-consistent judge (``judge_sc``) is rebuilt with the settings the record measured.

    Args:
        judge: the LLM judge spec.
        record: a calibration record (``split``, ``labelers``, ``selection``, ``gold``, ``id``).

    Returns:
        ``{"backend": "per_axis", "judge", "selection", "pool": {"gold", "seed", "holdout_frac"},
        "cascade_threshold", "calibration_id"}`` (+ ``judge_sc``: ``{"k", "temperature", "seed"}``).
    """
    split = record["split"]
    exemplars = split.get("exemplars") or {}
    sc = record["labelers"].get("judge_sc")
    return {"backend": "per_axis", "judge": judge, "selection": record["selection"],
            "pool": {"gold": exemplars.get("path") or record["gold"]["path"],
                     "seed": split["seed"], "holdout_frac": 0.0 if exemplars else split["holdout_frac"]},
            "cascade_threshold": record["labelers"]["cascade"]["threshold"], "calibration_id": record["id"],
            **({"judge_sc": {k: sc[k] for k in ("k", "temperature", "seed")}} if sc else {})}


def gold_pool(pool: dict[str, Any]) -> tuple[list[EvalSample | Document], dict[str, dict[str, Any]]]:
    """The pool split of a gold set: the items the pool labelers learn from, and their gold labels.

    Args:
        pool: ``{"gold": path, "seed", "holdout_frac"}`` (the ``pool`` entry of :func:`per_axis_spec`).

    Returns:
        ``(items, {item id: gold labels})``.

    Raises:
        RecordError: the gold set cannot be read.
    """
    from slicelab.calibration.gold import GOLD, load_gold

    gold = load_gold(pool["gold"])
    ids, _ = gold.split(seed=pool["seed"], holdout_frac=pool["holdout_frac"])
    return [gold.items[i] for i in ids], {i: gold.labels[GOLD][i] for i in ids}


def _per_axis(spec: dict[str, Any]) -> PerAxisLabeler:
    from slicelab.service.labelers import CascadeLabeler, KNNLabeler, PerAxisLabeler, StudentLabeler

    judge = make_judge(spec["judge"])
    names = set(spec["selection"].values())
    labelers: dict[str, Any] = {"judge": judge}
    if "judge_sc" in names:
        labelers["judge_sc"] = make_judge(spec["judge"] | {"self_consistency": spec["judge_sc"]})
    if names & {"knn", "student", "cascade"}:
        items, labels = gold_pool(spec["pool"])
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
    from slicelab.calibration.gold import GOLD, load_gold
    from slicelab.service.exemplars import ExemplarIndex

    gold = load_gold(ex["gold"])
    pool, _ = gold.split(seed=ex["seed"], holdout_frac=ex["holdout_frac"])
    index = ExemplarIndex([gold.items[i] for i in pool], {i: gold.labels[GOLD][i] for i in pool})
    settings = {"gold_sha256": gold.sha256[:16], "seed": ex["seed"], "holdout_frac": ex["holdout_frac"],
                "pool_size": len(pool)}
    return {"exemplars": index, "k": ex["k"], "exemplar_settings": settings}
