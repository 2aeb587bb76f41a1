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
