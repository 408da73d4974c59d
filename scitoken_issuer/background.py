"""Celery wired to the Flask app (docs/flows.md): Redis as broker and result backend, or in process.

With ``REDIS_URL`` the tasks run in worker processes (``celery -A workers.celery_app worker``)
and Celery beat runs the periodic ones. Without it every task runs in the calling process
(``task_always_eager``), which is the embedded default.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from celery import Celery, Task
from celery.exceptions import Ignore, Reject, Retry
from flask import Flask, current_app, has_app_context

from . import metrics

if TYPE_CHECKING:
    import redis

logger = logging.getLogger(__name__)


def celery_init_app(app: Flask) -> Celery:
    settings = app.extensions["scitoken_issuer"].settings

    class FlaskTask(Task):
        """Runs inside an app context: the caller's (in process) or the worker's own app; counts
        its outcome and duration in the process that runs it (docs/metrics.md)."""

        def __call__(self, *args, **kwargs):
            started, outcome = time.perf_counter(), "failure"
            try:
                if has_app_context():
                    result = self.run(*args, **kwargs)
                else:
                    with app.app_context():
                        result = self.run(*args, **kwargs)
                outcome = "success"
                return result
            except Retry:
                outcome = "retry"
                raise
            except (Ignore, Reject):
                outcome = "ignored"
                raise
            finally:
                metrics.task_finished(self.name, outcome, time.perf_counter() - started)

    celery = Celery(app.name, task_cls=FlaskTask, include=["workers.tasks"])
    eager = not settings.redis_url
    celery.conf.update(
        broker_url=settings.redis_url or "memory://",
        result_backend=settings.redis_url or "cache+memory://",
        task_always_eager=eager,
        task_eager_propagates=True,
        task_ignore_result=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=3600,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        # a web request sending a task while Redis is down is answered 503 within about a second
        # (docs/errors.md), not after the result store's default of 20 reconnects a second apart
        result_backend_transport_options={"retry_policy": {"max_retries": 2, "interval_start": 0,
                                                           "interval_step": 0.5, "interval_max": 0.5}},
        beat_schedule=beat_schedule(settings),
        timezone="UTC",
    )
    import workers.tasks  # noqa: F401  (shared tasks attach to every Celery app, the web's too)
    app.extensions["celery"] = celery
    return celery


def beat_schedule(settings) -> dict:
    """The cron work: group cache, permission index, key rotation, expiry cleanup."""
    from workers import tasks
    schedule = {
        "refresh-group-cache": {"task": tasks.refresh_group_cache.name,
                                "schedule": max(60.0, settings.group_cache_ttl / 2)},
        "rotate-keys": {"task": tasks.rotate_keys.name, "schedule": 3600.0},
        "cleanup-expired": {"task": tasks.cleanup_expired.name, "schedule": 3600.0},
    }
    if settings.posix_path and settings.posix_strict:
        schedule["rebuild-tree-index"] = {"task": tasks.rebuild_tree_index.name,
                                          "schedule": max(10.0, settings.tree_index_max_age / 2)}
    return schedule


def request_tree_index(client: redis.Redis | None) -> None:
    """Ask a worker to build the missing strict-mode index (docs/authorization.md, rule 4):
    one request a minute through Redis, not one task per waiting request."""
    from workers import tasks
    try:
        if client is None or client.set("scitoken-issuer:tree-index:requested", "1", nx=True, ex=60):
            dispatch(tasks.rebuild_tree_index)
    except Exception as exc:  # the broker may be the thing that is down; the caller's 503 stands
        logger.warning("could not dispatch rebuild_tree_index: %s", type(exc).__name__)


class TaskQueueUnavailable(Exception):
    """A task could not be sent: Redis, the broker and result store, is down (docs/errors.md: 503)."""


def dispatch(task: Task, *args, **kwargs):
    """Send ``task`` (a task object of :mod:`workers.tasks`) through this app's Celery, or run it
    in process; this app's, not whichever Celery app is current, since tests build several.

    With a broker, sending is all that happens here, so any failure is the broker's or the result
    store's (kombu's OperationalError, redis errors, Celery's "retry limit exceeded"
    RuntimeError): raised as :class:`TaskQueueUnavailable`. In process, the task's own errors
    propagate unchanged."""
    celery: Celery = current_app.extensions["celery"]
    if celery.conf.task_always_eager:
        return celery.tasks[task.name].apply_async(args=args, kwargs=kwargs)
    try:
        return celery.tasks[task.name].apply_async(args=args, kwargs=kwargs)
    except Exception as exc:
        logger.warning("could not send task %s: %s", task.name, type(exc).__name__)
        raise TaskQueueUnavailable(task.name) from exc

