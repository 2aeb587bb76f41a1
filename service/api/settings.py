"""Settings of the REST service and its API keys with their scopes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slicelab.service import defaults
from slicelab.service.errors import ConfigError
from slicelab.service.judge import judge_spec

#: Scopes an API key may hold; a key given without scopes holds all of them.
SCOPES = ("tag", "jobs", "calibrations", "metrics")
#: Fewest characters of the review pages' cookie signing secret.
MIN_UI_SECRET = 32


@dataclass
class Settings:
    """Service configuration (from the environment by :meth:`from_env`).

    Attributes:
        api_keys: key → allowed scopes.
        data_root: server-side files jobs may read (paths never escape it).
        judge: judge spec (default: ``SLICELAB_JUDGE_URL``/``SLICELAB_JUDGE_MODEL``, else embedded).
        redis_url: the Redis the workers listen on.
        queue: the RQ queue bulk jobs and calibrations are enqueued on.
        max_body_bytes: request body limit (413 above it).
        max_text_chars: limit per text field of a tagged item (413 above it).
        tag_timeout_s: seconds one /v1/tag may take (504 above it).
        ui_secret: the key review-page session cookies are signed with (``SLICELAB_UI_SECRET``);
            None: a random key per process, so sessions end when the service restarts.
    """

    api_keys: dict[str, set[str]]
    data_root: Path
    judge: dict[str, Any]
    redis_url: str
    queue: str = defaults.QUEUE_NAME
    max_body_bytes: int = 20 * 1024 * 1024
    max_text_chars: int = 200_000
    tag_timeout_s: float = 120.0
    ui_secret: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "Settings":
        """Read ``SLICELAB_API_KEYS`` / ``SLICELAB_API_KEYS_FILE``, ``SLICELAB_DATA_ROOT``, judge, Redis and
        ``SLICELAB_UI_SECRET`` settings.

        Raises:
            ConfigError: an API key with an unknown scope, or a ``SLICELAB_UI_SECRET`` shorter than
                :data:`MIN_UI_SECRET` characters.
        """
        secret = os.environ.get("SLICELAB_UI_SECRET") or None
        if secret is not None and len(secret) < MIN_UI_SECRET:
            raise ConfigError(f"SLICELAB_UI_SECRET has {len(secret)} characters; give at least {MIN_UI_SECRET} "
                              "(e.g. `openssl rand -hex 32`)")
        entries = [e for e in (os.environ.get("SLICELAB_API_KEYS") or "").split(",") if e.strip()]
        keys_file = os.environ.get("SLICELAB_API_KEYS_FILE")
        if keys_file:
            entries += [line for line in Path(keys_file).read_text().splitlines() if line.strip()]
        url = os.environ.get("SLICELAB_JUDGE_URL")
        return cls(
            api_keys=parse_keys(entries),
            data_root=Path(os.environ.get("SLICELAB_DATA_ROOT") or ".").resolve(),
            judge=judge_spec(judge_url=url, judge_model=os.environ.get("SLICELAB_JUDGE_MODEL")),
            redis_url=os.environ.get("REDIS_URL") or defaults.REDIS_URL,
            ui_secret=secret,
        )


def parse_keys(entries: list[str]) -> dict[str, set[str]]:
    """``key`` (every scope) or ``key:scope+scope`` entries → key → scopes.

    Raises:
        ConfigError: an unknown scope (the allowed ones are named).
    """
    keys: dict[str, set[str]] = {}
    for entry in entries:
        key, _, scopes = entry.strip().partition(":")
        wanted = set(scopes.split("+")) if scopes else set(SCOPES)
        unknown = wanted - set(SCOPES)
        if unknown:
            raise ConfigError(f"API key scopes {sorted(unknown)} unknown; allowed: {', '.join(SCOPES)}")
        keys[key] = wanted
    return keys
