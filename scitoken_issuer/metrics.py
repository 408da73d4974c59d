"""Prometheus metrics of the issuer (docs/metrics.md): every metric object, and the small hooks the
views, services and task signals call. No Flask here, so services stay plain.

Label values come only from small fixed sets (grant types this issuer knows, OAuth error codes,
Flask endpoint names, task names): never free text, user or client data.

With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn sets it, see :mod:`scitoken_issuer.gunicorn_conf`)
prometheus-client keeps each process's values in a file there and :func:`exposition` adds them up;
it must be set before this module is first imported. Without it the values live in this process.
"""

from __future__ import annotations

import os
import time
from typing import Collection, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, \
    disable_created_metrics, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric

disable_created_metrics()  # no *_created series: one process and many expose the same names
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # a CLI run before gunicorn ever made it
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

#: OAuth error codes a token-endpoint refusal is counted under (RFC 6749 §5.2, RFC 8628 §3.5,
#: RFC 8693 §2.2.2, and 503/500 answers); any other code counts as ``other``.
REFUSAL_REASONS = frozenset({
    "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
    "invalid_scope", "invalid_target", "access_denied", "authorization_pending", "slow_down", "expired_token",
    "temporarily_unavailable", "server_error"})
GROUP_CACHE_RESULTS = ("hit", "miss", "stale")
LDAP_ERROR_KINDS = ("connection", "bind", "search")
IDP_ERROR_KINDS = ("unavailable", "bad_response")
TASK_PREFIX = "workers.tasks."
TASK_OUTCOMES = ("success", "failure", "retry", "ignored")

TOKENS_ISSUED = Counter(
    "scitoken_issuer_tokens_issued", "Token-endpoint answers with tokens, by grant type", ["grant_type"])
TOKEN_REFUSALS = Counter(
    "scitoken_issuer_token_refusals", "Token-endpoint answers with an error, by grant type and OAuth error code",
    ["grant_type", "reason"])
REQUEST_DURATION = Histogram(
    "scitoken_issuer_http_request_duration_seconds", "Time to answer an HTTP request, by Flask endpoint and "
    "status class", ["endpoint", "status_class"])
GROUP_CACHE_LOOKUPS = Counter(
    "scitoken_issuer_group_cache_lookups", "Group look-ups: hit (cache), miss (live look-up), stale (served "
    "from an expired entry while the source is down)", ["result"])
INDEX_SCANNED_NAME = "scitoken_issuer_permission_index_scanned_timestamp_seconds"
INDEX_SCANNED = Gauge(
    INDEX_SCANNED_NAME,
    "When the newest permission index any process loaded was scanned (Unix time; 0: none yet)",
    multiprocess_mode="max")
INDEX_ENTRIES = Gauge(
    "scitoken_issuer_permission_index_entries", "Entries (permission boundaries) in the last loaded index",
    multiprocess_mode="mostrecent")
INDEX_AGE = "scitoken_issuer_permission_index_age_seconds"  # derived at scrape time, see _WithIndexAge
LDAP_ERRORS = Counter(
    "scitoken_issuer_ldap_errors", "Failed LDAP operations: connection, bind or search", ["kind"])
IDP_ERRORS = Counter(
    "scitoken_issuer_idp_errors", "Failed calls to the upstream identity provider: unavailable (unreachable "
    "or 5xx) or bad_response (an answer that cannot be used)", ["kind"])
TASKS = Counter(
    "scitoken_issuer_celery_tasks", "Celery tasks finished, by task and outcome", ["task", "outcome"])
TASK_DURATION = Histogram(
    "scitoken_issuer_celery_task_duration_seconds", "Time a Celery task ran, by task", ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, float("inf")))


def multiprocess_dir() -> str | None:
    """The directory prometheus-client shares values through, or None (values in this process)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


# -- hooks ----------------------------------------------------------------------------------------
def token_answered(grant_type: str | None, supported: Collection[str], error: str | None) -> None:
    """One token-endpoint answer: tokens (``error`` None) or a refusal with an OAuth error code."""
    grant = grant_type if grant_type in supported else "unsupported"
    if error is None:
        TOKENS_ISSUED.labels(grant).inc()
    else:
        TOKEN_REFUSALS.labels(grant, error if error in REFUSAL_REASONS else "other").inc()


def request_answered(endpoint: str | None, status: int, seconds: float) -> None:
    """One HTTP answer; ``endpoint`` is the matched Flask endpoint, None for an unknown path."""
    REQUEST_DURATION.labels(endpoint or "unmatched", f"{status // 100}xx").observe(seconds)


def group_cache_lookup(result: str) -> None:
    """``hit``, ``miss`` or ``stale`` (docs/metrics.md)."""
    GROUP_CACHE_LOOKUPS.labels(result).inc()


def permission_index_loaded(scanned_at: float, entries: int) -> None:
    """A process built or loaded the permission index scanned at ``scanned_at``."""
    INDEX_SCANNED.set(scanned_at)
    INDEX_ENTRIES.set(entries)


def ldap_error(kind: str) -> None:
    LDAP_ERRORS.labels(kind).inc()


def idp_error(kind: str) -> None:
    IDP_ERRORS.labels(kind).inc()


def task_finished(name: str, outcome: str, seconds: float) -> None:
    """A Celery task ended (``success``, ``failure``, ``retry``, ``ignored``) after ``seconds``."""
    task = name[len(TASK_PREFIX):] if name.startswith(TASK_PREFIX) else "other"
    TASKS.labels(task, outcome if outcome in TASK_OUTCOMES else "other").inc()
    TASK_DURATION.labels(task).observe(seconds)


# -- exposition -----------------------------------------------------------------------------------
class _WithIndexAge:
    """The collected metrics plus the permission index's age, computed now from its scan time."""

    def __init__(self, registry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            yield family
            if family.name == INDEX_SCANNED_NAME and family.samples and family.samples[0].value > 0:
                age = GaugeMetricFamily(INDEX_AGE, "Seconds since the newest loaded permission index was "
                                        "scanned (absent until one is loaded)")
                age.add_metric([], max(0.0, time.time() - max(s.value for s in family.samples)))
                yield age


def exposition() -> tuple[bytes, str]:
    """The Prometheus text exposition of every process (multiprocess mode) or of this one."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(_WithIndexAge(registry)), CONTENT_TYPE_LATEST
