"""A shard run's folder (the ``-o OUTDIR`` of ``slicelab label-shard``).

Layout::

    manifest.json          the run: shards (path, format, size, stamp), options, judge spec, run key
    index/                 the index pass (see service.shard_index)
    judge/<job>.parquet    judge labels of the sample rows in one row range, with the text the judge saw
    judge/<job>.done       its completion marker
    judge-labels.parquet   all judge-sample labels, sorted by row key (written before the label phase)
    student.json           the student this run uses: hash, folder, per-axis verdicts
    parts/<job>.parquet    every row of one row range, labeled; the folder is a Parquet dataset
    markers/<job>.done     completion markers of parts/
    summary.json           counts and timings of the last finished run

A job is one row range of one shard: ``<kind>-<shard index>-<start>-<end>``
(kind ``judge`` or ``label``). Its part is written to a hidden temporary file
(``.<job>.parquet.tmp-<pid>``: Parquet dataset readers skip it) and renamed
before its marker is written, so a killed worker leaves no half part and a
re-run redoes exactly the jobs without a marker.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from slicelab.service.errors import ConfigError
from slicelab.service.store import atomic_write, commit_part, temp_path

#: Job kinds: the judge phase (sample rows only) and the label phase (every row).
JOB_KINDS = ("judge", "label")


@dataclass(frozen=True)
class RangeJob:
    """Rows ``start <= row < end`` of the run's shard number ``shard_index`` (path ``shard``)."""

    kind: str
    shard_index: int
    shard: str
    start: int
    end: int

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.shard_index:04d}-{self.start:012d}-{self.end:012d}"


@dataclass
class ShardRunStore:
    """A shard run folder; every path derives from ``root``."""

    root: Path

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def index_dir(self) -> Path:
        return self.root / "index"

    @property
    def student_path(self) -> Path:
        return self.root / "student.json"

    @property
    def judge_labels_path(self) -> Path:
        return self.root / "judge-labels.parquet"

    @property
    def parts_dir(self) -> Path:
        return self.root / "parts"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    def _dirs(self, kind: str) -> tuple[Path, Path]:
        if kind == "judge":
            return self.root / "judge", self.root / "judge"
        return self.parts_dir, self.root / "markers"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode())

    def job(self, kind: str, shard: str, start: int, end: int) -> RangeJob:
        """The job for a payload (shard path as recorded in the manifest).

        Raises:
            ConfigError: unknown kind, or the shard is not one of this run's.
        """
        if kind not in JOB_KINDS:
            raise ConfigError(f"unknown job kind {kind!r}; allowed: {', '.join(JOB_KINDS)}")
        paths = [s["path"] for s in self.manifest()["shards"]]
        if shard not in paths:
            raise ConfigError(f"{shard!r} is not a shard of run {self.root}; shards: {', '.join(paths)}")
        return RangeJob(kind, paths.index(shard), shard, int(start), int(end))

    def part_path(self, job: RangeJob) -> Path:
        return self._dirs(job.kind)[0] / f"{job.name}.parquet"

    def marker_path(self, job: RangeJob) -> Path:
        return self._dirs(job.kind)[1] / f"{job.name}.done"

    def is_done(self, job: RangeJob) -> bool:
        return self.marker_path(job).is_file()

    def marker(self, job: RangeJob) -> dict[str, Any]:
        return json.loads(self.marker_path(job).read_text())

    def write_part(self, job: RangeJob, tables: Iterable[pa.Table], schema: pa.Schema) -> dict[str, Any]:
        """Stream a job's tables into its Parquet part (temp file + rename), then write its marker.

        Returns:
            The marker: ``{"rows", "status_counts", "labeler_counts"}``; ``labeler_counts`` maps
            each ``labeler_<axis>`` column to its value counts (``"none"`` for null).
        """
        part_dir, marker_dir = self._dirs(job.kind)
        part_dir.mkdir(parents=True, exist_ok=True)
        marker_dir.mkdir(parents=True, exist_ok=True)
        part = self.part_path(job)
        tmp = temp_path(part)
        counts: Counter[str] = Counter()
        labelers = {n: Counter() for n in schema.names if n.startswith("labeler_")}
        rows = 0
        with pq.ParquetWriter(tmp, schema) as writer:
            for table in tables:
                writer.write_table(table)
                rows += table.num_rows
                counts.update(table.column("status").to_pylist())
                for name, c in labelers.items():
                    c.update("none" if v is None else v for v in table.column(name).to_pylist())
        marker = {"rows": rows, "status_counts": dict(counts),
                  "labeler_counts": {n: dict(c) for n, c in labelers.items()}}
        commit_part(tmp, part, self.marker_path(job), marker)
        return marker

    def done_parts(self, kind: str) -> list[Path]:
        """Finished parts of one kind (those with a marker), in job-name order."""
        part_dir, marker_dir = self._dirs(kind)
        if not marker_dir.is_dir():
            return []
        names = sorted(p.name[: -len(".done")] for p in marker_dir.glob(f"{kind}-*.done"))
        return [part_dir / f"{n}.parquet" for n in names]

    def remove_temp_files(self) -> int:
        """Delete temporary parts left by killed workers; return how many."""
        n = 0
        for kind in JOB_KINDS:
            part_dir = self._dirs(kind)[0]
            for p in part_dir.glob(".*.tmp-*") if part_dir.is_dir() else []:
                p.unlink(missing_ok=True)
                n += 1
        return n

    def read_parts(self, kind: str = "label", columns: list[str] | None = None):
        """All finished parts of one kind as one pandas DataFrame (for small runs and tests; large
        runs: read ``parts/`` as a Parquet dataset). List columns come back as Python lists."""
        import pandas as pd

        paths = self.done_parts(kind)
        if not paths:
            return pd.DataFrame(columns=columns)
        df = pa.concat_tables([pq.read_table(p, columns=columns) for p in paths]).to_pandas()
        for col in df.columns:
            if df[col].dtype == object and df[col].map(lambda v: isinstance(v, np.ndarray)).any():
                df[col] = df[col].map(lambda v: v.tolist() if isinstance(v, np.ndarray) else v)
        return df


def trim_memory() -> None:
    """Hand freed memory back to the operating system: Arrow's pool, then the C heap (glibc
    ``malloc_trim(0)``; skipped where there is no glibc). Called after the index pass and after
    each job, so a long-lived process's resident memory follows what it holds now, not the
    largest batch it ever held."""
    import ctypes
    import gc

    gc.collect()
    pa.default_memory_pool().release_unused()  # Arrow's own allocator keeps freed blocks otherwise
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
