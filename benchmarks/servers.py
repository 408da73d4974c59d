"""The processes a benchmark run starts, each on a free loopback port and stopped afterwards.

Web servers run with the Procfile's gunicorn flags (workers, threads, forwarded-allow-ips), bound
to 127.0.0.1 instead of 0.0.0.0 and without gunicorn's per-user control socket (several servers
run side by side). PostgreSQL and Redis come from the test suite's own fixtures' classes.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import tempfile
from pathlib import Path

from scitoken_issuer.settings import SETTINGS
from tests.support.processes import ManagedProcess, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
PROCFILE = ROOT / "Procfile"
_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def procfile_web_argv(target: str, port: int, procfile: Path = PROCFILE) -> list[str]:
    """The Procfile's ``web:`` command with ``target`` as the app, on 127.0.0.1:``port``."""
    line = next(line for line in procfile.read_text().splitlines() if line.startswith("web:"))
    command = _DEFAULTED.sub(lambda m: os.environ.get(m.group(1)) or m.group(2), line[len("web:"):])
    argv = shlex.split(command)
    if argv[0] != "gunicorn":
        raise RuntimeError(f"{procfile}: the web process is not gunicorn: {argv[0]}")
    argv = [sys.executable, "-m", "gunicorn", *argv[1:]]
    argv[argv.index("--bind") + 1] = f"127.0.0.1:{port}"
    return argv[:-1] + ["--no-control-socket", target]


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes ``pids`` have used so far (``/proc/<pid>/stat``)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def clean_environment(**settings: str) -> dict:
    """This environment without any issuer setting inherited from the caller, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env.update({"PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))})
    env.update({k: str(v) for k, v in settings.items()})
    return env


class WebServer:
    """gunicorn serving ``target`` with the Procfile's flags; knows its workers' memory."""

    def __init__(self, name: str, target: str, env: dict, log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = ManagedProcess(name, procfile_web_argv(target, self.port), log_dir,
                                      env={**env, "ISSUER_ADDRESS": env.get("ISSUER_ADDRESS") or self.url},
                                      cwd=ROOT)

    def start(self) -> "WebServer":
        self.process.start()
        self.process.wait_for_port(self.port, timeout=90)
        wait_until(lambda: len(self.worker_pids()) >= 1, 30, "gunicorn workers")
        return self

    def worker_pids(self) -> list[int]:
        master = self.process.proc.pid
        children = []
        for task in Path(f"/proc/{master}/task").glob("*/children"):
            children += [int(pid) for pid in task.read_text().split()]
        return children

    def cpu_seconds(self) -> float:
        """CPU time the workers have used so far."""
        return cpu_seconds(self.worker_pids())

    def worker_rss_mb(self) -> float:
        """The largest resident set of one worker (VmRSS), in MB."""
        sizes = []
        for pid in self.worker_pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
            if match:
                sizes.append(int(match.group(1)) / 1024)
        return max(sizes, default=0.0)

    def stop(self) -> None:
        self.process.stop()


class NodePeer:
    """``node benchmarks/peer.mjs``: npm oidc-provider with a client-credentials client."""

    def __init__(self, key_type: str, client_id: str, client_secret: str, log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {"PORT": str(self.port), "KEY_TYPE": key_type, "CLIENT_ID": client_id,
               "CLIENT_SECRET": client_secret, "NODE_ENV": "production"}
        self.process = ManagedProcess("peer", ["node", str(ROOT / "benchmarks" / "peer.mjs")], log_dir,
                                      env=env, cwd=ROOT)

    def start(self) -> "NodePeer":
        self.process.start()
        self.process.wait_for_port(self.port, timeout=60)
        return self

    def cpu_seconds(self) -> float:
        """CPU time the node process has used so far (its libuv threads included)."""
        return cpu_seconds([self.process.proc.pid])

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.proc.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        return int(match.group(1)) / 1024 if match else 0.0

    def stop(self) -> None:
        self.process.stop()


def storage_tree() -> Path:
    """A tiny ``POSIX_PATH`` where ``/data`` is world-readable (the dev user alice may read it)."""
    root = Path(tempfile.mkdtemp(prefix="bench-posix-"))
    (root / "data" / "ana").mkdir(parents=True)
    for path in (root, root / "data", root / "data" / "ana"):
        path.chmod(0o755)
    return root

