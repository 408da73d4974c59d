"""The shared-state version pushed through Redis pub/sub (docs/revocation.md, "How quickly every
process sees a change"), in process against a real redis-server: hot paths send Redis nothing
while the subscription is healthy, a writer returns only once every subscriber applied its change,
and a broken subscription or a stopped Redis falls back to reading the version per request."""

from __future__ import annotations

import contextlib
import logging
import time

import pytest
import redis

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.services import state_push
from scitoken_issuer.services.failure_limits import NAMESPACE as FAILURE_COUNTERS
from scitoken_issuer.services.state_version import StateVersion

from .conftest import basic_auth, make_app
from .support.processes import wait_until
from .support.redis_server import RedisServer, monitored

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture
def own_redis():
    """A redis-server of this test alone: no subscriber of another test's app is counted."""
    server = RedisServer().start()
    yield server
    server.destroy()


def beside_failure_counters(seen: list[str]) -> list[str]:
    """The commands that are not the failure counters' read of a client's flags (an MGET of lock
    flags and the known address, at most once a second per process, docs/security-web.md)."""
    return [command for command in seen
            if not (command.startswith("MGET ") and all(name.startswith(f"{FAILURE_COUNTERS}/")
                                                         for name in command.split()[1:]))]


def subscribed(app) -> None:
    """Wait until the app's process subscription is healthy (it starts on first use)."""
    with app.app_context():
        push = runtime().version.push
        wait_until(lambda: push.current() is not None, 10, "the state subscription")


def two_apps(tmp_path, url):
    """Two apps on one database and one Redis: two processes, as far as shared state goes."""
    first = make_app(tmp_path / "a", REDIS_URL=url, SHARED_STATE_MAX_AGE=3600)
    second = make_app(tmp_path / "b", REDIS_URL=url, SHARED_STATE_MAX_AGE=3600,
                      DATABASE_URL=first.config["SQLALCHEMY_DATABASE_URI"])
    return first, second


def register(app, **metadata):
    with app.app_context():
        metadata.setdefault("grant_types", ["client_credentials"])
        metadata.setdefault("scope", "compute.read")
        registration = runtime().clients.register(metadata, admin=True, source="admin")
        db.session.commit()
        return registration.client.client_id, registration.client_secret


def token(app, client_id, secret) -> str:
    response = app.test_client().post("/auth/token", data={"grant_type": "client_credentials"},
                                      headers=basic_auth(client_id, secret))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["access_token"]


def active(app, client_id, secret, access_token) -> bool:
    response = app.test_client().post("/auth/introspect", data={"token": access_token},
                                      headers=basic_auth(client_id, secret))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["active"]


def revoke(app, access_token) -> None:
    with app.app_context():
        claims = runtime().tokens.verify(access_token)
        runtime().revocations.revoke_token(claims["jti"], claims["exp"])
        db.session.commit()


def test_hot_paths_send_redis_nothing_while_subscribed(tmp_path, own_redis):
    """RFC 6749 §4.4 and RFC 7662 §2: with the subscription healthy, client credentials and
    introspection read the shared-state version from memory: no Redis command but the failure
    counters' read, at most once a second."""
    app = make_app(tmp_path, REDIS_URL=own_redis.url)
    client_id, secret = register(app)
    access_token = token(app, client_id, secret)
    subscribed(app)
    assert active(app, client_id, secret, access_token)  # copies loaded under the pushed version
    started = time.monotonic()
    with monitored(own_redis.url) as seen:
        for _ in range(5):
            token(app, client_id, secret)
            assert active(app, client_id, secret, access_token)
    assert beside_failure_counters(seen) == [] and len(seen) <= 1 + int(time.monotonic() - started)


def test_pending_device_poll_is_one_redis_round_trip(tmp_path, own_redis):
    """RFC 8628 §3.5: a pending poll, paced or too fast, is one Redis command beside the failure
    counters' read (the poll script: state, pace and slow_down together); the client comes
    from memory."""
    app = make_app(tmp_path, REDIS_URL=own_redis.url, DEVICE_POLL_INTERVAL=5)
    client_id, secret = register(app, grant_types=[DEVICE_GRANT], scope="openid",
                                 token_endpoint_auth_method="client_secret_basic")
    web, auth = app.test_client(), basic_auth(client_id, secret)
    codes = [web.post("/auth/device/code", data={"scope": "openid"}, headers=auth).get_json()["device_code"]
             for _ in range(2)]
    poll = {"grant_type": DEVICE_GRANT}
    assert web.post("/auth/token", data={**poll, "device_code": codes[0]}, headers=auth).status_code == 400
    subscribed(app)
    web.post("/auth/token", data={**poll, "device_code": "warm-up"}, headers=auth)  # client copy under the version
    with monitored(own_redis.url) as seen:
        pending = web.post("/auth/token", data={**poll, "device_code": codes[1]}, headers=auth)
        fast = web.post("/auth/token", data={**poll, "device_code": codes[0]}, headers=auth)
    assert pending.get_json()["error"] == "authorization_pending"
    assert fast.get_json()["error"] == "slow_down"
    polls = beside_failure_counters(seen)
    assert len(polls) == 2 and all(command.startswith("EVALSHA ") for command in polls), polls


def test_every_subscriber_has_applied_a_change_when_the_commit_returns(tmp_path, own_redis):
    """docs/revocation.md: the writer waits for every subscribed process's acknowledgement, so
    the other process reads a revocation from memory at its very next request."""
    first, second = two_apps(tmp_path, own_redis.url)
    client_id, secret = register(first)
    tokens = [token(first, client_id, secret) for _ in range(20)]
    for app in (first, second):
        subscribed(app)
        assert active(app, client_id, secret, tokens[0])
    for access_token in tokens:
        revoke(first, access_token)
        with second.app_context():
            assert runtime().version.push.current() == own_redis_version(own_redis)
        with monitored(own_redis.url) as seen:
            assert not active(second, client_id, secret, access_token)
        assert beside_failure_counters(seen) == []


@contextlib.contextmanager
def warnings_of(name: str):
    """The warning lines the named logger writes inside the block (the app's migrations reset the
    root logger's handlers, so pytest's caplog sees none)."""
    lines: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger(name).addHandler(handler)
    try:
        yield lines
    finally:
        logging.getLogger(name).removeHandler(handler)


def own_redis_version(server: RedisServer) -> bytes:
    client = redis.Redis.from_url(server.url)
    try:
        return client.get(StateVersion.KEY)
    finally:
        client.close()


def test_unacknowledged_change_waits_at_most_the_bound(tmp_path, own_redis, monkeypatch):
    """A subscriber that never acknowledges (a process stopped mid-way) delays the writer by the
    ack bound only, with a warning naming how many did not acknowledge."""
    monkeypatch.setattr(state_push, "ACK_TIMEOUT", 0.3)
    app = make_app(tmp_path, REDIS_URL=own_redis.url)
    client_id, secret = register(app)
    access_token = token(app, client_id, secret)
    subscribed(app)
    silent = redis.Redis.from_url(own_redis.url).pubsub()
    silent.subscribe(state_push.CHANNEL)
    assert silent.get_message(timeout=3)["type"] == "subscribe"
    try:
        with warnings_of(state_push.__name__) as warned:
            started = time.monotonic()
            revoke(app, access_token)
            waited = time.monotonic() - started
    finally:
        silent.close()
    assert 0.3 <= waited < 3
    assert warned == ["1 of 2 processes did not acknowledge a state change within 0.3 s"]
    assert not active(app, client_id, secret, access_token)


def test_broken_subscription_falls_back_then_recovers(tmp_path, own_redis, monkeypatch):
    """docs/revocation.md: once Redis drops the subscription (CLIENT KILL TYPE pubsub) the
    version is read per request, so a change made meanwhile is seen; then the process
    resubscribes and reads from memory again."""
    monkeypatch.setattr(state_push, "RETRY_FIRST", 1.0)  # the broken window outlasts the checks
    first, second = two_apps(tmp_path, own_redis.url)
    client_id, secret = register(first)
    access_token = token(first, client_id, secret)
    for app in (first, second):
        subscribed(app)
        assert active(app, client_id, secret, access_token)
    admin = redis.Redis.from_url(own_redis.url)
    try:
        assert admin.client_kill_filter(_type="pubsub") == 2
        with second.app_context():
            assert runtime().version.push.current() is None  # the close is unread on the socket
        revoke(first, access_token)  # reaches no subscriber
        with monitored(own_redis.url) as seen:
            assert not active(second, client_id, secret, access_token)
        assert beside_failure_counters(seen) == [f"GET {StateVersion.KEY}"]
        wait_until(lambda: admin.pubsub_numsub(state_push.CHANNEL)[0][1] == 2, 10, "both resubscribed")
    finally:
        admin.close()
    subscribed(second)
    other = token(first, client_id, secret)
    assert active(second, client_id, secret, other)
    with monitored(own_redis.url) as seen:
        assert active(second, client_id, secret, other)
    assert beside_failure_counters(seen) == []


def test_change_with_redis_stopped_neither_hangs_nor_fails(tmp_path, own_redis):
    """docs/revocation.md: with Redis down a revocation commits, this process sees it at once,
    another within SHARED_STATE_MAX_AGE; nothing raises."""
    first = make_app(tmp_path / "a", REDIS_URL=own_redis.url)
    second = make_app(tmp_path / "b", REDIS_URL=own_redis.url, SHARED_STATE_MAX_AGE=1,
                      DATABASE_URL=first.config["SQLALCHEMY_DATABASE_URI"])
    client_id, secret = register(first)
    access_token = token(first, client_id, secret)
    for app in (first, second):
        subscribed(app)
        assert active(app, client_id, secret, access_token)
    own_redis.stop()
    with warnings_of("scitoken_issuer.services.state_version") as warned:
        revoke(first, access_token)
    assert warned == ["state change not announced through Redis: ConnectionError"]
    assert not active(first, client_id, secret, access_token)
    wait_until(lambda: not active(second, client_id, secret, access_token), 3, "the age bound")


def test_subscription_is_started_again_after_a_fork(tmp_path, own_redis):
    """Threads do not survive a fork (gunicorn workers, Celery children): a process whose pid
    differs from the subscription's starts its own."""
    app = make_app(tmp_path, REDIS_URL=own_redis.url)
    subscribed(app)
    with app.app_context():
        push = runtime().version.push
        inherited = push.subscription()
        inherited.pid = -1  # as seen from a forked child
        assert push.subscription() is not inherited
        wait_until(lambda: push.current() is not None, 10, "the child's subscription")


def test_cli_revocation_publishes_without_subscribing(tmp_path, own_redis):
    """docs/revocation.md: ``tokens revoke`` (a short-lived process reading no copy) publishes
    its change, which the subscribed process has applied when the command returns, and never
    subscribes itself."""
    served, operator = two_apps(tmp_path, own_redis.url)
    client_id, secret = register(served)
    access_token = token(served, client_id, secret)
    subscribed(served)
    assert active(served, client_id, secret, access_token)
    done = operator.test_cli_runner().invoke(args=["tokens", "revoke", "--client", client_id])
    assert done.exit_code == 0, done.output
    with operator.app_context():
        assert runtime().version.push._subscription is None
    with monitored(own_redis.url) as seen:
        assert not active(served, client_id, secret, access_token)
    assert beside_failure_counters(seen) == []
