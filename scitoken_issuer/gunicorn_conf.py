"""gunicorn settings of the web process: ``gunicorn -c python:scitoken_issuer.gunicorn_conf ...``.

- The access log goes to stdout with every query-string value, credential and token masked
  (:mod:`scitoken_issuer.log_redaction`); every other log line goes to stderr, masked alike.
- gunicorn trusts no forwarding header from anyone: which proxies may set ``X-Forwarded-*`` is
  the app's ``TRUSTED_PROXIES`` setting, applied by werkzeug's ProxyFix (docs/security-web.md).
- One worker per CPU the process may use, each with a few threads for requests that wait on the
  network (:func:`web_workers`, :func:`web_threads`; ``WEB_CONCURRENCY`` and ``WEB_THREADS``
  override them).
- Each worker takes as many connections as it has threads and closes each after its answer.
- The workers add up their metrics in one directory (docs/metrics.md, "Processes"):
  ``PROMETHEUS_MULTIPROC_DIR``, emptied when the master starts, or a private one made then.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

from gunicorn.glogging import Logger

from .log_redaction import RedactingFilter, redact_handlers
from .metrics_process import mark_process_dead, prepare_multiprocess_dir, remove_private_dir

accesslog = "-"
#: gunicorn's largest request line: an authorization request may carry a 2,000-character
#: redirect_uri and a long scope, percent-encoded (its default of 4,094 would answer 414)
limit_request_line = 8190
#: X-Forwarded-Proto/-Ssl/-Protocol would make gunicorn set the scheme for any peer in
#: forwarded_allow_ips; ProxyFix decides instead, per TRUSTED_PROXIES.
secure_scheme_headers: dict[str, str] = {}
forwarded_allow_ips = ""
forwarder_headers = ""


class RedactingLogger(Logger):
    """gunicorn's logger whose error and access handlers mask secrets, plus a masked stderr handler
    on the root logger for every other line (the app's audit lines, authlib, SQLAlchemy...)."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            redact_handlers(log)
        root = logging.getLogger()
        if not any(getattr(h, "_scitoken_issuer", False) for h in root.handlers):
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(
                "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s", self.datefmt))
            handler.addFilter(RedactingFilter())
            handler._scitoken_issuer = True  # type: ignore[attr-defined]
            root.addHandler(handler)


logger_class = RedactingLogger

#: threads per worker unless WEB_THREADS says otherwise
DEFAULT_THREADS = 4
#: cgroup v2's CPU limit of this process's group: "<quota> <period>" or "max <period>"
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def _count(name: str, default: int) -> int:
    """The positive whole number in environment variable ``name``, or ``default`` when unset."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise SystemExit(f"scitoken-issuer: {name} must be a positive whole number, not {text!r}")
    return int(text)


def usable_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The CPUs this process may run on (its affinity), fewer when its cgroup caps CPU time (a
    container started with ``--cpus 2`` on a larger host)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit visible: the affinity is the limit
    return cpus


def web_workers() -> int:
    """``WEB_CONCURRENCY``, or one worker per usable CPU: token work is CPU work, and every
    process beyond the cores only adds switching between them (docs/architecture.md, "Web
    processes")."""
    return _count("WEB_CONCURRENCY", usable_cpus())


def web_threads() -> int:
    """``WEB_THREADS``, or :data:`DEFAULT_THREADS`: a request waiting on the network (PostgreSQL,
    the upstream IdP, LDAP) leaves its worker's other threads answering."""
    return _count("WEB_THREADS", DEFAULT_THREADS)


workers = web_workers()
threads = web_threads()

#: Connections are closed after each answer, and a worker accepts only as many connections as it
#: has threads (:func:`one_connection_per_thread`), so a waiting connection stays in the kernel's queue until some
#: worker has a free thread: the load spreads evenly over the workers. With keep-alive, each
#: worker kept whatever connections it accepted first, and the busiest one made the slowest
#: answers (docs/architecture.md, "Web processes"). A reverse proxy in front keeps its own
#: keep-alive connections to clients.
keepalive = 0


def one_connection_per_thread(cfg) -> None:
    """A worker accepts a connection only when it has a thread free for it (see ``keepalive``)."""
    cfg.set("worker_connections", cfg.threads)


_remove_metrics_dir = remove_private_dir(None)


def on_starting(server) -> None:
    """Before any worker imports the app (and prometheus-client): their shared metrics directory.
    With ``--preload`` the app loads earlier, so PROMETHEUS_MULTIPROC_DIR must then be set."""
    global _remove_metrics_dir
    one_connection_per_thread(server.cfg)
    if "prometheus_client" in sys.modules and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        server.log.warning("prometheus-client was loaded before gunicorn started (--preload?) and "
                           "PROMETHEUS_MULTIPROC_DIR is unset: each worker's /metrics shows only its own values")
    _remove_metrics_dir = remove_private_dir(prepare_multiprocess_dir())


def child_exit(server, worker) -> None:
    mark_process_dead(worker.pid)


def on_exit(server) -> None:
    _remove_metrics_dir()
