"""Throughput figures of a labeling run: shared prompt prefix, cache hits, output tokens, CPU.

**Shared prefix.** A prompt is its chat messages serialized as
``"<role>\\n<content>\\n"`` per message. The judge's *static prefix* for a kind
is the longest common prefix of the prompts of two probe items that differ in
every field (with exemplars in the prompt it ends with the system message,
since exemplars are chosen per item). An item's shared characters are the
length of the prefix its prompt has in common with the static prefix. The
run's prefix share is shared characters / prompt characters over the items
sent to the judge. Unit: characters of message text (about 4 per token for
English), not tokens of any one tokenizer.

Per chunk, the worker writes ``parts/chunk-NNNNN.stats.json`` beside the part
(before its completion marker); :func:`run_stats` sums them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from slicelab.service import defaults
from slicelab.service.samples import Document, EvalSample, Status
from slicelab.service.store import RunStore

_PROBES = {
    "eval": [EvalSample(id="probe/a", benchmark="\x01", task="\x01", question="\x01", reference_answer="\x01"),
             EvalSample(id="probe/b", benchmark="\x02", task="\x02", question="\x02", reference_answer="\x02")],
    "document": [Document(id="probe/a", text="\x01"), Document(id="probe/b", text="\x02")],
}
#: Per-chunk counters summed by :func:`run_stats`.
#: Chunk size of the openai backend per request kept in flight (see :func:`label_chunk_size`).
CHUNK_PER_REQUEST_SLOT = 8
STAT_FIELDS = ("items", "cache_hits", "judge_items", "prompt_chars", "shared_prefix_chars", "cpu_s", "wall_s")


def prompt_text(messages: list[dict[str, str]]) -> str:
    """The messages as one string: ``"<role>\\n<content>\\n"`` per message."""
    return "".join(f"{m['role']}\n{m['content']}\n" for m in messages)


def common_prefix_len(a: str, b: str) -> int:
    """Length in characters of the longest common prefix of two strings."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def static_prefix(judge: Any, kind: str) -> str:
    """The part of the judge's prompt for ``kind`` (``eval``/``document``) that no item changes.

    ``judge`` needs ``build_request(item)`` (every :class:`~service.judge.base.Judge`).
    """
    known = judge.__dict__.setdefault("_static_prefix", {})  # kept on the judge: an id() could be reused
    if kind not in known:
        a, b = (prompt_text(judge.build_request(p)[0]) for p in _PROBES[kind])
        prefix = a[:common_prefix_len(a, b)]
        if getattr(judge, "k", 0):  # exemplars are chosen per item: only the system message is static
            system = prompt_text(judge.build_request(_PROBES[kind][0])[0][:1])
            prefix = prefix[:min(len(prefix), len(system))]
        known[kind] = prefix
    return known[kind]


def shared_prefix_chars(judge: Any, item: EvalSample | Document, messages: list[dict[str, str]]) -> tuple[int, int]:
    """``(shared characters, prompt characters)`` of one item's messages."""
    text = prompt_text(messages)
    static = static_prefix(judge, "eval" if isinstance(item, EvalSample) else "document")
    return common_prefix_len(text, static), len(text)


def stats_path(store: RunStore, chunk: int) -> Path:
    """Where a chunk's throughput counters are kept."""
    return store.parts_dir / f"chunk-{chunk:05d}.stats.json"


def write_chunk_stats(store: RunStore, chunk: int, stats: dict[str, Any]) -> None:
    """Write one chunk's counters (``STAT_FIELDS``) beside its part."""
    store.parts_dir.mkdir(parents=True, exist_ok=True)
    path = stats_path(store, chunk)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(stats, sort_keys=True))
    tmp.replace(path)


def run_stats(store: RunStore, table: pd.DataFrame | None = None,
              chunks: Iterable[int] | None = None) -> dict[str, Any]:
    """Throughput figures of a run's finished chunks.

    Args:
        chunks: count only these chunks (those finished among them), e.g. the
            chunks one command labeled; default every finished chunk (run totals).

    Returns:
        ``STAT_FIELDS`` summed over chunks, plus ``prefix_share`` (shared / prompt
        characters of the items sent to the judge; None when none was sent),
        ``cpu_ms_per_item`` (worker CPU inside the label task), and, given the output
        ``table``: ``labeled`` and ``output_tokens_per_label`` (mean
        ``judge_completion_tokens`` of labeled rows, every attempt counted).
    """
    totals: dict[str, Any] = dict.fromkeys(STAT_FIELDS, 0)
    done = store.done_chunks()
    for chunk in sorted(done if chunks is None else done & set(chunks)):
        path = stats_path(store, chunk)
        if path.is_file():
            data = json.loads(path.read_text())
            for name in STAT_FIELDS:
                totals[name] += data.get(name, 0)
    totals["cpu_s"] = round(totals["cpu_s"], 4)
    totals["wall_s"] = round(totals["wall_s"], 4)
    totals["prefix_share"] = (round(totals["shared_prefix_chars"] / totals["prompt_chars"], 4)
                              if totals["prompt_chars"] else None)
    totals["cpu_ms_per_item"] = round(1000 * totals["cpu_s"] / totals["items"], 3) if totals["items"] else None
    if table is not None and "status" in table:
        labeled = table[table["status"] == str(Status.labeled)]
        totals["labeled"] = int(len(labeled))
        tokens = labeled["judge_completion_tokens"] if "judge_completion_tokens" in labeled else pd.Series([])
        totals["output_tokens_per_label"] = round(float(tokens.mean()), 2) if len(tokens.dropna()) else None
    return totals


def describe(stats: dict[str, Any], run: dict[str, Any] | None = None) -> str:
    """One line for the CLI: judge calls, cache hits, prefix share, output tokens per label.

    With ``run`` (the run totals), ``stats`` are what this command did (its chunks,
    :func:`run_stats` with ``chunks``): items sent, cache hits and prefix share are
    this command's, followed by the run totals and the output tokens per label of
    the run's labeled rows. Without it, ``stats`` are reported as run totals.
    """
    share = ("n/a (nothing sent)" if stats.get("prefix_share") is None
             else f"{100 * stats['prefix_share']:.1f}% of prompt characters")
    if run is None:
        tokens = stats.get("output_tokens_per_label")
        return (f"judge, run total: {stats['judge_items']} items sent, {stats['cache_hits']} cache hits; "
                f"shared prompt prefix {share}; "
                f"output tokens per label {'n/a' if tokens is None else tokens}")
    tokens = run.get("output_tokens_per_label")
    return (f"judge, this command: {stats['judge_items']} items sent, {stats['cache_hits']} cache hits; "
            f"shared prompt prefix {share}; "
            f"run total: {run['judge_items']} items sent, {run['cache_hits']} cache hits, "
            f"output tokens per label {'n/a' if tokens is None else tokens}")


def label_chunk_size(spec: dict[str, Any]) -> int:
    """Samples per queue job for a judge spec.

    The openai backend keeps ``concurrency`` requests in flight inside one chunk;
    the semaphore is full until the chunk's last ``concurrency`` items, and each
    chunk costs about 25 ms of worker CPU besides its labels (RQ job, reading,
    Parquet part, marker). A chunk of ``CHUNK_PER_REQUEST_SLOT`` x concurrency
    items keeps the tail short and that cost under 0.2 ms per label, while a
    killed worker still redoes only a fraction of a second of judge work. The
    vllm backend sends a chunk as one batch. Others (embedded: one request at a
    time) use ``defaults.CHUNK_SIZE``.
    """
    if spec.get("backend") == "openai":
        concurrency = int(spec.get("concurrency", defaults.JUDGE_CONCURRENCY))
        return max(defaults.CHUNK_SIZE, CHUNK_PER_REQUEST_SLOT * concurrency)
    if spec.get("backend") == "vllm":
        return max(defaults.CHUNK_SIZE, defaults.VLLM_CHUNK_SIZE)
    return defaults.CHUNK_SIZE
