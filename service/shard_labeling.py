"""What one shard job computes: the judge-phase rows of a row range, and the final rows of a row range.

Both stream their range from the shard in batches (:func:`service.shards.iter_batches`)
and yield one Arrow table per batch, so a job holds one batch at a time whatever
its range. Workers call these through ``workers.shard_tasks``.

Final row columns (one row per shard row, :func:`output_schema`)::

    shard, shard_index, row, id, source, url,
    content_sha1, n_chars, tokens (estimate of the whole document), truncated_chars,
    duplicate_of (id of the first occurrence), duplicate_of_shard_index, duplicate_of_row,
    in_judge_sample, routed,
    <every document axis>, primary_operation, labeler_<axis> (judge | student | null),
    student_prob_<axis>, status, error,
    judge_status, judge_model, judge_backend, judge_attempts, judge_latency_s, judge_raw_output,
    prompt_ref, request_hash, student_hash, taxonomy_name, taxonomy_version, taxonomy_hash,
    code_version, run_key

``status``: ``labeled`` (at least one axis has a label), ``unlabeled`` (not in the
judge sample and no axis the student may label), ``duplicate`` or
``rejected_input`` (``error`` says why). ``judge_status`` is the judge's own
outcome for rows sent to it (the sample, and rows routed below ``--route-below``);
a row whose judge call failed falls back to the student's labels.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from slicelab.service.samples import Document, Status
from slicelab.service.shard_index import NOT_FOUND, DedupIndex, row_key, split_key
from slicelab.service.shard_store import RangeJob, ShardRunStore
from slicelab.service.shards import ShardRow, estimate_tokens, iter_batches, truncate
from slicelab.service.taxonomy import Taxonomy, load_taxonomy


def _axis_fields(taxonomy: Taxonomy) -> list[pa.Field]:
    fields = []
    for axis in taxonomy.axes("document"):
        fields.append(pa.field(axis.name, pa.list_(pa.string()) if axis.kind == "operations" else pa.string()))
        if axis.kind == "operations":
            fields.append(pa.field("primary_operation", pa.string()))
    return fields


_JUDGE_META = [("judge_model", pa.string()), ("judge_backend", pa.string()), ("judge_attempts", pa.int32()),
               ("judge_latency_s", pa.float64()), ("judge_raw_output", pa.list_(pa.string())),
               ("prompt_ref", pa.string()), ("request_hash", pa.string())]
_PROVENANCE = [("taxonomy_name", pa.string()), ("taxonomy_version", pa.string()), ("taxonomy_hash", pa.string()),
               ("code_version", pa.string()), ("run_key", pa.string())]


def judge_schema(taxonomy: Taxonomy) -> pa.Schema:
    """Columns of a judge-phase part: row key and place, the text the judge saw, its labels and metadata."""
    return pa.schema([("key", pa.uint64()), ("shard_index", pa.int32()), ("row", pa.int64()), ("id", pa.string()),
                      ("text", pa.string()), ("status", pa.string()), ("error", pa.string()),
                      *_axis_fields(taxonomy), *_JUDGE_META])


def output_schema(taxonomy: Taxonomy) -> pa.Schema:
    """Columns of a final part (see the module docstring)."""
    axes = taxonomy.axes("document")
    return pa.schema([
        ("shard", pa.string()), ("shard_index", pa.int32()), ("row", pa.int64()), ("id", pa.string()),
        ("source", pa.string()), ("url", pa.string()), ("content_sha1", pa.string()), ("n_chars", pa.int64()),
        ("tokens", pa.int64()), ("truncated_chars", pa.int64()), ("duplicate_of", pa.string()),
        ("duplicate_of_shard_index", pa.int32()), ("duplicate_of_row", pa.int64()),
        ("in_judge_sample", pa.bool_()), ("routed", pa.bool_()),
        *_axis_fields(taxonomy),
        *[(f"labeler_{a.name}", pa.string()) for a in axes],
        *[(f"student_prob_{a.name}", pa.float64()) for a in axes],
        ("status", pa.string()), ("error", pa.string()), ("judge_status", pa.string()), *_JUDGE_META,
        ("student_hash", pa.string()), *_PROVENANCE,
    ])


def _label_values(taxonomy: Taxonomy, labels: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for axis in taxonomy.axes("document"):
        v = (labels or {}).get(axis.name)
        out[axis.name] = list(v) if axis.kind == "operations" and v is not None else v
        if axis.kind == "operations":
            out["primary_operation"] = v[0] if v else None
    return out


def _judge_values(r) -> dict[str, Any]:
    return {"judge_model": r.model, "judge_backend": r.backend, "judge_attempts": r.attempts,
            "judge_latency_s": round(r.latency_s, 4), "judge_raw_output": list(r.raw_texts),
            "prompt_ref": r.prompt_ref, "request_hash": r.request_hash}


def _make_judge(manifest: dict[str, Any]):
    """The run's judge, answering from the label cache unless the run was started with ``--no-cache``."""
    from slicelab.service.label_cache import CachedJudge, job_cache
    from slicelab.service.labeler_factory import make_judge  # imported on first use: a student-only worker stays light

    judge = make_judge(manifest["judge"])
    cache = job_cache(judge, manifest["options"].get("cache", True))
    return CachedJudge(judge, cache) if cache else judge


def _call_judge(judge, doc: Document):
    """``judge.label(doc)``; an exception becomes a ``judge_error`` result instead of losing the row."""
    from slicelab.service.judge import JudgeResult

    try:
        return judge.label(doc)
    except Exception as e:  # a bug must not lose the document: record it as a judge error
        return JudgeResult(status=Status.judge_error, labels=None, raw_texts=[], finish_reason=None,
                           prompt_tokens=0, completion_tokens=0, attempts=0, model=getattr(judge, "model", ""),
                           backend=getattr(judge, "backend", ""), latency_s=0.0, request_hash="", prompt_ref="",
                           error=f"{type(e).__name__}: {e} | {traceback.format_exc(limit=3)}")


def _document(r: ShardRow, text: str) -> Document:
    return Document(id=r.id, text=text, source=r.source, url=r.url)


def _read(store: ShardRunStore, job: RangeJob, index: DedupIndex) -> Iterator[list[ShardRow]]:
    m = store.manifest()
    o = m["options"]
    return iter_batches(job.shard, start=job.start, end=job.end, batch_rows=o["batch_rows"],
                        text_field=o["text_field"], id_field=o["id_field"], seek=index.seek(job.shard_index, job.start))


def judge_tables(store: ShardRunStore, job: RangeJob) -> Iterator[pa.Table]:
    """Judge the sample rows of a range; yield their judge-part tables (:func:`judge_schema`)."""
    m = store.manifest()
    taxonomy = load_taxonomy()
    schema = judge_schema(taxonomy)
    index = DedupIndex(store.index_dir)
    judge = _make_judge(m)
    max_tokens = m["options"]["max_tokens"]
    for batch in _read(store, job, index):
        keys = row_key(job.shard_index, np.array([r.row for r in batch], dtype=np.uint64))
        rows = []
        for r, key, sampled in zip(batch, keys, index.in_sample(keys)):
            if not sampled or r.text is None:
                continue
            text, _ = truncate(r.text, max_tokens)
            res = _call_judge(judge, _document(r, text))
            rows.append({"key": int(key), "shard_index": job.shard_index, "row": r.row, "id": r.id, "text": text,
                         "status": str(res.status), "error": res.error, **_label_values(taxonomy, res.labels),
                         **_judge_values(res)})
        if rows:
            yield pa.Table.from_pylist(rows, schema=schema)


def _judge_labels_for(store: ShardRunStore, job: RangeJob) -> dict[int, dict[str, Any]]:
    """Judge-sample rows of this range from ``judge-labels.parquet`` (row key → row)."""
    if not store.judge_labels_path.is_file():
        return {}
    lo, hi = row_key(job.shard_index, job.start), row_key(job.shard_index, job.end)
    t = pq.read_table(store.judge_labels_path, filters=[("key", ">=", lo), ("key", "<", hi)])
    return {r["key"]: r for r in t.drop_columns(["text"]).to_pylist()}


def label_tables(store: ShardRunStore, job: RangeJob) -> Iterator[pa.Table]:
    """Every row of a range, labeled; yield one final-part table (:func:`output_schema`) per batch."""
    from slicelab.service.student import load_student

    m = store.manifest()
    o = m["options"]
    taxonomy = load_taxonomy()
    schema = output_schema(taxonomy)
    index = DedupIndex(store.index_dir)
    st = json.loads(store.student_path.read_text())
    student = load_student(st["hash"], _student_folder(st))[0] if st.get("hash") else None
    student_axes = list(st["axes_student"]) if student else []
    route_below = o.get("route_below")
    judged = _judge_labels_for(store, job)
    provenance = {**taxonomy.provenance(), "code_version": m["code_version"], "run_key": m["run_key"]}
    judge = None
    for batch in _read(store, job, index):
        keys = row_key(job.shard_index, np.array([r.row for r in batch], dtype=np.uint64))
        hashes = index.hashes(job.shard_index, batch[0].row, batch[-1].row + 1)
        firsts = index.first_keys(hashes)
        id_firsts = index.id_duplicate_of(keys)
        out, to_student = [], []
        for r, key, h, first, id_first in zip(batch, keys, hashes, firsts, id_firsts):
            row: dict[str, Any] = {"shard": job.shard, "shard_index": job.shard_index, "row": r.row, "id": r.id,
                                   "source": r.source, "url": r.url, "in_judge_sample": False, "routed": False,
                                   "student_hash": None, **provenance}
            out.append(row)
            if r.text is None:
                row |= {"status": str(Status.rejected_input), "error": r.reason}
                continue
            if id_first != NOT_FOUND:
                row |= {"status": str(Status.rejected_input), "error": _duplicate_id(r.id, int(id_first), m)}
                continue
            if h == b"":  # the index saw no text here: the shard changed since it was read
                raise RuntimeError(f"{job.shard} row {r.row}: shard changed since the index pass; use a new run")
            text, cut = truncate(r.text, o["max_tokens"])
            row |= {"content_sha1": h.ljust(20, b"\0").hex(), "n_chars": len(r.text),
                    "tokens": estimate_tokens(len(r.text)), "truncated_chars": cut}
            if first != key:
                s, dr = split_key(first)
                row |= {"status": str(Status.duplicate), "duplicate_of": index.row_id(int(first)),
                        "duplicate_of_shard_index": s, "duplicate_of_row": dr}
                continue
            jrow = judged.get(int(key))
            if jrow is not None:
                row |= {"in_judge_sample": True, "judge_status": jrow["status"],
                        **{k: jrow[k] for k, _ in _JUDGE_META}}
                if jrow["status"] == Status.labeled:
                    row |= {"status": str(Status.labeled), "error": None,
                            **{k: jrow[k] for k in _label_values(taxonomy, {})}}
                    row |= {f"labeler_{a.name}": "judge" for a in taxonomy.axes("document")}
                    continue
                row["error"] = f"judge: {jrow['status']}: {jrow['error']}"
            to_student.append((row, r, text))
        if to_student:
            judge = _student_rows(to_student, student, st["hash"], student_axes, route_below, taxonomy, judge, m)
        yield pa.Table.from_pylist(out, schema=schema)


def _student_rows(todo: list[tuple[dict, ShardRow, str]], student, student_hash: str, axes: list[str],
                  route_below: float | None, taxonomy: Taxonomy, judge, manifest: dict[str, Any]):
    """Label rows with the student on its gated axes; send those under ``route_below`` to the judge.

    Returns the judge (built on first use, kept for the next batch)."""
    labels, probs = student.predict([t for _, _, t in todo], axes=axes) if axes else ([{}] * len(todo),) * 2
    for (row, r, text), lab, prob in zip(todo, labels, probs):
        row["student_hash"] = student_hash
        row |= {f"student_prob_{a}": prob.get(a) for a in axes}
        sent_before = row.get("judge_status") is not None  # a sample row whose judge call failed
        if prob and route_below is not None and not sent_before and min(prob.values()) < route_below:
            judge = judge or _make_judge(manifest)
            res = _call_judge(judge, _document(r, text))
            row |= {"routed": True, "judge_status": str(res.status), **_judge_values(res)}
            if res.status == Status.labeled:
                row |= {"status": str(Status.labeled), "error": None, **_label_values(taxonomy, res.labels),
                        **{f"labeler_{a}": "judge" for a in res.labels}}
                continue
            row["error"] = f"judge: {res.status}: {res.error}"
        if lab:
            row |= {"status": str(Status.labeled), **_label_values(taxonomy, lab),
                    **{f"labeler_{a}": "student" for a in lab}}
        else:
            row |= {"status": str(Status.unlabeled),
                    "error": row.get("error") or "not in the judge sample and no axis passed the student gate"}
    return judge


def _duplicate_id(rid: str, first: int, manifest: dict[str, Any]) -> str:
    """The reason of a row whose id an earlier row had with another text (lines are 1-based rows)."""
    s, row = split_key(first)
    where = f"line {row + 1}" + (f" of {Path(manifest['shards'][s]['path']).name}" if len(manifest["shards"]) > 1 else "")
    return f"duplicate id {rid!r} with another text (first at {where})"


def _student_folder(st: dict[str, Any]) -> Path | None:
    return Path(st["folder"]) if st.get("folder") else None
