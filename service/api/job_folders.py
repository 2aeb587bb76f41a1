"""REST bulk jobs on disk: one folder per job under ``$SLICELAB_HOME/jobs``.

A job folder holds ``job.json`` (input, counts, queue, the engine's saved state: see
:mod:`service.api.job_engine`), ``job.lock``, an uploaded input file if any, the run folder
(``.slicelab-runs/<run_key>/``) and the results written on first download
(``results.parquet`` / ``results.jsonl``). Jobs are labeled the way ``slicelab label-benchmark``
labels a file (:mod:`service.usecases.label_benchmark`). The run machinery (pandas, scipy) is
imported when a job is first started or read, so the service itself starts in well under a second.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from redis import Redis
from starlette.exceptions import HTTPException

from slicelab.service.api.settings import Settings

if TYPE_CHECKING:
    from slicelab.service.store import RunStore


class JobFolders:
    """The job folders under ``root`` (``<root>/<job id>/job.json``; job ids are 16 hex digits).

    Every method that takes a ``job_id`` raises ``HTTPException`` 404 for an unknown or malformed id.
    """

    def __init__(self, root: Path):
        self.root = root

    def _path(self, job_id: str) -> Path:
        if not job_id.isalnum():
            raise HTTPException(404, f"no job {job_id!r}")
        return self.root / job_id / "job.json"

    def load(self, job_id: str) -> dict[str, Any]:
        """The job's ``job.json``."""
        path = self._path(job_id)
        if not path.is_file():
            raise HTTPException(404, f"no job {job_id!r}")
        return json.loads(path.read_text())

    def save(self, job: dict[str, Any]) -> None:
        """Write ``job.json`` atomically."""
        from slicelab.service.store import atomic_write

        atomic_write(self._path(job["id"]), json.dumps(job, indent=2).encode())

    @contextlib.contextmanager
    def lock(self, job_id: str) -> Iterator[None]:
        """An exclusive lock on one job's folder (two status requests never enqueue the same chunk twice)."""
        with open(self._path(job_id).with_name("job.lock"), "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def receive(self, filename: str | None, stream: BinaryIO) -> tuple[str, Path]:
        """Keep an uploaded file as ``input<suffix>`` in a new job folder; ``(job id, file)``.

        The client's file name gives the suffix only, never a path. Nothing is left on failure.
        """
        job_id = uuid.uuid4().hex[:16]
        folder = self.root / job_id
        folder.mkdir(parents=True)
        try:
            name = Path(filename or "upload.jsonl").name or "upload.jsonl"
            target = folder / ("input" + Path(name).suffix.lower())
            with open(target, "wb") as out:
                shutil.copyfileobj(stream, out)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return job_id, target

    def start(self, settings: Settings, path: Path, limit: int | None, chunk_size: int, conn: Redis,
              job_id: str | None = None) -> dict[str, Any]:
        """Plan a job over the eval samples in ``path`` and enqueue its chunks on ``settings.queue``.

        Returns:
            ``{"id", "state": "queued", "n_items", "n_rejected", "status_url"}``.

        Raises:
            redis.exceptions.ConnectionError: Redis does not answer (no job folder is left).
            SlicelabError: an unreadable input file (no job folder is left).
        """
        job_id = job_id or uuid.uuid4().hex[:16]
        folder = self.root / job_id
        folder.mkdir(parents=True, exist_ok=True)
        try:
            return self._plan_and_enqueue(settings, folder, job_id, path, limit, chunk_size, conn)
        except BaseException:  # Redis gone mid-way, a bad file...: no half-made job folder is left
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def _plan_and_enqueue(self, settings: Settings, folder: Path, job_id: str, path: Path, limit: int | None,
                          chunk_size: int, conn: Redis) -> dict[str, Any]:
        from slicelab.service.api.job_engine import start_engine
        from slicelab.service.readers import read_eval_samples
        from slicelab.service.usecases import label_benchmark as usecase

        choice = usecase.choose_labelers(settings.judge)  # the labelers `slicelab label-benchmark` would choose
        items = read_eval_samples(path)
        if limit:
            items = islice(items, limit)
        plan = usecase.prepare(items, choice, input_path=path, out_path=folder / "labels.parquet",
                               chunk_size=chunk_size, options={"limit": limit})
        job = {"id": job_id, "folder": str(folder), "run_dir": str(plan.store.root), "input": path.name,
               "n_items": plan.n_items, "n_rejected": plan.n_rejected, "n_chunks": plan.n_chunks,
               "queue": settings.queue, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "canceled": False}
        start_engine(job, plan.store, conn)
        self.save(job)
        return {"id": job_id, "state": "queued", "n_items": plan.n_items, "n_rejected": plan.n_rejected,
                "status_url": f"/v1/jobs/{job_id}"}

    def state(self, job_id: str, redis: Callable[[], Redis]) -> dict[str, Any]:
        """One engine pass over the job, then its state (see :func:`service.api.job_engine.advance`)."""
        from slicelab.service.api.job_engine import advance

        self.load(job_id)  # 404 before a lock file is made
        with self.lock(job_id):
            job = self.load(job_id)  # read under the lock: another request may have advanced it
            state = advance(job, job_store(job), redis)
            self.save(job)
        return state

    def cancel(self, job_id: str, redis: Callable[[], Redis]) -> int:
        """Mark the job canceled and cancel its current RQ jobs; how many were canceled
        (see :func:`service.api.job_engine.cancel`)."""
        from slicelab.service.api.job_engine import cancel

        self.load(job_id)
        with self.lock(job_id):
            job = self.load(job_id)
            canceled = cancel(job, redis)
            self.save(job)
        return canceled

    def results(self, job_id: str, format: Literal["parquet", "jsonl"]) -> Path:
        """The labeled table of a finished job (written on first request), with the label-benchmark columns."""
        from slicelab.service.output import write_table
        from slicelab.service.runner import RunPlan
        from slicelab.service.usecases import label_benchmark as usecase

        job = self.load(job_id)
        out = Path(job["folder"]) / f"results.{format}"
        if not out.exists():
            store = job_store(job)
            m = store.manifest()
            plan = RunPlan(store, m["n_items"], m["n_rejected"], m["n_chunks"], [], True)
            write_table(usecase.finish(plan, *usecase.run_choice(m.get("meta") or {}))[0], out, format)
        return out


def job_store(job: dict[str, Any]) -> RunStore:
    """The run folder of a job."""
    from slicelab.service.store import RunStore

    return RunStore(Path(job["run_dir"]))
