"""Stream pretraining shards in bounded batches: JSONL (plain, ``.gz``, ``.zst``) and Parquet.

Paths may be local or any fsspec URL (``s3://``, ``gs://``, ``memory://``...).
A shard is never loaded whole: JSONL is read line by line, Parquet by record
batches of the row groups that overlap the requested rows (only the id, text,
source and url columns are read). :func:`iter_batches` yields lists of at most
``batch_rows`` :class:`ShardRow`.

Row numbering (0-based, stable across re-reads, so a job is just a row range):

- JSONL: row ``r`` is line ``r + 1``. Every line is a row; a blank line is a
  rejected row (a final newline does not start a row).
- Parquet: row ``r`` is the file's ``r``-th record.

A row that cannot be a document (bad UTF-8 or JSON, no text, empty or
whitespace-only text, binary data) is yielded with ``text=None`` and the
``reason``; it never stops the shard.

Also here, because the index pass and the workers must agree on them exactly:
the content hash used for deduplication (:func:`content_hash`) and the cut of a
long document to a token budget (:func:`truncate`).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from slicelab.service import defaults
from slicelab.service.errors import ConfigError, InputFormatError

#: Shard formats and the name endings that select them (after a compression suffix).
FORMAT_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
#: Compression suffixes and the fsspec codec that reads them.
COMPRESSION_SUFFIXES = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
#: Share of control characters (other than tab/newline/CR) above which a text is refused as binary.
MAX_CONTROL_SHARE = 0.1
#: Characters of a text inspected for control characters.
CONTROL_SCAN_CHARS = 2000
#: Marker joining the head and tail of a cut document.
CUT_MARKER = "\n…\n"

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class ShardRow:
    """One row of a shard.

    Attributes:
        row: 0-based row number in the shard.
        id: the record's id field, else ``"<shard stem>/<row>"``.
        text: the document text, or None when the row is rejected.
        source: the ``source`` field, else the shard's stem.
        url: the ``url`` field, or None.
        reason: why the row is rejected (None for a document).
        offset: byte offset of the row's line in an uncompressed JSONL shard, else None.
    """

    row: int
    id: str
    text: str | None
    source: str
    url: str | None
    reason: str | None = None
    offset: int | None = None


def shard_format(path: str) -> tuple[str, str | None]:
    """The ``(format, compression)`` of a shard from its name.

    Returns:
        format ``"jsonl"`` or ``"parquet"``; compression ``"gzip"``, ``"zstd"`` or None.

    Raises:
        InputFormatError: the name ends in nothing known, or a Parquet file is compressed outside.
    """
    name = PurePosixPath(str(path).split("?", 1)[0]).name.lower()
    suffixes = PurePosixPath(name).suffixes
    compression = COMPRESSION_SUFFIXES.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    fmt = FORMAT_SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise InputFormatError(
            f"{path}: unknown shard format; allowed endings: "
            f"{', '.join(FORMAT_SUFFIXES)} (JSONL also with {', '.join(COMPRESSION_SUFFIXES)})")
    if fmt == "parquet" and compression:
        raise InputFormatError(f"{path}: a Parquet shard is compressed inside; drop the {suffixes[-1]}… suffix")
    return fmt, compression


def shard_stem(path: str) -> str:
    """The shard's name without format and compression suffixes (``a/b.jsonl.gz`` → ``b``)."""
    name = PurePosixPath(str(path).split("?", 1)[0]).name
    for _ in range(2):
        stem, dot, suffix = name.rpartition(".")
        if dot and ("." + suffix.lower()) in (*FORMAT_SUFFIXES, *COMPRESSION_SUFFIXES):
            name = stem
    return name


def shard_info(path: str) -> dict[str, Any]:
    """What identifies a shard's content without reading it: path, format, size and modification stamp.

    Returns:
        ``{"path", "format", "compression", "size_bytes", "modified"}`` (``modified``: the
        file system's mtime, LastModified or ETag, as text).

    Raises:
        InputFormatError: unknown format, or the path does not exist.
    """
    import fsspec

    fmt, compression = shard_format(path)
    fs, p = fsspec.core.url_to_fs(path)
    try:
        info = fs.info(p)
    except FileNotFoundError:
        raise InputFormatError(f"{path}: no such shard") from None
    if info.get("type") == "directory":
        raise InputFormatError(f"{path}: is a folder; give the shard files")
    stamp = next((info[k] for k in ("mtime", "LastModified", "last_modified", "ETag", "etag", "created") if info.get(k)), "")
    return {"path": path, "format": fmt, "compression": compression, "size_bytes": info.get("size"),
            "modified": str(stamp)}


def parquet_rows(path: str) -> int:
    """Number of rows of a Parquet shard, from its footer (nothing else is read)."""
    with _open_parquet(path) as pf:
        return pf.metadata.num_rows


def iter_batches(path: str, *, start: int = 0, end: int | None = None,
                 batch_rows: int = defaults.SHARD_BATCH_ROWS, text_field: str = "text", id_field: str = "id",
                 seek: tuple[int, int] | None = None) -> Iterator[list[ShardRow]]:
    """Rows ``start <= row < end`` of a shard, in order, in lists of at most ``batch_rows``.

    Args:
        path: local path or fsspec URL; format and compression from the name (:func:`shard_format`).
        start, end: row range (``end=None``: to the end of the shard).
        batch_rows: rows per yielded list (the only rows held at once).
        text_field, id_field: the record fields holding the text and the id (top-level keys).
        seek: ``(row, byte_offset)`` of a line at or before ``start`` in an uncompressed JSONL
            shard, to start reading there instead of at the top.

    Raises:
        InputFormatError: unknown format; a Parquet file that is unreadable or lacks ``text_field``.
        ConfigError: a negative range or ``batch_rows`` < 1.
    """
    if start < 0 or (end is not None and end < start) or batch_rows < 1:
        raise ConfigError(f"{path}: bad row range {start}..{end} or batch size {batch_rows}")
    fmt, compression = shard_format(path)
    rows = (_parquet_rows(path, start, end, batch_rows, text_field, id_field) if fmt == "parquet"
            else _jsonl_rows(path, compression, start, end, text_field, id_field, seek))
    batch: list[ShardRow] = []
    for r in rows:
        batch.append(r)
        if len(batch) == batch_rows:
            yield batch
            batch = []
    if batch:
        yield batch


# --------------------------------------------------------------------------- text rules


def text_problem(text: Any, field: str = "text") -> str | None:
    """Why a value cannot be a document text, or None when it can.

    Refused: missing (None), not a string, empty or whitespace-only, lone UTF-16
    surrogates, NUL bytes, or more than :data:`MAX_CONTROL_SHARE` control characters
    in the first :data:`CONTROL_SCAN_CHARS` characters (binary data read as text).
    """
    if text is None:
        return f"missing text field {field!r}"
    if not isinstance(text, str):
        return f"text field {field!r} is not a string (got {type(text).__name__})"
    if not text.strip():
        return f"empty text field {field!r}"
    if "\x00" in text:
        return "not text: contains NUL characters (binary data?)"
    head = text[:CONTROL_SCAN_CHARS]
    if _CONTROL.search(head):
        n_ctrl = len(_CONTROL.findall(head))
        if n_ctrl > MAX_CONTROL_SHARE * len(head):
            return f"not text: {n_ctrl / len(head):.0%} control characters (binary data?)"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "not text: lone UTF-16 surrogate (broken encoding)"
    return None


def normalize(text: str) -> str:
    """The text as deduplication compares it: NFC, lower case, whitespace runs → one space, stripped."""
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return " ".join(text.lower().split())


def content_hash(text: str) -> bytes:
    """SHA-1 (20 bytes) of :func:`normalize` d text, UTF-8. Equal for texts differing only in case,
    whitespace or Unicode composition."""
    return hashlib.sha1(normalize(text).encode("utf-8")).digest()


def truncate(text: str, max_tokens: int, *, chars_per_token: int = defaults.CHARS_PER_TOKEN,
             head_share: float = defaults.TRUNCATE_HEAD_SHARE) -> tuple[str, int]:
    """Cut a long text to a token budget, keeping its head and tail.

    The budget is ``max_tokens * chars_per_token`` characters (tokens are estimated
    at 4 characters each, OpenAI's rule of thumb for English). A longer text keeps
    ``head_share`` of the budget from its start and the rest from its end, each cut
    moved back to a whitespace when one is near, joined by :data:`CUT_MARKER`. The
    result is never longer than the budget, so cutting twice changes nothing.

    Returns:
        ``(text, truncated_chars)``: the kept text and the number of characters removed (0: uncut).
    """
    budget = max_tokens * chars_per_token
    if len(text) <= budget:
        return text, 0
    room = max(budget - len(CUT_MARKER), 2)
    n_head = int(room * head_share)
    n_tail = room - n_head
    head = text[:n_head]
    space = head.rfind(" ", n_head - 200)
    if space > 0:
        head = head[:space]
    tail = text[len(text) - n_tail:]
    space = tail.find(" ", 0, 200)
    if space >= 0:
        tail = tail[space + 1:]
    kept = head + CUT_MARKER + tail
    return kept, len(text) - len(head) - len(tail)


def estimate_tokens(n_chars: int, chars_per_token: int = defaults.CHARS_PER_TOKEN) -> int:
    """Token estimate of a text of ``n_chars`` characters (rounded up)."""
    return -(-n_chars // chars_per_token)


# --------------------------------------------------------------------------- readers


def _document(row: int, rec: Any, stem: str, text_field: str, id_field: str, offset: int | None) -> ShardRow:
    if not isinstance(rec, dict):
        return ShardRow(row, f"{stem}/{row}", None, stem, None, f"not a JSON object (got {type(rec).__name__})", offset)
    rid = rec.get(id_field)
    rid = f"{stem}/{row}" if rid is None or rid == "" else str(rid)
    text = rec.get(text_field)
    source, url = rec.get("source"), rec.get("url")
    source = source if isinstance(source, str) and source else stem
    url = url if isinstance(url, str) else None
    reason = text_problem(text, text_field)
    return ShardRow(row, rid, None if reason else text, source, url, reason, offset)


def _jsonl_rows(path: str, compression: str | None, start: int, end: int | None, text_field: str,
                id_field: str, seek: tuple[int, int] | None) -> Iterator[ShardRow]:
    import fsspec

    stem = shard_stem(path)
    row, offset = 0, 0
    with fsspec.open(path, "rb", compression=compression) as f:
        fh = io.BufferedReader(f, 1 << 20) if compression == "zstd" else f
        if seek and not compression and seek[0] <= start:
            row, offset = seek
            fh.seek(offset)
        for line in fh:
            if end is not None and row >= end:
                return
            if row >= start:
                yield _parse_line(row, line, stem, text_field, id_field, None if compression else offset)
            offset += len(line)
            row += 1


def _parse_line(row: int, line: bytes, stem: str, text_field: str, id_field: str, offset: int | None) -> ShardRow:
    data = line.rstrip(b"\r\n")
    if row == 0 and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        return ShardRow(row, f"{stem}/{row}", None, stem, None, "blank line", offset)
    try:
        rec = json.loads(data)
    except UnicodeDecodeError as e:
        return ShardRow(row, f"{stem}/{row}", None, stem, None, f"invalid UTF-8 at byte {e.start}: {e.reason}", offset)
    except json.JSONDecodeError as e:
        return ShardRow(row, f"{stem}/{row}", None, stem, None, f"invalid JSON: {e}", offset)
    return _document(row, rec, stem, text_field, id_field, offset)


class _open_parquet:
    """Context manager: a ``pyarrow.parquet.ParquetFile`` over an fsspec file."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        import fsspec
        import pyarrow.parquet as pq

        self._f = fsspec.open(self.path, "rb").open()
        try:
            return pq.ParquetFile(self._f)
        except Exception as e:  # pyarrow raises several types for a bad file
            self._f.close()
            raise InputFormatError(f"{self.path}: not a readable Parquet file: {e}") from None

    def __exit__(self, *exc):
        self._f.close()


def _parquet_rows(path: str, start: int, end: int | None, batch_rows: int, text_field: str,
                  id_field: str) -> Iterator[ShardRow]:
    stem = shard_stem(path)
    with _open_parquet(path) as pf:
        names = pf.schema_arrow.names
        if text_field not in names:
            raise InputFormatError(f"{path}: no column {text_field!r} (use --text-field); columns: {', '.join(names)}")
        columns = [c for c in dict.fromkeys((text_field, id_field, "source", "url")) if c in names]
        groups, first_row, row0 = [], None, 0
        for i in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(i).num_rows
            if row0 + n > start and (end is None or row0 < end):
                groups.append(i)
                first_row = row0 if first_row is None else first_row
            row0 += n
        if not groups:
            return
        row = first_row
        # one iter_batches call per row group: a single call over many groups keeps memory it
        # never returns (RSS grew ~1 KB a row over a 1M-row shard); per group it stays flat
        for group in groups:
            for batch in pf.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns):
                cols = {c: batch.column(c).to_pylist() for c in columns}
                for j in range(batch.num_rows):
                    if end is not None and row >= end:
                        return
                    if row >= start:
                        yield _document(row, {c: cols[c][j] for c in columns}, stem, text_field, id_field, None)
                    row += 1
