"""docs/architecture.md, transactions: services add and flush, the edge commits once; side effects
that must follow a commit run after it; writes that must outlive an error answer use a
transaction of their own (docs/errors.md)."""

from __future__ import annotations

import time

import pytest
import redis

from scitoken_issuer.extensions import after_commit, db, runtime, separate_transaction
from scitoken_issuer.models import DeviceCode
from scitoken_issuer.services.device import DeviceFlow

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture
def app_config(redis_url):
    return {"REDIS_URL": redis_url}


def test_after_commit_runs_only_when_the_transaction_commits(app):
    """A callback waits for the commit; a rollback drops it, and it never runs twice."""
    calls: list[str] = []
    after_commit(lambda: calls.append("dropped"))
    db.session.rollback()
    db.session.commit()
    assert calls == []
    after_commit(lambda: calls.append("kept"))
    assert calls == []
    db.session.commit()
    db.session.commit()
    assert calls == ["kept"]


def test_separate_transaction_outlives_the_request_rollback(app, make_client):
    """RFC 8628 §3.5: a slower interval is kept although the poll's answer is an error (rolled back)."""
    client, _ = make_client(grant_types=[DEVICE], token_endpoint_auth_method="none", scope="openid")
    flow = DeviceFlow(runtime().secrets, None, lifetime=600, interval=5)  # without Redis: the database
    flow.create(client.client_id, "openid", "device-code-1", "BCDFGHJKLM")
    db.session.commit()
    state = flow.poll_state("device-code-1")
    now = time.time()
    assert flow.too_fast(state, now) is False
    assert flow.too_fast(state, now + 1) is True
    db.session.rollback()  # what the edge does with the slow_down error answer
    row = db.session.get(DeviceCode, state.device_code_hash)
    assert row.interval == flow.interval + 5 and row.last_poll_at == int(now + 1)
    with separate_transaction() as session:
        assert session.get(DeviceCode, state.device_code_hash).interval == flow.interval + 5


def test_device_rows_and_decisions_are_announced_only_after_commit(app, make_client):
    """docs/flows.md, flow 2: Redis never says "pending" or "decided" for a row that was not committed."""
    client, _ = make_client(grant_types=[DEVICE], token_endpoint_auth_method="none", scope="openid")
    rt = runtime()
    store = redis.Redis.from_url(rt.settings.redis_url)
    row = rt.device.create(client.client_id, "openid", "device-code-2", "BCDFGHJKLN")
    key = f"scitoken-issuer:device:{row.device_code_hash}"
    db.session.flush()
    assert not store.exists(key)
    db.session.rollback()
    assert not store.exists(key)  # the rolled-back row is never announced

    row = rt.device.create(client.client_id, "openid", "device-code-3", "BCDFGHJKLP")
    key, digest = f"scitoken-issuer:device:{row.device_code_hash}", row.device_code_hash
    db.session.commit()
    assert store.hget(key, "decided") == b"0"

    assert rt.device_decisions.complete(digest, "alice", None, approved=False) == "denied"
    assert store.hget(key, "decided") == b"0"  # recorded, not yet committed
    db.session.rollback()
    assert store.hget(key, "decided") == b"0"
    assert db.session.get(DeviceCode, digest).status == "pending"

    assert rt.device_decisions.complete(digest, "alice", None, approved=False) == "denied"
    db.session.commit()
    assert store.hget(key, "decided") == b"1"
    assert db.session.get(DeviceCode, digest).status == "denied"
