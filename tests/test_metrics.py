"""docs/metrics.md: what ``/metrics`` counts, in one process — token answers by grant and reason,
request latency by endpoint, group cache, permission index, LDAP and IdP errors, Celery tasks —
the optional ``METRICS_TOKEN`` (RFC 6750 §3.1 challenges), and the documented names."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from scitoken_issuer import metrics
from scitoken_issuer.background import dispatch
from scitoken_issuer.services.group_cache import GroupCache
from scitoken_issuer.services.groups import GroupsUnavailable
from scitoken_issuer.services.ldap_groups import LdapGroupSource
from scitoken_issuer.services.tree_store import TreeIndexStore
from scitoken_issuer.services.upstream_idp import UpstreamIdP, UpstreamUnavailable
from workers import tasks

from .conftest import basic_auth, make_app
from .test_group_cache import ALICE, Clock, FakeSource

DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"
METRICS_TOKEN = "metrics-token-0123456789abcdef-0123456789"


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_token_answers_by_grant_and_reason(client, make_client):
    """Issued and refused token requests are counted by grant type and RFC 6749 §5.2 error code;
    an unknown grant type is one label, never the value sent."""
    registered, secret = make_client(scope="compute.read")
    cc = "client_credentials"
    before = {"issued": value("scitoken_issuer_tokens_issued_total", grant_type=cc),
              "scope": value("scitoken_issuer_token_refusals_total", grant_type=cc, reason="invalid_scope"),
              "client": value("scitoken_issuer_token_refusals_total", grant_type=cc, reason="invalid_client"),
              "grant": value("scitoken_issuer_token_refusals_total", grant_type="unsupported",
                             reason="unsupported_grant_type")}
    auth = basic_auth(registered.client_id, secret)
    for _ in range(3):
        assert client.post("/auth/token", data={"grant_type": cc}, headers=auth).status_code == 200
    assert client.post("/auth/token", data={"grant_type": cc, "scope": "compute.cancel"},
                       headers=auth).status_code == 400
    assert client.post("/auth/token", data={"grant_type": cc},
                       headers=basic_auth(registered.client_id, "wrong")).status_code == 401
    assert client.post("/auth/token", data={"grant_type": "urn:x:made-up-grant"}, headers=auth).status_code == 400
    assert value("scitoken_issuer_tokens_issued_total", grant_type=cc) == before["issued"] + 3
    assert value("scitoken_issuer_token_refusals_total", grant_type=cc, reason="invalid_scope") == before["scope"] + 1
    assert value("scitoken_issuer_token_refusals_total", grant_type=cc, reason="invalid_client") == \
        before["client"] + 1
    assert value("scitoken_issuer_token_refusals_total", grant_type="unsupported",
                 reason="unsupported_grant_type") == before["grant"] + 1
    exposed = client.get("/metrics").get_data(as_text=True)
    assert "made-up" not in exposed and registered.client_id not in exposed


def test_request_latency_by_endpoint(client):
    """One histogram series per Flask endpoint and status class; every unknown path is one label."""
    name = "scitoken_issuer_http_request_duration_seconds_count"
    health = value(name, endpoint="health.healthz", status_class="2xx")
    unmatched = value(name, endpoint="unmatched", status_class="4xx")
    client.get("/healthz")
    client.get("/no/such/path/1")
    client.get("/no/such/path/2")
    assert value(name, endpoint="health.healthz", status_class="2xx") == health + 1
    assert value(name, endpoint="unmatched", status_class="4xx") == unmatched + 2
    assert 'path="' not in client.get("/metrics").get_data(as_text=True)


def test_group_cache_hits_misses_stale():
    """docs/metrics.md: a live look-up is a miss, a fresh entry a hit, an expired one served while
    the source is down is stale."""
    source, clock = FakeSource(ALICE), Clock()
    cache = GroupCache(source, ttl=10, max_staleness=100, clock=clock)
    counts = {r: value("scitoken_issuer_group_cache_lookups_total", result=r) for r in ("hit", "miss", "stale")}
    cache.get("alice")
    cache.get("alice")
    clock.now += 20
    source.down = True
    cache.get("alice")
    assert {r: value("scitoken_issuer_group_cache_lookups_total", result=r) - counts[r] for r in counts} == \
        {"hit": 1, "miss": 2, "stale": 1}


def test_permission_index_age_and_size(tmp_path, client):
    """Index size and scan time are set when a process builds or loads the index; the age gauge
    is computed at scrape time from the scan time."""
    (tmp_path / "data" / "private").mkdir(parents=True)
    (tmp_path / "data" / "private").chmod(0o700)
    store = TreeIndexStore(str(tmp_path / "data"))
    index = store.rebuild()
    assert value("scitoken_issuer_permission_index_entries") == len(index)
    assert value("scitoken_issuer_permission_index_scanned_timestamp_seconds") == index.scanned_at
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))}
    age = families["scitoken_issuer_permission_index_age_seconds"].samples[0].value
    assert 0 <= age <= time.time() - index.scanned_at + 1


def test_ldap_errors_counted():
    """An LDAP server that cannot be reached: each failed attempt counts (one retry, then 503)."""
    before = value("scitoken_issuer_ldap_errors_total", kind="connection")
    source = LdapGroupSource(f"ldap://127.0.0.1:{closed_port()}", "ou=people,dc=x", "ou=groups,dc=x", timeout=1)
    with pytest.raises(GroupsUnavailable):
        source.lookup("alice")
    assert value("scitoken_issuer_ldap_errors_total", kind="connection") == before + 2


def test_idp_errors_counted():
    """An identity provider that cannot be reached counts as ``unavailable``."""
    before = value("scitoken_issuer_idp_errors_total", kind="unavailable")
    with pytest.raises(UpstreamUnavailable):
        UpstreamIdP(f"http://127.0.0.1:{closed_port()}", "c", "s", timeout=1).metadata()
    assert value("scitoken_issuer_idp_errors_total", kind="unavailable") == before + 1


def test_celery_task_outcomes_and_durations(app):
    """Task signals count outcomes and durations by task name, in the process that ran the task
    (here the web's, tasks run in process without REDIS_URL)."""
    ok = value("scitoken_issuer_celery_tasks_total", task="cleanup_expired", outcome="success")
    failed = value("scitoken_issuer_celery_tasks_total", task="exchange_idp_code", outcome="failure")
    durations = value("scitoken_issuer_celery_task_duration_seconds_count", task="cleanup_expired")
    dispatch(tasks.cleanup_expired)
    with pytest.raises(Exception):
        dispatch(tasks.exchange_idp_code, {}, {})  # no login state: the task raises
    assert value("scitoken_issuer_celery_tasks_total", task="cleanup_expired", outcome="success") == ok + 1
    assert value("scitoken_issuer_celery_tasks_total", task="exchange_idp_code", outcome="failure") == failed + 1
    assert value("scitoken_issuer_celery_task_duration_seconds_count", task="cleanup_expired") == durations + 1


def documented_names() -> set[str]:
    return set(re.findall(r"^\| `(scitoken_issuer_[a-z_]+)` \|", DOC.read_text(), re.MULTILINE))


def test_documented_names_are_the_exposed_names(client):
    """docs/metrics.md lists every metric ``/metrics`` exposes, and nothing else."""
    metrics.permission_index_loaded(time.time(), 1)  # the derived age appears once an index is known
    exposed = set()
    for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True)):
        if family.name.startswith("scitoken_issuer_"):
            exposed.add(family.name + ("_total" if family.type == "counter" else ""))
    assert exposed == documented_names()


@pytest.fixture
def protected(tmp_path):
    return make_app(tmp_path, METRICS_TOKEN=METRICS_TOKEN).test_client()


def test_metrics_open_without_token(client):
    """Unset ``METRICS_TOKEN``: anyone reaching the address reads the Prometheus text format."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    assert response.headers["Cache-Control"] == "no-store"


def test_metrics_token_required(protected):
    """RFC 6750 §3.1: no credentials, a bare challenge; a wrong token, ``invalid_token``; the token, 200."""
    missing = protected.get("/metrics")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert missing.get_json()["error"] == "invalid_token" and missing.headers["Cache-Control"] == "no-store"
    wrong = protected.get("/metrics", headers={"Authorization": "Bearer " + METRICS_TOKEN[:-1] + "x"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    assert "scitoken_issuer" not in wrong.get_data(as_text=True)
    basic = protected.get("/metrics", headers={"Authorization": "Basic " + METRICS_TOKEN})
    assert basic.status_code == 401
    right = protected.get("/metrics", headers={"Authorization": "Bearer " + METRICS_TOKEN})
    assert right.status_code == 200 and "scitoken_issuer_http_request_duration_seconds" in right.get_data(as_text=True)


def test_short_metrics_token_refused(tmp_path):
    """A guessable metrics token is a configuration error naming the variable."""
    from scitoken_issuer.settings import ConfigError
    with pytest.raises(ConfigError, match="METRICS_TOKEN"):
        make_app(tmp_path, METRICS_TOKEN="short")


def test_multiprocess_directory_preparation(tmp_path):
    """docs/metrics.md, "Processes": gunicorn's master empties the configured directory of an
    earlier run's values, or makes and exports a private one; a Celery worker never keeps one
    inherited from the web's environment; only the creating process removes a private one."""
    from scitoken_issuer.metrics_process import ENV, prepare_multiprocess_dir, remove_private_dir, worker_metrics_dir
    configured = tmp_path / "prom"
    configured.mkdir()
    (configured / "counter_123.db").write_bytes(b"old run")
    (configured / "keep.txt").write_text("not ours")
    environ = {ENV: str(configured)}
    assert prepare_multiprocess_dir(environ) is None
    assert [p.name for p in configured.iterdir()] == ["keep.txt"]

    environ = {}
    made = prepare_multiprocess_dir(environ)
    assert environ[ENV] == made and Path(made).is_dir()
    remove_private_dir(made)()
    assert not Path(made).exists()

    environ = {ENV: str(configured)}
    cleanup = worker_metrics_dir(served=False, environ=environ)
    assert ENV not in environ
    cleanup()
    environ = {ENV: str(configured)}
    cleanup = worker_metrics_dir(served=True, environ=environ)
    assert environ[ENV] != str(configured) and Path(environ[ENV]).is_dir()
    cleanup()
    assert not Path(environ[ENV]).exists() and configured.is_dir()
