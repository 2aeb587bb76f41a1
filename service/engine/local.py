"""Worker processes a command starts for its own run (``slicelab worker --burst`` subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path


def run_queue(run_key: str) -> str:
    """The queue of one run's local workers (``slicelab:run:<run_key>``): no other run's worker takes from it."""
    return f"slicelab:run:{run_key}"


@dataclass
class LocalWorkers:
    """Worker processes started by this command (``slicelab worker --burst``), listening on ``queue``."""

    redis_url: str
    queue: str
    n: int
    log_path: Path
    threads_per_worker: int = 1
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    deaths: int = 0

    def start(self) -> None:
        """Top up to ``n`` running workers."""
        for _ in range(self.n - len(self.alive())):
            self._spawn()

    def _spawn(self) -> None:
        name = f"slicelab-local-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        env = os.environ | {"REDIS_URL": self.redis_url, "SLICELAB_LLAMA_THREADS": str(self.threads_per_worker)}
        cmd = [sys.executable, "-m", "slicelab.service.cli", "worker", "--burst", "--queue", self.queue, "--name", name]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

    def alive(self) -> list[str]:
        """Names of the started workers whose process still runs."""
        return [n for n, p in self.procs.items() if p.poll() is None]

    def reap(self) -> set[str]:
        """Forget exited workers; return the names of those that died (non-zero exit, e.g. SIGKILL).

        A burst worker that found the queue empty exits with 0: that is not a death.
        """
        died = set()
        for name, p in list(self.procs.items()):
            if p.poll() is not None:
                if p.returncode != 0:
                    died.add(name)
                del self.procs[name]
        self.deaths += len(died)
        return died

    def stop(self) -> None:
        """SIGTERM every worker; SIGKILL those still running 10 s later."""
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
