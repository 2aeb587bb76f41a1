"""On-disk run store: one folder per run, one Parquet part + completion marker per chunk.

Layout of a run folder (``<output folder>/.slicelab-runs/<run_key>/``)::

    manifest.json          what the run is: input, judge configuration, chunk offsets
    items.jsonl            the normalized samples, one JSON object a line
    rejects.jsonl          input records that could not become samples
    parts/chunk-00000.parquet, parts/chunk-00000.done

A chunk is finished iff its ``.done`` marker exists; the part is written to a
temporary file and renamed before the marker, so a killed worker leaves no
half part behind. A re-run of the same command finds the same ``run_key`` and
enqueues only chunks without a marker, so no sample is labeled twice and the
final output holds each sample exactly once.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from slicelab import service
from slicelab.service.samples import Document, EvalSample


def code_version() -> str:
    """``slicelab <version>`` plus the git commit of the checkout, when there is one."""
    root = Path(service.__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"slicelab {service.__version__}" + (f"+g{sha}" if sha else "")


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB blocks; of a folder, of every file under it
    (relative path and bytes, in sorted order), so a folder of evaluation logs keys a run like a file."""
    h = hashlib.sha256()
    if Path(path).is_dir():
        for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
            h.update(f"{f.relative_to(path).as_posix()}\0{file_sha256(f)}\n".encode())
        return h.hexdigest()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_key(parts: dict[str, Any]) -> str:
    """Stable id of a run: sha256 prefix of its defining parameters (input hash, judge config...)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class RunStore:
    """A run folder. All paths are derived from ``root``."""

    root: Path

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def items_path(self) -> Path:
        return self.root / "items.jsonl"

    @property
    def rejects_path(self) -> Path:
        return self.root / "rejects.jsonl"

    @property
    def parts_dir(self) -> Path:
        return self.root / "parts"

    def part_path(self, chunk: int) -> Path:
        return self.parts_dir / f"chunk-{chunk:05d}.parquet"

    def marker_path(self, chunk: int) -> Path:
        return self.parts_dir / f"chunk-{chunk:05d}.done"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def write_items(self, items: Iterable[EvalSample | Document], chunk_size: int) -> list[int]:
        """Write normalized items; return byte offsets of each chunk start plus the end offset."""
        self.root.mkdir(parents=True, exist_ok=True)
        offsets, n = [], 0
        with open(self.items_path, "wb") as f:
            for item in items:
                if n % chunk_size == 0:
                    offsets.append(f.tell())
                line = json.dumps({"kind": "eval" if isinstance(item, EvalSample) else "document",
                                   **item.model_dump(mode="json")}, ensure_ascii=False)
                f.write(line.encode("utf-8") + b"\n")
                n += 1
            offsets.append(f.tell())
        return offsets

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode())

    def read_chunk(self, chunk: int) -> list[EvalSample | Document]:
        """The items of one chunk, read by byte range (no full-file scan)."""
        offsets = self.manifest()["chunk_offsets"]
        if not 0 <= chunk < len(offsets) - 1:
            raise IndexError(f"chunk {chunk} out of range 0..{len(offsets) - 2}")
        with open(self.items_path, "rb") as f:
            f.seek(offsets[chunk])
            blob = f.read(offsets[chunk + 1] - offsets[chunk])
        items: list[EvalSample | Document] = []
        # split on "\n" only: str.splitlines() would also split inside text at U+2028, U+0085...
        for line in blob.decode("utf-8").split("\n"):
            if not line:
                continue
            data = json.loads(line)
            cls = EvalSample if data.pop("kind") == "eval" else Document
            items.append(cls.model_validate(data))
        return items

    def is_done(self, chunk: int) -> bool:
        return self.marker_path(chunk).is_file()

    def done_chunks(self) -> set[int]:
        if not self.parts_dir.is_dir():
            return set()
        return {int(p.stem.split("-")[1]) for p in self.parts_dir.glob("chunk-*.done")}

    def write_part(self, chunk: int, rows: list[dict[str, Any]]) -> None:
        """Write one chunk's rows (Parquet, via a temp file + rename), then its marker."""
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        part = self.part_path(chunk)
        tmp = temp_path(part)
        pd.DataFrame(rows).to_parquet(tmp, index=False)
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        commit_part(tmp, part, self.marker_path(chunk), {"rows": len(rows), "status_counts": counts})

    def marker(self, chunk: int) -> dict[str, Any]:
        return json.loads(self.marker_path(chunk).read_text())

    def read_parts(self) -> pd.DataFrame:
        """All finished parts, in chunk order."""
        frames = [pd.read_parquet(self.part_path(c)) for c in sorted(self.done_chunks())]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def temp_path(path: Path) -> Path:
    """A hidden temporary name next to ``path`` (``.<name>.tmp-<pid>``): Parquet dataset readers skip it."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: readers see the old or the new bytes."""
    tmp = temp_path(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)


def commit_part(tmp: Path, part: Path, marker_path: Path, marker: dict[str, Any]) -> None:
    """Publish a finished part: rename ``tmp`` to ``part``, then write its completion marker (JSON).

    The marker comes last, so a unit of work is finished iff its marker exists, and a worker
    killed at any point leaves either no part or a complete one (redone whole when unmarked).
    Used by both run stores (label runs: :class:`RunStore`; shard runs:
    :class:`service.shard_store.ShardRunStore`).
    """
    os.replace(tmp, part)
    atomic_write(marker_path, json.dumps(marker).encode())
