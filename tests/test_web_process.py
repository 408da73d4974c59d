"""The web process as the Procfile runs it (docs/architecture.md, "Web processes"): each worker
accepts only as many connections as it has threads and closes each after its answer, so waiting
connections queue in the kernel for whichever worker is free."""

from __future__ import annotations

import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import requests
from gunicorn.config import Config

from benchmarks.servers import procfile_web_argv
from scitoken_issuer.gunicorn_conf import keepalive, one_connection_per_thread

from .support.processes import ManagedProcess, free_port
from .test_embedded import ROOT, environment


def test_a_worker_takes_as_many_connections_as_threads():
    cfg = Config()
    cfg.set("threads", 3)
    one_connection_per_thread(cfg)
    assert cfg.worker_connections == 3 and keepalive == 0


def test_procfile_web_process_closes_connections_and_serves_a_queue(tmp_path, monkeypatch):
    """One worker with two threads (the Procfile's flags, WEB_CONCURRENCY=1): every answer says
    ``Connection: close``; twelve clients at once all get their answer from the queue."""
    env = environment(tmp_path)
    upgrade = subprocess.run(["scitoken-issuer", "db", "upgrade"], capture_output=True, text=True, timeout=120,
                             env=env, cwd=ROOT)
    assert upgrade.returncode == 0, upgrade.stderr
    monkeypatch.setenv("WEB_CONCURRENCY", "1")
    port = free_port()
    argv = procfile_web_argv("scitoken_issuer.wsgi:app", port)
    assert argv[argv.index("--threads") + 1] == "2"
    process = ManagedProcess("web", argv, tmp_path, env=env, cwd=ROOT)
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
        assert "Traceback" not in process.log()
    finally:
        process.stop()
