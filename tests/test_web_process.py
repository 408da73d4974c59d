"""The web process as the Procfile runs it (docs/architecture.md, "Web processes"): one worker per
usable CPU unless ``WEB_CONCURRENCY`` says otherwise; each worker accepts only as many connections
as it has threads and closes each after its answer, so waiting connections queue in the kernel for
whichever worker is free."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from gunicorn.config import Config

from benchmarks.servers import procfile_web_argv
from scitoken_issuer.gunicorn_conf import (DEFAULT_THREADS, keepalive, one_connection_per_thread, usable_cpus,
                                           web_threads, web_workers)

from .support.processes import ManagedProcess, free_port, wait_until
from .test_embedded import ROOT, environment


@pytest.mark.parametrize("cpu_max, expected", [
    ("150000 100000\n", 2),  # one and a half CPUs of quota: two workers
    ("50000 100000\n", 1),
    ("max 100000\n", None),  # no quota: every CPU of the affinity
    (None, None),  # no cgroup v2 file
    ("garbage\n", None),
])
def test_usable_cpus_follow_the_affinity_and_the_cgroup_quota(tmp_path, cpu_max, expected):
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(path) == (min(affinity, expected) if expected else affinity)


def test_workers_and_threads_default_to_the_cpus_and_four_and_take_the_environment(monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.delenv("WEB_THREADS", raising=False)
    assert web_workers() == usable_cpus() and web_threads() == DEFAULT_THREADS == 4
    monkeypatch.setenv("WEB_CONCURRENCY", " 3 ")
    monkeypatch.setenv("WEB_THREADS", "1")
    assert web_workers() == 3 and web_threads() == 1
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv("WEB_CONCURRENCY", bad)
        expected = f"WEB_CONCURRENCY must be a positive whole number, not '{re.escape(bad)}'"
        with pytest.raises(SystemExit, match=expected):
            web_workers()


def test_a_worker_takes_as_many_connections_as_threads():
    cfg = Config()
    cfg.set("threads", 3)
    one_connection_per_thread(cfg)
    assert cfg.worker_connections == 3 and keepalive == 0


def test_procfile_web_process_closes_connections_and_serves_a_queue(tmp_path, monkeypatch):
    """One worker with two threads (the Procfile's command, WEB_CONCURRENCY=1, WEB_THREADS=2):
    every answer says ``Connection: close``; twelve clients at once all get their answer from the
    queue; a request line of 6,000 characters is served."""
    env = environment(tmp_path)
    upgrade = subprocess.run(["scitoken-issuer", "db", "upgrade"], capture_output=True, text=True, timeout=120,
                             env=env, cwd=ROOT)
    assert upgrade.returncode == 0, upgrade.stderr
    env.update(WEB_CONCURRENCY="1", WEB_THREADS="2")
    port = free_port()
    process = ManagedProcess("web", procfile_web_argv("scitoken_issuer.wsgi:app", port), tmp_path, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/.well-known/openid-configuration"
    try:
        process.start().wait_for_port(port, timeout=60)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while chunk := raw.recv(65536):  # the server closes: recv returns b"" at the end
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and b"\r\nConnection: close\r\n" in answer
        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(lambda _: requests.get(url, timeout=30).status_code, range(48)))
        assert statuses == [200] * 48
        # an authorization request with a long redirect_uri and scope fits the request line (not 414)
        long_line = requests.get(f"http://127.0.0.1:{port}/healthz?redirect_uri={'a' * 6000}", timeout=30)
        assert long_line.status_code == 200
        assert "Traceback" not in process.log()
    finally:
        process.stop()


def test_procfile_web_process_runs_one_threaded_worker_per_usable_cpu(tmp_path):
    """Without WEB_CONCURRENCY and WEB_THREADS the Procfile's command starts one worker per usable
    CPU, each with four threads (gunicorn's threaded worker)."""
    env = environment(tmp_path)
    port = free_port()
    process = ManagedProcess("web", procfile_web_argv("scitoken_issuer.wsgi:app", port), tmp_path, env=env, cwd=ROOT)
    try:
        process.start().wait_for_port(port, timeout=60)
        master = process.proc.pid

        def workers() -> list[str]:
            with open(f"/proc/{master}/task/{master}/children") as children:
                return children.read().split()

        wait_until(lambda: len(workers()) == usable_cpus(), 60, "one worker per usable CPU")
        assert "Using worker: gthread" in process.log()
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
    finally:
        process.stop()
