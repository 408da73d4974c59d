"""How processes share and serve metrics (docs/metrics.md, "Processes").

gunicorn's master and a Celery worker's main process each give their children one directory of
metric values (prometheus-client's multiprocess mode) before anything imports prometheus-client.
A Celery worker serves its own metrics on ``WORKER_METRICS_PORT`` from a small thread, since its
tasks run in child processes the web's ``/metrics`` cannot see.

Nothing here imports prometheus-client at module level: :func:`prepare_multiprocess_dir` must run
before it is loaded.
"""

from __future__ import annotations

import glob
import hmac
import logging
import os
import shutil
import tempfile
import threading
from socketserver import ThreadingMixIn
from typing import Callable, Iterable, MutableMapping
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

logger = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Give this process tree a clean metrics directory: ``PROMETHEUS_MULTIPROC_DIR`` created and
    emptied of a previous run's values, or, unset, a new private directory exported in it.

    Returns the directory it created (the caller removes it at exit), else None."""
    path = environ.get(ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
        return None
    path = tempfile.mkdtemp(prefix="scitoken-issuer-metrics-")
    environ[ENV] = path
    return path


def worker_metrics_dir(served: bool, environ: MutableMapping[str, str] = os.environ) -> Callable[[], None]:
    """A Celery worker's metrics directory: a new private one when its metrics are ``served``, else
    none. Never one inherited from the web's environment: a web restart would empty it, and the
    web's ``/metrics`` would show the worker's values. Returns the clean-up to run at exit."""
    environ.pop(ENV, None)
    return remove_private_dir(prepare_multiprocess_dir(environ) if served else None)


def remove_private_dir(path: str | None) -> Callable[[], None]:
    """The clean-up of a directory made by :func:`prepare_multiprocess_dir`, for its creator only."""
    creator = os.getpid()

    def remove() -> None:
        if path and os.getpid() == creator:
            shutil.rmtree(path, ignore_errors=True)
    return remove


def mark_process_dead(pid: int) -> None:
    """A child exited: drop its live gauges (prometheus-client's multiprocess bookkeeping)."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid)


def bearer_matches(header: str | None, token: str | None) -> bool:
    """Does an ``Authorization`` header carry ``Bearer <token>``? Always true when no token is set."""
    if not token:
        return True
    scheme, _, value = (header or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def metrics_wsgi_app(token: str | None) -> Callable:
    """A WSGI app answering every path with the metrics, behind ``METRICS_TOKEN`` when set."""
    from .metrics import exposition

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not bearer_matches(environ.get("HTTP_AUTHORIZATION"), token):
            body = b'{"error": "invalid_token", "error_description": "send the metrics token as a Bearer token"}'
            start_response("401 Unauthorized", [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                                                 ("WWW-Authenticate", 'Bearer realm="metrics"')])
            return [body]
        body, content_type = exposition()
        start_response("200 OK", [("Content-Type", content_type), ("Cache-Control", "no-store")])
        return [body]
    return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # scrapes every few seconds are not news
        pass


def serve_worker_metrics(host: str, port: int, token: str | None) -> WSGIServer:
    """Serve the metrics on ``host:port`` from a daemon thread of this (the worker's main) process."""
    server = make_server(host, port, metrics_wsgi_app(token), _ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True).start()
    logger.info("worker metrics on http://%s:%d/metrics", host, port)
    return server
