"""What the busiest requests may not do (docs/revocation.md, benchmarks/README.md): a client-credentials
token, a pending RFC 8628 device poll (with Redis) and the discovery and JWKS documents are answered
without any database statement once the process holds fresh copies of the client and the keys; the
documents carry an ETag (a revalidation is a 304, RFC 9110 §13.1.2) and touch no session."""

from __future__ import annotations

import contextlib

import pytest
from sqlalchemy import event

from scitoken_issuer.extensions import db, runtime

from .conftest import basic_auth, make_app

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@contextlib.contextmanager
def statements():
    """Every SQL statement the app's engine runs inside the block."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.fixture
def steady(app):
    """Copies stay fresh for the whole test (the bound itself is tested in test_revocation_list.py)."""
    runtime().version.max_age = 600
    return app


def test_client_credentials_runs_no_statement(client, make_client, steady):
    """RFC 6749 §4.4: with the client and keys in hand, issuing reads and writes nothing."""
    registered, secret = make_client()
    auth = basic_auth(registered.client_id, secret)
    assert client.post("/auth/token", data={"grant_type": "client_credentials"}, headers=auth).status_code == 200
    with statements() as seen:
        for _ in range(3):
            response = client.post("/auth/token", data={"grant_type": "client_credentials"}, headers=auth)
            assert response.status_code == 200
    assert seen == []


def test_changed_client_is_seen_at_once_in_this_process(client, make_client, steady):
    """RFC 7592 §2.3: after a client is deleted, its credentials fail at the next request."""
    registered, secret = make_client()
    auth = basic_auth(registered.client_id, secret)
    assert client.post("/auth/token", data={"grant_type": "client_credentials"}, headers=auth).status_code == 200
    runtime().clients.delete(runtime().clients.get(registered.client_id))
    db.session.commit()
    response = client.post("/auth/token", data={"grant_type": "client_credentials"}, headers=auth)
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"


def device_client_auth() -> dict:
    """In an app context: copies kept fresh for the test, and a confidential device-flow client
    registered; its Basic authorization header."""
    runtime().version.max_age = 600
    registered = runtime().clients.register(
        {"grant_types": [DEVICE_GRANT], "scope": "openid", "token_endpoint_auth_method": "client_secret_basic"},
        admin=True, source="admin")
    db.session.commit()
    return basic_auth(registered.client.client_id, registered.client_secret)


def test_pending_device_poll_runs_no_statement(tmp_path, redis_url):
    """RFC 8628 §3.5: with Redis a pending poll is answered from Redis alone, and polling faster
    than the interval is slow_down with the interval 5 s longer."""
    app = make_app(tmp_path, REDIS_URL=redis_url, DEVICE_POLL_INTERVAL=5)
    with app.app_context():
        auth = device_client_auth()
        client = app.test_client()
        codes = [client.post("/auth/device/code", data={"scope": "openid"}, headers=auth).get_json()["device_code"]
                 for _ in range(2)]
        poll = {"grant_type": DEVICE_GRANT}
        first = client.post("/auth/token", data={**poll, "device_code": codes[0]}, headers=auth)
        assert first.get_json()["error"] == "authorization_pending"
        with statements() as seen:
            pending = client.post("/auth/token", data={**poll, "device_code": codes[1]}, headers=auth)
            fast = client.post("/auth/token", data={**poll, "device_code": codes[0]}, headers=auth)
        assert seen == []
        assert pending.status_code == 400 and pending.get_json()["error"] == "authorization_pending"
        assert fast.status_code == 400 and fast.get_json()["error"] == "slow_down"
        state = runtime().redis.hgetall(runtime().device._key(runtime().secrets.hash(codes[0])))
        assert state[b"interval"] == b"10"
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("with_redis", [True, False])
def test_pending_device_poll_opens_no_database_session(tmp_path, request, monkeypatch, with_redis):
    """RFC 8628 §3.5: a pending poll opens no ORM session (each request in its own app context, as
    in production): with Redis it is answered from Redis alone, without Redis its row is read and
    its pace recorded on a connection of their own, and the error answer has nothing to roll back."""
    settings = {"REDIS_URL": request.getfixturevalue("redis_url")} if with_redis else {}
    app = make_app(tmp_path, DEVICE_POLL_INTERVAL=5, **settings)
    with app.app_context():
        auth = device_client_auth()
    client = app.test_client()
    code = client.post("/auth/device/code", data={"scope": "openid"}, headers=auth).get_json()["device_code"]
    poll = {"grant_type": DEVICE_GRANT, "device_code": code}
    assert client.post("/auth/token", data=poll, headers=auth).get_json()["error"] == "authorization_pending"
    with app.app_context():
        registry = db.session.registry
    opened = []
    create = registry.createfunc
    monkeypatch.setattr(registry, "createfunc", lambda: opened.append(1) or create())
    response = client.post("/auth/token", data=poll, headers=auth)
    assert response.get_json()["error"] in ("authorization_pending", "slow_down")
    assert opened == []
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("path,max_age", [("/auth/certs", 3600), ("/.well-known/openid-configuration", 300)])
def test_documents_are_cached_bytes_with_etag(client, steady, path, max_age):
    """RFC 9111 §5.2.2.1 / RFC 9110 §13.1.2: a Cache-Control max-age and an ETag; If-None-Match
    gets 304 with no body; no statement once the key set is loaded."""
    first = client.get(path)
    assert first.status_code == 200 and first.is_json
    assert f"max-age={max_age}" in first.headers["Cache-Control"]
    etag = first.headers["ETag"]
    with statements() as seen:
        again = client.get(path)
        revalidated = client.get(path, headers={"If-None-Match": etag})
    assert seen == []
    assert again.get_data() == first.get_data() and again.headers["ETag"] == etag
    assert revalidated.status_code == 304 and revalidated.get_data() == b""


MACHINE_REQUESTS = [("GET", "/auth/certs", 200), ("GET", "/.well-known/openid-configuration", 200),
                    ("GET", "/healthz", 200), ("POST", "/auth/token", 401), ("POST", "/auth/introspect", 401),
                    ("POST", "/auth/revoke", 401), ("POST", "/auth/device/code", 401),
                    ("GET", "/auth/client/registration/some-client", 401), ("GET", "/auth/userinfo", 401)]


@pytest.mark.parametrize("method,path,status", MACHINE_REQUESTS)
def test_machine_endpoints_neither_read_nor_write_the_session(client, method, path, status, monkeypatch):
    """docs/architecture.md: machines never use the browser session, so the cookie is never
    verified (no signing serializer is built), none is set, and the answer does not vary by cookie."""
    from flask.sessions import SecureCookieSessionInterface

    def no_session_work(self, app):
        raise AssertionError("the session was opened")

    client.set_cookie("session", "a-session-cookie")
    monkeypatch.setattr(SecureCookieSessionInterface, "get_signing_serializer", no_session_work)
    response = client.open(path, method=method, data={"grant_type": "client_credentials"} if method == "POST" else None)
    assert response.status_code == status
    assert "Set-Cookie" not in response.headers
    assert "Cookie" not in response.headers.get("Vary", "")


def test_browser_pages_keep_the_session(client, monkeypatch):
    """The counterpart: the sign-in page does open the session (its CSRF token lives there)."""
    from flask.sessions import SecureCookieSessionInterface

    opened = []
    original = SecureCookieSessionInterface.get_signing_serializer
    monkeypatch.setattr(SecureCookieSessionInterface, "get_signing_serializer",
                        lambda self, app: opened.append(1) or original(self, app))
    assert client.get("/auth/login").status_code == 200
    assert opened


def test_new_key_changes_the_published_document(client, steady):
    """RFC 7517 §5: the cached key set is replaced when a key is added (the ETag changes)."""
    before = client.get("/auth/certs")
    runtime().keys.rotate()
    db.session.commit()
    runtime().keys._load(fresh=True)
    after = client.get("/auth/certs")
    assert after.headers["ETag"] != before.headers["ETag"]
    assert len(after.get_json()["keys"]) == len(before.get_json()["keys"]) + 1
