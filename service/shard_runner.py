"""Label pretraining shards: plan the run, index, judge a sample, train the student, label every row.

Phases, each resumable (progress lives in the run folder, never only in Redis):

1. **index** (this process): one streaming pass over every shard → row counts,
   content hashes, first occurrences, the seeded judge sample (service.shard_index).
2. **judge** (queue): ``workers.shard_tasks.judge_range`` jobs, each the row range
   spanning a few sample rows; the judge labels the sample rows in it.
3. **train** (this process): a student per axis on the judge labels minus a
   seeded held-out share; measured against the judge on the held-out share and
   against the gold set; saved under ``$SLICELAB_HOME/students/<hash>/``. An axis
   is labeled by the student only when both measurements pass the gate. After this
   point the run is frozen on that student (a re-run reuses it).
4. **label** (queue): ``workers.shard_tasks.label_range`` jobs over every row range;
   each writes a final part (service.shard_labeling).

A re-run of the same command skips what is finished; a job without a marker
(its worker was killed) is redone whole.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from redis import Redis
from rq import Queue
from rq.job import Job

from slicelab.service import defaults
from slicelab.service.errors import ConfigError
from slicelab.service.engine import Engine, LocalWorkers, Work, wait
from slicelab.service.samples import Status
from slicelab.service.shard_index import DedupIndex, build_index, split_key
from slicelab.service.shard_labeling import judge_schema
from slicelab.service.shard_store import RangeJob, ShardRunStore, trim_memory  # noqa: F401 (re-exported for the CLI)
from slicelab.service.shards import content_hash, shard_info
from slicelab.service.store import atomic_write, code_version, run_key

#: Task run by each job kind.
TASKS = {"judge": "slicelab.workers.shard_tasks.judge_range", "label": "slicelab.workers.shard_tasks.label_range"}


@dataclass(frozen=True)
class ShardOptions:
    """Options of a shard run (all part of its run key).

    Attributes:
        text_field, id_field: record fields of the text and the id.
        max_tokens: token budget documents are cut to (tokens; 4 characters each).
        judge_sample: distinct documents the judge labels; seed: its seed (and the held-out split's).
        heldout_frac: share of the judge sample kept out of training to measure the student.
        rows_per_job: rows per label job; judge_docs_per_job: sample documents per judge job.
        batch_rows: rows a job holds at a time.
        route_below: send student-labeled documents whose lowest gated-axis probability is below
            this to the judge (None: never).
        gold: document gold set the student is measured on ("": the bundled one);
            gate: gate thresholds file ("": ``calibration/gate.yaml``).
        student: hash of a saved student to use instead of training one.
        n_boot: bootstrap resamples of the kappa intervals.
        limit: label only the first ``limit`` rows over the shards in order (None: every row).
        cache: judge calls go through the Redis label cache (False: ``--no-cache``).
    """

    text_field: str = "text"
    id_field: str = "id"
    max_tokens: int = defaults.SHARD_MAX_TOKENS
    judge_sample: int = 200
    seed: int = 0
    heldout_frac: float = defaults.STUDENT_HELDOUT_FRAC
    rows_per_job: int = defaults.SHARD_ROWS_PER_JOB
    judge_docs_per_job: int = defaults.SHARD_JUDGE_DOCS_PER_JOB
    batch_rows: int = defaults.SHARD_BATCH_ROWS
    route_below: float | None = None
    gold: str = ""
    gate: str = ""
    student: str | None = None
    n_boot: int = defaults.STUDENT_N_BOOT
    limit: int | None = None
    cache: bool = True

    def recorded(self) -> dict[str, Any]:
        """The options as the manifest and the run key hold them: ``limit`` only when set and
        ``cache`` only when off, so a run without them keeps the run key it had before they existed."""
        out = asdict(self)
        if out["limit"] is None:
            del out["limit"]
        if out["cache"]:
            del out["cache"]
        return out

    def check(self) -> None:
        """Raises ConfigError naming the first option out of range."""
        if not 0.0 < self.heldout_frac < 1.0:
            raise ConfigError(f"--heldout-frac must be in (0, 1), got {self.heldout_frac}")
        if self.route_below is not None and not 0.0 <= self.route_below <= 1.0:
            raise ConfigError(f"--route-below must be a probability in [0, 1], got {self.route_below}")
        for name in ("max_tokens", "rows_per_job", "judge_docs_per_job", "batch_rows"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {self.limit}")
        if self.judge_sample < 0:
            raise ConfigError(f"--judge-sample must be >= 0, got {self.judge_sample}")
        if self.judge_sample == 0 and not self.student:
            raise ConfigError("--judge-sample 0 needs --student HASH (a saved student to label with)")


def _shard_path(p: str) -> str:
    return p if "://" in p else str(Path(p).resolve())


def plan_shard_run(shards: list[str], outdir: Path, options: ShardOptions, judge: dict[str, Any],
                   judge_config_hash: str) -> tuple[ShardRunStore, bool]:
    """Create the run folder, or find the same run there to resume.

    Returns:
        ``(store, resumed)``.

    Raises:
        ConfigError: bad options; a shard listed twice; ``outdir`` holds another run (other shards,
            shard contents, options or judge) or files that are not a run.
        InputFormatError: a shard is missing or of unknown format.
    """
    options.check()
    paths = [_shard_path(p) for p in shards]
    if len(set(paths)) != len(paths):
        raise ConfigError("a shard is listed twice: " + ", ".join(p for p in paths if paths.count(p) > 1))
    infos = [shard_info(p) for p in paths]
    recorded = options.recorded()
    key = run_key({"shards": infos, "options": recorded, "judge": judge, "judge_config_hash": judge_config_hash})
    store = ShardRunStore(outdir.resolve())
    if store.exists():
        m = store.manifest()
        if m["run_key"] != key:
            what = [n for n, a, b in (("shards", m["shards"], infos), ("options", m["options"], recorded),
                                      ("judge", m["judge"], judge)) if a != b] or ["judge configuration"]
            raise ConfigError(f"-o {outdir} holds another run (its {', '.join(what)} differ); "
                              "choose another output folder, or delete it to start over")
        return store, True
    if outdir.exists() and any(outdir.iterdir()):
        raise ConfigError(f"-o {outdir} is not empty and holds no shard run; choose a new or empty folder")
    store.write_manifest({"run_key": key, "shards": infos, "options": recorded, "judge": judge,
                          "judge_config_hash": judge_config_hash, "code_version": code_version(),
                          "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return store, False


def ensure_index(store: ShardRunStore, on_rows: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The run's index summary; builds the index first when it is missing or incomplete."""
    done = store.index_dir / "index.json"
    if done.is_file():
        return json.loads(done.read_text())
    m = store.manifest()
    o = m["options"]
    return build_index(store.index_dir, m["shards"], text_field=o["text_field"], id_field=o["id_field"],
                       judge_sample=o["judge_sample"], seed=o["seed"], batch_rows=o["batch_rows"],
                       limit=o.get("limit"), on_rows=on_rows)


def judge_jobs(store: ShardRunStore) -> list[RangeJob]:
    """Judge jobs: the sample, in row-key order, cut into groups of ``judge_docs_per_job`` within a shard."""
    m = store.manifest()
    per_job = m["options"]["judge_docs_per_job"]
    jobs: list[RangeJob] = []
    group: list[tuple[int, int]] = []

    def flush():
        if group:
            s = group[0][0]
            jobs.append(RangeJob("judge", s, m["shards"][s]["path"], group[0][1], group[-1][1] + 1))
            group.clear()

    for key in DedupIndex(store.index_dir).sample:
        s, row = split_key(int(key))
        if group and (group[0][0] != s or len(group) == per_job):
            flush()
        group.append((s, row))
    flush()
    return jobs


def label_jobs(store: ShardRunStore) -> list[RangeJob]:
    """Label jobs: every shard cut into row ranges of ``rows_per_job``."""
    m = store.manifest()
    n_rows = json.loads((store.index_dir / "index.json").read_text())["n_rows"]
    per_job = m["options"]["rows_per_job"]
    return [RangeJob("label", s, shard["path"], a, min(a + per_job, n_rows[s]))
            for s, shard in enumerate(m["shards"]) for a in range(0, n_rows[s], per_job)]


def enqueue_range(queue: Queue, store: ShardRunStore, job: RangeJob) -> Job:
    """Enqueue one range job (payload: run folder, shard path, start row, end row)."""
    return queue.enqueue(
        TASKS[job.kind], str(store.root), job.shard, job.start, job.end,
        job_id=f"slicelab-{job.name}-{uuid.uuid4().hex[:8]}", job_timeout=defaults.JOB_TIMEOUT_S,
        result_ttl=defaults.RESULT_TTL_S, failure_ttl=defaults.RESULT_TTL_S,
        description=f"{job.kind} rows {job.start}..{job.end} of {job.shard}",
    )


def run_jobs(store: ShardRunStore, jobs: list[RangeJob], connection: Redis, *,
             queue_name: str = defaults.SHARD_QUEUE_NAME, workers: LocalWorkers | None = None,
             on_progress: Callable[[int], None] | None = None, on_status: Callable[[str], None] | None = None,
             on_report: Callable[[str], None] | None = None) -> None:
    """Enqueue the jobs without a marker and wait until every job has one (see :mod:`service.engine`).

    Jobs go to the local workers' queue when there are local workers (``workers.queue``), else to
    ``queue_name``. A job that failed, vanished from Redis, or whose worker died is re-enqueued
    (failures and deaths at most MAX_REQUEUES times; vanished jobs do not count); dead local
    workers are replaced; after Redis did not answer, every job without a marker is enqueued anew.
    ``on_progress`` gets the rows of newly finished jobs (their markers' ``rows``); ``on_status``
    and ``on_report`` as in :func:`service.engine.wait`.

    Raises:
        ConfigError: a job failed more than MAX_REQUEUES times, or local workers keep dying.
    """
    work = Work(store=store, units=list(jobs), enqueue=lambda q, j: enqueue_range(q, store, j),
                label=lambda j: f"job {j.name}", key=lambda j: j.name, where=str(store.root))
    engine = Engine(work, connection, workers.queue if workers else queue_name, workers=workers)
    wait(engine, on_progress=on_progress, on_status=on_status, on_report=on_report, noun="job")


# --------------------------------------------------------------------------- the student stage


def collect_judge_labels(store: ShardRunStore):
    """Merge the judge parts into ``judge-labels.parquet`` (sorted by row key); return it as a pandas DataFrame."""
    from slicelab.service.taxonomy import load_taxonomy

    schema = judge_schema(load_taxonomy())
    parts = store.done_parts("judge")
    table = pa.concat_tables([pq.read_table(p, schema=schema) for p in parts]) if parts else schema.empty_table()
    table = table.sort_by("key")
    tmp = store.root / f".judge-labels.parquet.tmp-{uuid.uuid4().hex[:6]}"
    pq.write_table(table, tmp)
    tmp.replace(store.judge_labels_path)
    df = table.to_pandas()
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].map(lambda v: v.tolist() if isinstance(v, np.ndarray) else v)
    return df


def train_stage(store: ShardRunStore) -> dict[str, Any]:
    """Train, measure and save the student on the judge sample; write and return ``student.json``.

    The labeled judge sample (documents whose text is in the gold set left out, so the gold
    measurement stays held out) is split, seeded, into a training part and a held-out part of
    ``heldout_frac``. Per axis, the student is used only when its verdict passes against both
    the judge (held-out part) and the gold set.

    Returns:
        ``{"hash", "folder", "axes_student", "axes": {axis: {"vs_judge", "vs_gold", "use_student"}},
        "n_train", "n_heldout", "n_gold_excluded"}``; ``hash`` is None when fewer than 2 judged
        documents could train a student (then no axis uses the student).
    """
    from slicelab.calibration.gate import GATE_FILE, load_gate
    from slicelab.calibration.gold import BUNDLED, GOLD, load_gold
    from slicelab.service.student import ShardStudent, StudentSettings, measure, save_student

    m = store.manifest()
    o = m["options"]
    gold = load_gold(o["gold"] or BUNDLED["document"])
    if gold.kind != "document":
        raise ConfigError(f"--gold {o['gold']}: a {gold.kind} gold set; the student needs a document gold set")
    gate_path = o["gate"] or str(GATE_FILE)
    gate = load_gate(gate_path)
    df = collect_judge_labels(store)
    df = df[df["status"] == Status.labeled].reset_index(drop=True)
    index = DedupIndex(store.index_dir)
    gold_hashes = {content_hash(item.text) for item in gold.items.values()}
    in_gold = np.array([index.hashes(s, r, r + 1)[0].ljust(20, b"\0") in gold_hashes
                        for s, r in zip(df["shard_index"], df["row"])], dtype=bool)
    n_excluded = int(in_gold.sum())
    df = df[~in_gold].reset_index(drop=True)
    rng = np.random.default_rng(o["seed"])
    order = rng.permutation(len(df))
    n_held = int(round(o["heldout_frac"] * len(df)))
    held, train = df.iloc[order[:n_held]], df.iloc[order[n_held:]]
    base = {"n_train": len(train), "n_heldout": len(held), "n_gold_excluded": n_excluded}
    if len(train) < 2:
        record = {"hash": None, "folder": None, "axes_student": [], "axes": {}, **base,
                  "reason": f"only {len(train)} judged documents to train on"}
        atomic_write(store.student_path, json.dumps(record, indent=2).encode())
        return record
    student = ShardStudent(StudentSettings(max_tokens=o["max_tokens"]))
    axes = [a.name for a in student.axes]
    labels = lambda frame: [{a: row[a] for a in axes} for _, row in frame.iterrows()]  # noqa: E731
    student.fit(list(train["text"]), labels(train))
    vs_judge = measure(student, list(held["text"]), labels(held), gate, n_boot=o["n_boot"], seed=o["seed"])
    gold_ids = list(gold.items)
    vs_gold = measure(student, [gold.items[i].text for i in gold_ids], [gold.labels[GOLD][i] for i in gold_ids],
                      gate, n_boot=o["n_boot"], seed=o["seed"])
    per_axis = {a: {"vs_judge": vs_judge[a]["verdict"], "vs_gold": vs_gold[a]["verdict"],
                    "use_student": vs_judge[a]["verdict"]["verdict"] == "pass"
                    and vs_gold[a]["verdict"]["verdict"] == "pass"} for a in axes}
    passed = [a for a in axes if per_axis[a]["use_student"]]
    meta = {
        "trained_on": {"run_key": m["run_key"], "judge": m["judge"], "judge_config_hash": m["judge_config_hash"],
                       "shards": [s["path"] for s in m["shards"]], "seed": o["seed"],
                       "heldout_frac": o["heldout_frac"], **base},
        "vs_judge": {a: {k: v[k] for k in ("summary", "verdict", "metrics")} for a, v in vs_judge.items()},
        "vs_gold": {a: {k: v[k] for k in ("summary", "verdict", "metrics")} for a, v in vs_gold.items()},
        "gold": {"path": str(gold.path), "sha256": gold.sha256, "n_items": len(gold_ids)},
        "gate": {"path": gate_path, "version": gate.version},
        "axes_passed": passed,
        "code_version": m["code_version"],
    }
    digest, folder = save_student(student, meta)
    record = {"hash": digest, "folder": str(folder), "axes_student": passed, "axes": per_axis,
              "summaries": {a: {"vs_judge": vs_judge[a]["summary"], "vs_gold": vs_gold[a]["summary"]} for a in axes},
              **base}
    atomic_write(store.student_path, json.dumps(record, indent=2, allow_nan=False).encode())
    return record


def use_saved_student(store: ShardRunStore, digest: str) -> dict[str, Any]:
    """Use a saved student (its recorded verdicts decide its axes); write and return ``student.json``."""
    from slicelab.service.student import load_student, students_dir

    student, meta = load_student(digest)
    record = {"hash": digest, "folder": str(students_dir() / digest), "axes_student": list(meta.get("axes_passed", [])),
              "axes": {a: {"vs_judge": meta.get("vs_judge", {}).get(a, {}).get("verdict"),
                           "vs_gold": meta.get("vs_gold", {}).get(a, {}).get("verdict"),
                           "use_student": a in meta.get("axes_passed", [])} for a in (x.name for x in student.axes)},
              "summaries": {a: {"vs_judge": meta.get("vs_judge", {}).get(a, {}).get("summary"),
                                "vs_gold": meta.get("vs_gold", {}).get(a, {}).get("summary")}
                            for a in (x.name for x in student.axes)},
              "n_train": meta.get("n_train"), "given": True}
    atomic_write(store.student_path, json.dumps(record, indent=2, allow_nan=False).encode())
    return record


def summarize(store: ShardRunStore, timings_s: dict[str, float]) -> dict[str, Any]:
    """Counts over the finished label parts (status, labeler per axis) plus timings; writes ``summary.json``."""
    status: dict[str, int] = {}
    labelers: dict[str, dict[str, int]] = {}
    jobs = label_jobs(store)
    for j in jobs:
        mk = store.marker(j)
        for k, v in mk["status_counts"].items():
            status[k] = status.get(k, 0) + v
        for col, counts in mk.get("labeler_counts", {}).items():
            axis = labelers.setdefault(col.removeprefix("labeler_"), {})
            for k, v in counts.items():
                axis[k] = axis.get(k, 0) + v
    index = json.loads((store.index_dir / "index.json").read_text())
    student = json.loads(store.student_path.read_text()) if store.student_path.is_file() else {}
    summary = {"run_key": store.manifest()["run_key"], "rows": sum(index["n_rows"]), "index": index,
               "status_counts": status, "labeler_counts": labelers, "n_label_jobs": len(jobs),
               "student_hash": student.get("hash"), "axes_student": student.get("axes_student", []),
               "timings_s": {k: round(v, 3) for k, v in timings_s.items()}, "parts": str(store.parts_dir)}
    atomic_write(store.summary_path, json.dumps(summary, indent=2).encode())
    return summary


def retry_judge_errors(store: ShardRunStore, jobs: list[RangeJob]) -> int:
    """Before the student is trained, reopen finished judge jobs that hold a ``judge_error``
    (a transient server failure) so a re-run asks again; return how many were reopened."""
    if store.student_path.is_file():
        return 0
    n = 0
    for j in jobs:
        if store.is_done(j) and store.marker(j)["status_counts"].get(Status.judge_error):
            store.marker_path(j).unlink()
            n += 1
    return n

