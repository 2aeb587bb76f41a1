"""The index pass of a shard run: one streaming read of every shard before any labeling.

It counts rows, hashes every document's normalized text (:func:`service.shards.content_hash`),
finds the first occurrence of each hash within and across the run's shards, and
draws the seeded judge sample among the distinct documents. Memory stays bounded
whatever the shard size: rows are read in batches, and the first occurrences are
found one hash bucket (first byte of the hash, 1/256 of the rows) at a time.

Files under ``<run>/index/`` (``SSSS``: the shard's index in the run)::

    hashes-SSSS.bin          20 bytes per row: the content hash (zeros for a rejected row)
    ids-SSSS.bin, .idx       row ids (UTF-8) and n_rows + 1 uint64 offsets into them
    offsets-SSSS.npy         byte offset of every JSONL_OFFSET_STRIDE-th row (uncompressed JSONL)
    first-h.bin, first-g.bin every distinct hash (S20, sorted) and its first row key (uint64)
    id-rejected.npy, id-first.npy  row keys of rows whose id an earlier row with another text had
                             (sorted, uint64), and that earlier row's key for each
    sample.npy               row keys of the judge sample, sorted (uint64)
    index.json               counts; written last: the index is complete iff it exists

A row key orders rows by shard, then row: ``key = shard_index << 40 | row``
(:func:`row_key`), so "first occurrence" is the smallest key.

Ids are checked the same way (SHA-1 of the id, bucketed): a row whose id an earlier
row already had, with another text, is rejected (``duplicate id``) and left out of
the distinct documents and the judge sample; the same id with the same text is a
plain duplicate.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from slicelab.service import defaults
from slicelab.service.shards import content_hash, iter_batches

#: Bits of a row key that hold the row number (rows per shard < 2**40).
ROW_BITS = 40
#: The hash of a rejected row in ``hashes-SSSS.bin``.
NO_HASH = b"\x00" * 20
_RECORD = np.dtype([("h", "S20"), ("g", "<u8")])
_ID_RECORD = np.dtype([("i", "S20"), ("g", "<u8"), ("h", "S20")])


#: What :meth:`DedupIndex.first_keys` gives for a hash it does not hold.
NOT_FOUND = np.uint64(2**64 - 1)


def row_key(shard_index: int, row: int | np.ndarray) -> int | np.ndarray:
    """Global key of a row: ``shard_index << 40 | row`` (an int, or a uint64 array for an array of rows)."""
    if isinstance(row, np.ndarray):
        return (np.uint64(shard_index) << np.uint64(ROW_BITS)) | row.astype(np.uint64)
    return (shard_index << ROW_BITS) | row


def split_key(key: int) -> tuple[int, int]:
    """``(shard_index, row)`` of a row key."""
    key = int(key)
    return key >> ROW_BITS, key & ((1 << ROW_BITS) - 1)


def sample_priority(h_first8: np.ndarray, seed: int) -> np.ndarray:
    """A seeded pseudo-random uint64 per hash (splitmix64 finalizer of the hash's first 8 bytes
    plus ``seed`` times the golden-ratio constant; Steele, Lea & Flood 2014, "Fast splittable
    pseudorandom number generators"). The judge sample is the ``n`` distinct documents with the
    smallest priority: a uniform random sample that a re-run draws again."""
    with np.errstate(over="ignore"):
        z = h_first8.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % (1 << 64))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _first8(h: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(h).view(np.uint8).reshape(-1, 20)[:, :8].copy().view(">u8").ravel()


def build_index(root: Path, shards: list[dict[str, Any]], *, text_field: str, id_field: str,
                judge_sample: int, seed: int, batch_rows: int = defaults.SHARD_BATCH_ROWS,
                limit: int | None = None, on_rows: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Read every shard once and write the index files (see the module docstring).

    Args:
        root: the index folder (created; anything there is replaced).
        shards: the run's shards, ``{"path", "format", "compression", ...}`` in run order.
        text_field, id_field: record fields of the text and the id.
        judge_sample: distinct documents to draw for the judge (all of them when fewer).
        seed: seed of the judge sample.
        limit: index only the first ``limit`` rows over the shards in run order (None: all); the
            shards after them count 0 rows.
        on_rows: called with the number of rows after each batch (progress).

    Returns:
        ``{"n_rows": [per shard], "n_rejected", "n_documents", "n_distinct", "n_duplicates",
        "n_sample", "stride"}``, also written to ``index.json``.
    """
    if root.exists():
        shutil.rmtree(root)
    (root / "buckets").mkdir(parents=True)
    buckets = [open(root / "buckets" / f"{b:02x}.bin", "wb") for b in range(defaults.DEDUP_BUCKETS)]
    id_buckets = [open(root / "buckets" / f"id-{b:02x}.bin", "wb") for b in range(defaults.DEDUP_BUCKETS)]
    n_rows, n_rejected = [], 0
    try:
        for s, shard in enumerate(shards):
            left = None if limit is None else limit - sum(n_rows)
            n, rej = _index_shard(root, s, shard, (buckets, id_buckets), text_field, id_field, batch_rows, on_rows,
                                  left)
            n_rows.append(n)
            n_rejected += rej
    finally:
        for f in buckets + id_buckets:
            f.close()
    id_rejected = _id_duplicates(root)
    n_rejected += len(id_rejected)
    n_distinct, sample = _first_occurrences(root, judge_sample, seed, id_rejected)
    np.save(root / "sample.npy", np.sort(sample))
    shutil.rmtree(root / "buckets")
    n_docs = sum(n_rows) - n_rejected
    summary = {"n_rows": n_rows, "n_rejected": n_rejected, "n_documents": n_docs, "n_distinct": n_distinct,
               "n_duplicates": n_docs - n_distinct, "n_sample": int(len(sample)),
               "stride": defaults.JSONL_OFFSET_STRIDE}
    tmp = root / ".index.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, root / "index.json")
    return summary


def _index_shard(root: Path, s: int, shard: dict[str, Any], all_buckets: tuple[list, list], text_field: str,
                 id_field: str, batch_rows: int, on_rows: Callable[[int], None] | None,
                 max_rows: int | None = None) -> tuple[int, int]:
    """Index shard ``s`` (at most its first ``max_rows`` rows); return ``(rows, rejected rows)``."""
    buckets, id_buckets = all_buckets
    stride = defaults.JSONL_OFFSET_STRIDE
    n = rejected = 0
    offsets: list[int] = []
    id_pos = 0
    with open(root / f"hashes-{s:04d}.bin", "wb") as fh, open(root / f"ids-{s:04d}.bin", "wb") as fid, \
            open(root / f"ids-{s:04d}.idx", "wb") as fidx:
        fidx.write(np.uint64(0).tobytes())
        for batch in iter_batches(shard["path"], end=max_rows, batch_rows=batch_rows, text_field=text_field,
                                  id_field=id_field):
            hashes, ids_pos, valid, id_recs = [], [], [], []
            id_blob = bytearray()
            for r in batch:
                if r.offset is not None and r.row % stride == 0:
                    offsets.append(r.offset)
                if r.text is None:
                    hashes.append(NO_HASH)
                    rejected += 1
                else:
                    h = content_hash(r.text)
                    hashes.append(h)
                    valid.append((h, row_key(s, r.row)))
                rid = r.id.encode("utf-8", "surrogatepass")
                if r.text is not None:
                    id_recs.append((hashlib.sha1(rid).digest(), row_key(s, r.row), hashes[-1]))
                id_blob += rid
                id_pos += len(rid)
                ids_pos.append(id_pos)
            fh.write(b"".join(hashes))
            fid.write(id_blob)
            fidx.write(np.asarray(ids_pos, dtype=np.uint64).tobytes())
            if valid:
                recs = np.array(valid, dtype=_RECORD)
                first_byte = np.frombuffer(b"".join(h for h, _ in valid), dtype=np.uint8)[::20]
                order = np.argsort(first_byte, kind="stable")
                recs, first_byte = recs[order], first_byte[order]
                cuts = np.flatnonzero(np.diff(first_byte)) + 1
                for part, b in zip(np.split(recs, cuts), first_byte[np.r_[0, cuts]]):
                    buckets[b].write(part.tobytes())
                _write_bucketed(np.array(id_recs, dtype=_ID_RECORD), "i", id_buckets)
            n += len(batch)
            if on_rows:
                on_rows(len(batch))
    if shard["format"] == "jsonl" and not shard.get("compression"):
        np.save(root / f"offsets-{s:04d}.npy", np.asarray(offsets, dtype=np.uint64))
    return n, rejected


def _write_bucketed(recs: np.ndarray, field: str, buckets: list) -> None:
    """Append records to the bucket of their hash field's first byte."""
    first_byte = np.frombuffer(np.ascontiguousarray(recs[field]).tobytes(), dtype=np.uint8)[::20]
    order = np.argsort(first_byte, kind="stable")
    recs, first_byte = recs[order], first_byte[order]
    cuts = np.flatnonzero(np.diff(first_byte)) + 1
    for part, b in zip(np.split(recs, cuts), first_byte[np.r_[0, cuts]]):
        buckets[b].write(part.tobytes())


def _id_duplicates(root: Path) -> np.ndarray:
    """Find rows whose id an earlier row had with another text; write id-rejected.npy / id-first.npy.

    Returns:
        The rejected rows' keys, sorted (uint64).
    """
    rejected, firsts = [], []
    for b in range(defaults.DEDUP_BUCKETS):
        recs = np.fromfile(root / "buckets" / f"id-{b:02x}.bin", dtype=_ID_RECORD)
        if len(recs) < 2:
            continue
        recs = recs[np.lexsort((recs["g"], recs["i"]))]
        start = np.ones(len(recs), dtype=bool)
        start[1:] = recs["i"][1:] != recs["i"][:-1]
        group_first = np.maximum.accumulate(np.where(start, np.arange(len(recs)), 0))
        bad = ~start & (recs["h"] != recs["h"][group_first])
        rejected.append(recs["g"][bad])
        firsts.append(recs["g"][group_first][bad])
    keys = np.concatenate(rejected) if rejected else np.empty(0, dtype=np.uint64)
    first = np.concatenate(firsts) if firsts else np.empty(0, dtype=np.uint64)
    order = np.argsort(keys)
    np.save(root / "id-rejected.npy", keys[order].astype(np.uint64))
    np.save(root / "id-first.npy", first[order].astype(np.uint64))
    return keys[order].astype(np.uint64)


def _first_occurrences(root: Path, judge_sample: int, seed: int,
                       id_rejected: np.ndarray | None = None) -> tuple[int, np.ndarray]:
    """Write first-h.bin / first-g.bin bucket by bucket; return (distinct count, judge sample keys).

    Rows in ``id_rejected`` (sorted keys) are left out."""
    best_p = np.empty(0, dtype=np.uint64)
    best_g = np.empty(0, dtype=np.uint64)
    n_distinct = 0
    with open(root / "first-h.bin", "wb") as fh, open(root / "first-g.bin", "wb") as fg:
        for b in range(defaults.DEDUP_BUCKETS):
            recs = np.fromfile(root / "buckets" / f"{b:02x}.bin", dtype=_RECORD)
            if id_rejected is not None and len(id_rejected) and len(recs):
                recs = recs[~np.isin(recs["g"], id_rejected)]
            if not len(recs):
                continue
            recs = recs[np.lexsort((recs["g"], recs["h"]))]
            first = np.ones(len(recs), dtype=bool)
            first[1:] = recs["h"][1:] != recs["h"][:-1]
            recs = recs[first]
            fh.write(np.ascontiguousarray(recs["h"]).tobytes())
            fg.write(np.ascontiguousarray(recs["g"]).tobytes())
            n_distinct += len(recs)
            if judge_sample > 0:
                p = np.concatenate([best_p, sample_priority(_first8(recs["h"]), seed)])
                g = np.concatenate([best_g, recs["g"]])
                if len(p) > judge_sample:
                    keep = np.argpartition(p, judge_sample - 1)[:judge_sample]
                    p, g = p[keep], g[keep]
                best_p, best_g = p, g
    return n_distinct, best_g


class DedupIndex:
    """Read access to a finished index.

    Nothing is loaded whole, and nothing stays mapped: each lookup maps the files it needs
    and lets them go, and ids are read with seeks, so a worker's memory depends on its batch,
    not on the size of the run.
    """

    def __init__(self, root: Path):
        self.root = root
        self.summary = json.loads((root / "index.json").read_text())
        self.sample = np.load(root / "sample.npy")
        self._files: dict[str, Any] = {}

    def hashes(self, shard_index: int, start: int, end: int) -> np.ndarray:
        """Content hashes (S20) of rows ``start..end-1`` of a shard; ``b""`` for rejected rows."""
        n = self.summary["n_rows"][shard_index]
        if not n or start >= end:
            return np.empty(0, dtype="S20")
        mm = np.memmap(self.root / f"hashes-{shard_index:04d}.bin", dtype="S20", mode="r", shape=(n,))
        out = np.array(mm[start:end])
        del mm
        return out

    def first_keys(self, hashes: np.ndarray) -> np.ndarray:
        """Row key of the first occurrence of each hash (uint64; :data:`NOT_FOUND` for a hash not held)."""
        n = self.summary["n_distinct"]
        if not n or not len(hashes):
            return np.full(len(hashes), NOT_FOUND, dtype=np.uint64)
        first_h = np.memmap(self.root / "first-h.bin", dtype="S20", mode="r", shape=(n,))
        first_g = np.memmap(self.root / "first-g.bin", dtype=np.uint64, mode="r", shape=(n,))
        order = np.argsort(hashes)  # sorted queries touch the index pages in one sweep
        pos = np.minimum(np.searchsorted(first_h, hashes[order]), n - 1)
        found = np.asarray(first_h[pos]) == hashes[order]
        out = np.empty(len(hashes), dtype=np.uint64)
        out[order] = np.where(found, np.asarray(first_g[pos]), NOT_FOUND)
        del first_h, first_g
        return out

    def id_duplicate_of(self, keys: np.ndarray) -> np.ndarray:
        """For each row key: the key of the earlier row that had its id with another text,
        or :data:`NOT_FOUND` (uint64 array)."""
        path = self.root / "id-rejected.npy"
        out = np.full(len(keys), NOT_FOUND, dtype=np.uint64)
        if not path.is_file() or not len(keys):
            return out
        rejected, first = np.load(path), np.load(self.root / "id-first.npy")
        if not len(rejected):
            return out
        pos = np.minimum(np.searchsorted(rejected, keys), len(rejected) - 1)
        hit = rejected[pos] == keys
        out[hit] = first[pos[hit]]
        return out

    def in_sample(self, keys: np.ndarray) -> np.ndarray:
        """Whether each row key is in the judge sample (bool array)."""
        if not len(self.sample):
            return np.zeros(len(keys), dtype=bool)
        pos = np.minimum(np.searchsorted(self.sample, keys), len(self.sample) - 1)
        return self.sample[pos] == keys

    def _read(self, name: str, offset: int, size: int) -> bytes:
        f = self._files.get(name)
        if f is None:
            f = self._files[name] = open(self.root / name, "rb")
        f.seek(offset)
        return f.read(size)

    def row_id(self, key: int) -> str:
        """The id of the row with this key (read from ``ids-SSSS.idx`` / ``ids-SSSS.bin``)."""
        s, r = split_key(key)
        lo, hi = np.frombuffer(self._read(f"ids-{s:04d}.idx", 8 * r, 16), dtype=np.uint64)
        return self._read(f"ids-{s:04d}.bin", int(lo), int(hi - lo)).decode("utf-8", "surrogatepass")

    def seek(self, shard_index: int, start: int) -> tuple[int, int] | None:
        """``(row, byte offset)`` of the nearest indexed line at or before ``start`` (uncompressed JSONL)."""
        path = self.root / f"offsets-{shard_index:04d}.npy"
        if not path.is_file():
            return None
        offsets = np.load(path)
        k = min(start // self.summary["stride"], len(offsets) - 1)
        return (k * self.summary["stride"], int(offsets[k])) if k >= 0 else None

    def close(self) -> None:
        """Close the id files (also done when the object is collected)."""
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __del__(self):
        self.close()
