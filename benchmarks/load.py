"""Bounded load from a separate process: ``wrk`` (Debian package ``wrk``) with ``scenario.lua``.

Fixed duration, a fixed number of connections (32 by default), two wrk threads. The Lua script
rotates through pre-created inputs, fills POST bodies, and counts an answer as an error unless it
is the scenario's expected status (and body word, e.g. ``authorization_pending``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("scenario.lua")
WRK_THREADS = 2


@dataclass(frozen=True)
class Load:
    """What one scenario sends."""

    path: str
    method: str = "GET"
    body: str | None = None  # form body; {1}, {2} are fields of an input line
    auth: str | None = None  # Authorization header value
    inputs: Path | None = None  # one tab-separated input per line
    status: int = 200
    expect: tuple[str, ...] = ()  # a success also carries one of these words


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    throttled: int
    wrapped: int
    socket_errors: int
    timeouts: int
    first_error: str

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failures(self) -> int:
        return self.errors + self.socket_errors + self.timeouts


def wrk_path() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (scripts/run-tests installs it)")
    return found


def run(base_url: str, load: Load, duration: float, connections: int = 32) -> Result:
    """Drive ``base_url + load.path`` for ``duration`` seconds; parse the script's result line."""
    env = {**os.environ, "BENCH_METHOD": load.method, "BENCH_PATH": load.path, "BENCH_AUTH": load.auth or "",
           "BENCH_BODY": load.body or "", "BENCH_INPUTS": str(load.inputs or ""), "BENCH_STATUS": str(load.status),
           "BENCH_EXPECT": "|".join(load.expect), "BENCH_THREADS": str(WRK_THREADS)}
    argv = [wrk_path(), "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{max(1, round(duration))}s",
            "--timeout", "10s", "-s", str(SCRIPT), base_url + load.path]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration + 120)
    line = next((line for line in done.stdout.splitlines() if line.startswith("BENCH_RESULT ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.split(" ", 1)[1])
    return Result(requests=data["requests"], seconds=data["duration_us"] / 1e6, p50_ms=data["p50_us"] / 1000,
                  p99_ms=data["p99_us"] / 1000, errors=data["errors"], throttled=data["throttled"],
                  wrapped=data["wrapped"], socket_errors=data["socket_errors"], timeouts=data["timeouts"],
                  first_error=data["first_error"])
