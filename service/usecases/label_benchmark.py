"""Use case: label every sample of a benchmark file (CLI ``label-benchmark``/``resume``, REST ``POST /v1/jobs``).

Steps, shared by every entry point:

1. :func:`choose_labelers` — per axis, the labeler the latest calibration of this judge selected
   (only where it passed the gate), or the LLM judge / self-consistent judge on every axis;
2. :func:`prepare` — the run folder (normalized samples, manifest with the labeler choice);
3. the job engine labels the chunks (:func:`slicelab.service.runner.execute` or a REST job);
4. :func:`finish` — the merged table with each axis's calibration verdict (``gate_<axis>``) and
   ``calibration_id`` attached.

The command line goes through :func:`plan` (or :func:`resume`) and :func:`finish_job`, which add
the output checks, the judge probe, the Redis connection and the output file around these steps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from slicelab.calibration.records import latest_for_config, load_record
from slicelab.calibration.selection import gated_selection, used_selection, used_verdicts
from slicelab.service import defaults
from slicelab.service.errors import SlicelabError
from slicelab.service.judge import judge_spec, self_consistency_entry
from slicelab.service.judge.resilience import probe_judge
from slicelab.service.labeler_factory import make_judge, per_axis_spec
from slicelab.service.output import check_output, write_table
from slicelab.service.readers import FieldMapping, read_eval_samples
from slicelab.service.redis_conn import resolve_redis_url
from slicelab.service.runner import RunPlan, collect, prepare_run, resume_plan
from slicelab.service.slices import apply_gate
from slicelab.service.taxonomy import load_taxonomy
from slicelab.service.throughput import describe as describe_throughput, label_chunk_size, run_stats

LABELER_CHOICES = ("selected", "judge")


@dataclass
class LabelerChoice:
    """What labels a run: the spec the workers build, and the calibration that gates its axes.

    Attributes:
        spec: judge spec the workers build (an LLM judge, a self-consistent judge or ``per_axis``).
        use: ``selected`` (per axis, the record's selection), ``judge`` or ``judge_sc`` (that
            labeler on every axis).
        record: the calibration record whose verdicts gate the output, or None (every axis ungated).
        config_hash: the labeler's configuration hash (part of the run key).
        notes: lines for the user (e.g. why a record does not apply).
        show_selection: the record's per-axis selection was consulted (print it with its gate).
    """

    spec: dict[str, Any]
    use: str
    record: dict[str, Any] | None
    config_hash: str
    notes: list[str] = field(default_factory=list)
    show_selection: bool = False


def choose_labelers(judge: dict[str, Any], *, labeler: str = "selected", self_consistency: int = 0,
                    sc_temperature: float = defaults.SC_TEMPERATURE) -> LabelerChoice:
    """Choose the labelers for a run of ``judge`` (a spec from :func:`slicelab.service.judge.judge_spec`).

    The calibration record is the latest one measured for this judge configuration; with none,
    the embedded judge falls back to the bundled record (what the bundled gold sets show to be
    best per axis). With ``self_consistency`` k > 0 the self-consistent judge labels every axis,
    gated only by a record that measured it with the same k and temperature.

    Raises:
        SlicelabError: ``labeler`` is not one of :data:`LABELER_CHOICES`.
        ConfigError: an unusable judge spec or self-consistency setting.
    """
    if labeler not in LABELER_CHOICES:
        raise SlicelabError(f"--labeler: unknown choice {labeler!r}; allowed: {', '.join(LABELER_CHOICES)}")
    record = latest_for_config(make_judge(judge).config_hash(), "eval")
    if record is None and labeler == "selected" and not self_consistency and judge["backend"] == "embedded":
        from slicelab.calibration.offline import bundled_record

        record = bundled_record("eval")
    if self_consistency:
        return _self_consistent(judge, record, self_consistency, sc_temperature)
    spec, use, shown = judge, "judge", False
    if labeler == "selected" and record is not None and record.get("selection"):
        shown = True
        chosen = used_selection(record)
        if set(chosen.values()) != {"judge"}:
            spec, use = per_axis_spec(judge, record | {"selection": chosen}), "selected"
    return LabelerChoice(spec, use, record, make_judge(spec).config_hash(), show_selection=shown)


def _self_consistent(judge: dict[str, Any], record: dict[str, Any] | None, k: int,
                     temperature: float) -> LabelerChoice:
    # the k samples are the judge's own: its in-flight concurrency setting is not carried over
    spec = {key: v for key, v in judge.items() if key != "concurrency"}
    spec["self_consistency"] = self_consistency_entry(k, temperature)
    config_hash = make_judge(spec).config_hash()
    notes = []
    measured = ((record or {}).get("labelers") or {}).get("judge_sc") or {}
    if record is not None and measured.get("config_hash") != config_hash:
        notes.append(f"calibration {record['id']} did not measure the self-consistent judge with k={k}, "
                     f"temperature {temperature} (run `slicelab calibrate --self-consistency {k} "
                     f"--sc-temperature {temperature}`)")
        record = None
    return LabelerChoice(spec, "judge_sc", record, config_hash, notes)


def prepare(items: Iterable, choice: LabelerChoice, *, input_path: Path, out_path: Path, chunk_size: int,
            options: dict[str, Any], meta: dict[str, Any] | None = None) -> RunPlan:
    """Create (or find) the run folder; the manifest records the labeler choice for :func:`finish`.

    Raises:
        SlicelabError: unreadable input (see :func:`slicelab.service.runner.prepare_run`).
    """
    meta = {**(meta or {}), "use": choice.use, "calibration_id": choice.record and choice.record["id"]}
    return prepare_run(items, input_path=input_path, out_path=out_path, kind="eval", judge=choice.spec,
                       judge_config_hash=choice.config_hash, chunk_size=chunk_size, options=options, meta=meta)


def run_choice(meta: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The calibration record and ``use`` a run was started with (from its manifest's ``meta``).

    Raises:
        SlicelabError: the recorded calibration record is gone.
    """
    record = load_record(meta["calibration_id"]) if meta.get("calibration_id") else None
    return record, meta.get("use", "judge")


def finish(plan: RunPlan, record: dict[str, Any] | None, use: str) -> tuple[pd.DataFrame, str]:
    """The run's table (one row per input record) with each axis's calibration verdict attached.

    Returns:
        ``(table, note)``: ``note`` says which calibration gates which axis, or that none does.
    """
    return gate(collect(plan), record, plan.store.manifest()["kind"], use=use)


def gate(df: pd.DataFrame, record: dict[str, Any] | None, kind: str, *, use: str) -> tuple[pd.DataFrame, str]:
    """Attach the verdict of each axis's labeler actually used (``gate_<axis>``, ``calibration_id``).

    ``use``: ``selected`` (per axis, the record's selection), ``judge`` or ``judge_sc``.

    Returns:
        ``(table, note)`` as for :func:`finish`.
    """
    if record is None:
        return (apply_gate(df, None, load_taxonomy(), kind),
                "no calibration record for this judge configuration: every axis is ungated (run `slicelab calibrate`)")
    verdicts = {"selected": used_verdicts(record), "judge_sc": record.get("judge_sc_verdicts")}.get(use) \
        or record.get("judge_verdicts", record["verdicts"])
    if use == "selected":
        note = f"calibration {record['id']}: per axis " + ", ".join(
            f"{a} {row['labeler']} ({row['gate']})" for a, row in gated_selection(record).items())
    else:
        note = f"calibration {record['id']}: {use} on every axis: " + ", ".join(
            f"{a} {v}" for a, v in verdicts.items())
    return apply_gate(df, record | {"verdicts": verdicts}, load_taxonomy(), kind), note


@dataclass
class LabelJob:
    """A run ready for the job engine, with what its end needs (output file, gate).

    Attributes:
        plan: the run folder and its pending chunks.
        output: the output file; ``fmt``: ``parquet`` or ``jsonl``.
        record, use: as in :class:`LabelerChoice` (read back from the manifest on resume).
        redis_url, redis_origin: the Redis the run uses, and where that URL came from
            (see :func:`slicelab.service.redis_conn.resolve_redis_url`).
    """

    plan: RunPlan
    output: Path
    fmt: str
    record: dict[str, Any] | None
    use: str
    redis_url: str
    redis_origin: str


def plan(input_path: Path, out_path: Path, *, judge: dict[str, Any], fmt: str | None = None,
         input_format: str | None = None, mapping: FieldMapping | None = None, benchmark: str | None = None,
         limit: int | None = None, chunk_size: int | None = None, no_cache: bool = False,
         labeler: str = "selected", self_consistency: int = 0, sc_temperature: float = defaults.SC_TEMPERATURE,
         on_choice: Callable[[LabelerChoice], None] | None = None) -> LabelJob:
    """Check the output, choose the labelers, probe the judge and prepare the run folder of a benchmark file.

    ``judge``: keyword arguments of :func:`slicelab.service.judge.judge_spec`. ``limit``: only the
    first N records. ``no_cache``: the workers bypass the Redis label cache. ``on_choice`` sees the
    labeler choice before the judge is probed (to show the selection while the judge starts).

    Raises:
        SlicelabError: an unwritable output, an unusable judge or input, a judge that fails its probe.
    """
    fmt = check_output(out_path, fmt, input_path)
    spec = judge_spec(**judge)
    choice = choose_labelers(spec, labeler=labeler, self_consistency=self_consistency, sc_temperature=sc_temperature)
    if on_choice:
        on_choice(choice)
    probe_judge(choice.spec)
    mapping = mapping or FieldMapping()
    items = read_eval_samples(input_path, fmt=input_format, mapping=mapping, benchmark=benchmark)
    if limit:
        items = islice(items, limit)
    run = prepare(items, choice, input_path=input_path, out_path=out_path,
                  chunk_size=chunk_size or label_chunk_size(spec),
                  options={"limit": limit, "mapping": vars(mapping), "input_format": input_format,
                           "benchmark": benchmark, **({"cache": False} if no_cache else {})},
                  meta={"output_format": fmt})
    url, origin = resolve_redis_url(run.store.root.parent / "redis")
    return LabelJob(run, out_path, fmt, choice.record, choice.use, url, origin)


def resume(run_dir: Path, output: Path | None = None) -> LabelJob:
    """Reopen a run from its folder alone (``output``: default, the file it was started with).

    Raises:
        SlicelabError: not a run folder, a manifest without an output and no ``output``, a
            recorded calibration that is gone, a judge that fails its probe.
    """
    run = resume_plan(run_dir)
    m = run.store.manifest()
    meta = m.get("meta") or {}
    if output is None and not m.get("output"):
        raise SlicelabError(f"{run_dir}: the manifest does not name the output file; pass -o")
    fmt = check_output(output or Path(m["output"]), None if output else meta.get("output_format"), Path(m["input"]))
    output = output or Path(m["output"])
    record, use = run_choice(meta)
    probe_judge(m["judge"])
    url, origin = resolve_redis_url(run.store.root.parent / "redis")
    return LabelJob(run, output, fmt, record, use, url, origin)


@dataclass
class FinishedJob:
    """A written run: its gated table, the gate note and the throughput line of this command's chunks."""

    table: pd.DataFrame
    note: str
    throughput: str


def finish_job(job: LabelJob) -> FinishedJob:
    """Merge the run, attach the gate, write the output file and the run's ``throughput.json``."""
    df, note = finish(job.plan, job.record, job.use)
    write_table(df, job.output, job.fmt)
    store = job.plan.store
    stats = run_stats(store, df)
    (store.root / "throughput.json").write_text(json.dumps(stats, indent=2, sort_keys=True))
    this_command = run_stats(store, chunks=job.plan.pending)  # the chunks this command labeled
    return FinishedJob(df, note, describe_throughput(this_command, run=stats))
