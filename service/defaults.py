"""Default values, each with its unit. Change them with CLI flags, not here."""

from __future__ import annotations

import os

#: Redis used when REDIS_URL is unset.
REDIS_URL = "redis://127.0.0.1:6379/0"
#: RQ queue that label jobs go to and `slicelab worker` listens on.
QUEUE_NAME = "slicelab"
#: Samples per RQ job (one job = one chunk = one Parquet part on disk).
CHUNK_SIZE = 8
#: Seconds an RQ job may run before RQ kills it.
JOB_TIMEOUT_S = 3600
#: Seconds a finished job's result stays in Redis (results also live on disk).
RESULT_TTL_S = 24 * 3600

#: Output tokens allowed for one label (JSON with 4-5 short fields).
MAX_TOKENS_LABEL = 160
#: Attempts per sample when the judge output is invalid or truncated.
MAX_ATTEMPTS = 3
#: Seconds one HTTP request to the judge may take.
REQUEST_TIMEOUT_S = 120.0
#: Sampling temperature of the judge (0 = greedy, reproducible labels).
TEMPERATURE = 0.0
#: Sampling temperature of the self-consistent judge's k samples (``--sc-temperature``).
SC_TEMPERATURE = 0.7

#: Context window used by the embedded llama.cpp judge, tokens.
EMBEDDED_N_CTX = 4096
#: Characters of a question, reference, or model output kept in the prompt.
MAX_FIELD_CHARS = 4000
#: Characters kept from the end of a model output (where the final answer sits).
MAX_OUTPUT_TAIL_CHARS = 1500

#: Where runs keep their per-chunk parts, relative to the output file's folder.
RUNS_DIRNAME = ".slicelab-runs"


def redis_url() -> str:
    """The Redis URL from the REDIS_URL environment variable, else the default."""
    return os.environ.get("REDIS_URL") or REDIS_URL

# --- pretraining shards (``slicelab label-shard``) ---------------------------------

#: RQ queue that shard jobs go to (apart from label-benchmark's, so the two never mix).
SHARD_QUEUE_NAME = "slicelab-shards"
#: Rows of one shard per label job (one job = one Parquet part + one marker).
SHARD_ROWS_PER_JOB = 5000
#: Judge-sample documents per judge job (each job is the row range spanning them).
SHARD_JUDGE_DOCS_PER_JOB = 8
#: Rows read, labeled and written at a time inside a job (bounds a worker's memory).
SHARD_BATCH_ROWS = 1024
#: Token budget a document is cut to before the judge and the student see it (tokens).
SHARD_MAX_TOKENS = 512
#: Characters per token of the budget (OpenAI's rule of thumb for English text).
CHARS_PER_TOKEN = 4
#: Share of the budget kept from the document's head; the rest comes from its tail.
TRUNCATE_HEAD_SHARE = 0.75
#: Share of the judge sample held out to measure the student against the judge.
STUDENT_HELDOUT_FRAC = 0.25
#: Bootstrap resamples for the kappa intervals of student metrics.
STUDENT_N_BOOT = 1000
#: Hash buckets of the deduplication index (first byte of the content hash: 256).
DEDUP_BUCKETS = 256
#: Row stride of the byte offsets kept for uncompressed JSONL shards (rows).
JSONL_OFFSET_STRIDE = 1024

# --- throughput ---------------------------------------------------------------------

#: Requests one worker keeps in flight to an OpenAI-compatible judge (openai backend).
JUDGE_CONCURRENCY = 16
#: Seconds a cached label stays in Redis (30 days; not extended when read).
LABEL_CACHE_TTL_S = 30 * 24 * 3600
#: Samples per queue job (one ``LLM.chat`` batch) for the vllm backend.
VLLM_CHUNK_SIZE = 512
