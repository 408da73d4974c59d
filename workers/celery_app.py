"""The worker and beat entry: ``celery -A workers.celery_app worker`` / ``... beat``.

With ``WORKER_METRICS_PORT`` set, the worker's main process serves the metrics of its task
processes there (docs/metrics.md, "Processes"); their shared directory is made before the app
loads prometheus-client.
"""

from __future__ import annotations

import atexit
import sys

from celery.signals import worker_process_shutdown, worker_ready

from scitoken_issuer.metrics_process import mark_process_dead, serve_worker_metrics, worker_metrics_dir
from scitoken_issuer.settings import ConfigError, Settings

try:
    settings = Settings.load()
    atexit.register(worker_metrics_dir(served=bool(settings.worker_metrics_port)))
    from scitoken_issuer.app import create_app
    flask_app = create_app()
except ConfigError as exc:
    print(f"scitoken-issuer: configuration error: {exc}", file=sys.stderr, flush=True)
    sys.exit(2)

app = celery = flask_app.extensions["celery"]


@worker_ready.connect(weak=False)
def serve_metrics(**_kwargs) -> None:
    if settings.worker_metrics_port:
        serve_worker_metrics(settings.worker_metrics_host, settings.worker_metrics_port, settings.metrics_token)


@worker_ready.connect(weak=False)
def build_missing_tree_index(**_kwargs) -> None:
    """A fresh deployment's first sign-in should not meet a 503: when no permission index is
    stored yet, the first worker to start asks for one (docs/authorization.md, "The index")."""
    from scitoken_issuer.background import request_tree_index
    from scitoken_issuer.extensions import runtime

    with flask_app.app_context():
        tree = runtime().tree
        if tree is not None and tree.redis is not None and not tree.redis.exists(tree.key):
            request_tree_index(tree.redis)


@worker_process_shutdown.connect(weak=False)
def forget_process(pid: int | None = None, **_kwargs) -> None:
    if settings.worker_metrics_port and pid:
        mark_process_dead(pid)
