"""docs/architecture.md, transactions: services add and flush, the edge commits once; side effects
that must follow a commit run after it, and writes queued for the commit run in it; writes that
must outlive an error answer use a transaction of their own (docs/errors.md)."""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

import pytest
import redis
from sqlalchemy import event, func, select

from scitoken_issuer.extensions import after_commit, db, runtime, separate_transaction
from scitoken_issuer.models import DeviceCode, RefreshFamily, RefreshToken, UpstreamIdentity
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


@contextlib.contextmanager
def statements_run() -> Iterator[list[str]]:
    """The SQL text of every statement the app's engine runs inside the block."""
    statements: list[str] = []

    def record(_conn, _cursor, text, *_args):
        statements.append(text)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def stored_refresh_rows() -> tuple[int, int]:
    with separate_transaction() as session:  # what is committed, not what this session sees
        return (session.scalar(select(func.count()).select_from(RefreshFamily)),
                session.scalar(select(func.count()).select_from(RefreshToken)))


def test_new_refresh_family_is_written_only_when_the_transaction_commits(app):
    """docs/tokens.md "Cost of a refresh": a new family and its first token (``write_at_commit``)
    take no write until the commit, are dropped by a rollback and written once by a commit."""
    refresh = runtime().refresh
    with statements_run() as statements:
        refresh.issue(refresh.new_family("some-client", "alice", "openid offline_access", None))
    assert statements == []  # nothing written yet, no lock taken
    db.session.rollback()
    db.session.commit()
    assert stored_refresh_rows() == (0, 0)

    refresh.issue(refresh.new_family("some-client", "alice", "openid offline_access", None))
    db.session.commit()
    db.session.commit()
    assert stored_refresh_rows() == (1, 1)


def test_writes_at_commit_follow_savepoints_and_the_orm(app):
    """docs/architecture.md, transactions: a write queued in a savepoint that rolls back is
    dropped, one queued in a released savepoint waits for the outer commit; the ORM's pending
    rows (which a queued write may refer to) are written first."""
    refresh = runtime().refresh
    with pytest.raises(RuntimeError):
        with db.session.begin_nested():
            refresh.new_family("some-client", "alice", "openid", None)
            raise RuntimeError("undo the savepoint")
    with db.session.begin_nested():
        kept = refresh.new_family("some-client", "bob", "openid", None)
    assert stored_refresh_rows() == (0, 0)
    identity = UpstreamIdentity(issuer="https://idp.test", subject="carol-at-idp", username="carol",
                                created_at=1, last_login_at=1)
    db.session.add(identity)
    with statements_run() as statements:
        db.session.commit()
    assert [text.split()[:3] for text in statements] == [["INSERT", "INTO", "upstream_identities"],
                                                         ["INSERT", "INTO", "refresh_families"]]
    assert [row.subject for row in db.session.scalars(select(RefreshFamily))] == ["bob"]
    assert db.session.get(RefreshFamily, kept.id) is not None


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
