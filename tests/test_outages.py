"""docs/errors.md "A dependency that is down is a 503": with Redis (the task queue) or the
database down, the endpoints that need them answer 503 with ``Retry-After`` — RFC 6749 §5.2 JSON
``temporarily_unavailable`` for APIs, a readable page for browser pages — never a 500, and what
was accepted before the outage is still there afterwards. Real ``redis-server`` and PostgreSQL."""

from __future__ import annotations

import re
import signal
import time

import pytest

from scitoken_issuer.extensions import db, runtime
from tests.support.dev_login import csrf_token, sign_in

from .conftest import basic_auth, make_app

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SECRET = "svc-secret-0123456789abcdef-0123456789abcdef"


def close(app) -> None:
    """Close what the app opened: database, Redis pool, Celery's broker connections."""
    with app.app_context():
        if runtime().redis is not None:
            runtime().redis.close()
        db.engine.dispose()
    app.extensions["celery"].close()


def assert_unavailable_json(response) -> None:
    """503, ``Retry-After``, RFC 6749 §5.2 ``temporarily_unavailable``, no-store, no traceback."""
    assert response.status_code == 503, response.get_data(as_text=True)[:500]
    assert response.headers["Retry-After"].isdigit()
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["error"] == "temporarily_unavailable" and body["error_description"]
    assert "Traceback" not in response.get_data(as_text=True)


def assert_unavailable_page(response, what: str) -> None:
    """503, ``Retry-After``, a readable HTML page naming what is down, with the page headers."""
    text = response.get_data(as_text=True)
    assert response.status_code == 503, text[:500]
    assert response.headers["Retry-After"].isdigit()
    assert response.mimetype == "text/html" and what in text and "Traceback" not in text
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


@pytest.fixture
def redis_app(tmp_path, redis_url):
    app = make_app(tmp_path, REDIS_URL=redis_url)
    with app.app_context():
        registration = runtime().clients.register(
            {"client_name": "cli", "grant_types": [DEVICE_GRANT], "scope": "openid",
             "token_endpoint_auth_method": "none"}, admin=True, source="admin")
        db.session.commit()
        app.config["test_client_id"] = registration.client.client_id
    yield app
    close(app)


def test_device_approval_with_the_task_queue_down(redis_app, redis_server):
    """docs/errors.md: approving a device code while Redis (the Celery broker) is down is a 503
    page with ``Retry-After``, not a 500; the code stays pending, and approving again once Redis
    is back is accepted."""
    client = redis_app.test_client()
    start = client.post("/auth/device/code", data={"client_id": redis_app.config["test_client_id"],
                                                   "scope": "openid"}).get_json()
    sign_in(client)
    page = client.get(f"/auth/device?user_code={start['user_code']}")
    assert page.status_code == 200
    form = {"user_code": start["user_code"], "decision": "approve", "csrf_token": csrf_token(page.get_data(as_text=True))}
    redis_server.stop()
    try:
        started = time.monotonic()
        assert_unavailable_page(client.post("/auth/device", data=form), "task queue")
        assert time.monotonic() - started < 5  # not after Celery's 20 reconnects to its result store
    finally:
        redis_server.start()
    again = client.post("/auth/device", data=form)
    assert again.status_code == 200 and "Approved" in again.get_data(as_text=True)


def test_database_down_is_503_everywhere_it_is_needed(tmp_path, own_postgres):
    """docs/errors.md: with the database down, every endpoint that needs it answers 503 with
    ``Retry-After`` (JSON or a page), ``/readyz`` names the database, and after the restart the
    client registered before the outage still works (nothing accepted before is lost)."""
    app = make_app(tmp_path, DATABASE_URL=own_postgres.url)
    try:
        client = app.test_client()
        created = client.post("/auth/client/registration", json={
            "redirect_uris": ["https://app.example.org/cb"], "grant_types": ["authorization_code", DEVICE_GRANT],
            "token_endpoint_auth_method": "none"}).get_json()
        management = {"Authorization": f"Bearer {created['registration_access_token']}"}
        own_postgres.process.stop(signal.SIGINT)
        assert_unavailable_json(client.post("/auth/client/registration", json={"redirect_uris": ["https://a.example/cb"]}))
        assert_unavailable_json(client.get(f"/auth/client/registration/{created['client_id']}", headers=management))
        assert_unavailable_json(client.post("/auth/device/code", data={"client_id": created["client_id"]}))
        assert_unavailable_json(client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": "x"},
                                            headers=basic_auth(created["client_id"], SECRET)))
        assert_unavailable_json(client.post("/auth/revoke", data={"token": "x", "client_id": created["client_id"]}))
        assert_unavailable_page(client.get("/auth/device?user_code=BBBBB-BBBBB"), "database")
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["Retry-After"].isdigit()
        assert ready.get_json()["checks"]["database"] == "unavailable"
        own_postgres._serve()
        assert client.get("/readyz").status_code == 200
        assert client.get(f"/auth/client/registration/{created['client_id']}", headers=management).status_code == 200
        device = client.post("/auth/device/code", data={"client_id": created["client_id"]})
        assert device.status_code == 200 and re.fullmatch(r"[A-Z]{5}-[A-Z]{5}", device.get_json()["user_code"])
    finally:
        close(app)


def test_accepted_device_decision_is_sent_again_once_when_no_worker_recorded_it(tmp_path, redis_url, monkeypatch):
    """docs/flows.md, flow 2: the approval the page accepted is recorded with the device code;
    when its task is lost (here: the queue is emptied, as a Redis restart without persistence
    does) a pending poll ``RESUME_AFTER`` seconds later sends it again, naming the same user and
    decision, and only one poll in that window does (the claim is one conditional UPDATE)."""
    import json

    import redis

    from scitoken_issuer.services import device as device_service

    monkeypatch.setattr(device_service, "RESUME_AFTER", 2)
    app = make_app(tmp_path, REDIS_URL=redis_url, DEVICE_POLL_INTERVAL=1)
    queue = redis.Redis.from_url(redis_url)
    try:
        with app.app_context():
            client_id = runtime().clients.register(
                {"client_name": "cli", "grant_types": [DEVICE_GRANT], "scope": "openid",
                 "token_endpoint_auth_method": "none"}, admin=True, source="admin").client.client_id
            db.session.commit()
        client = app.test_client()
        start = client.post("/auth/device/code", data={"client_id": client_id, "scope": "openid"}).get_json()
        sign_in(client)
        page = client.get(f"/auth/device?user_code={start['user_code']}")
        done = client.post("/auth/device", data={"user_code": start["user_code"], "decision": "approve",
                                                 "csrf_token": csrf_token(page.get_data(as_text=True))})
        assert done.status_code == 200
        assert queue.llen("celery") == 1
        queue.delete("celery")  # the task is lost; no worker runs here

        def poll():
            answer = client.post("/auth/token", data={"grant_type": DEVICE_GRANT, "client_id": client_id,
                                                      "device_code": start["device_code"]})
            assert answer.get_json()["error"] == "authorization_pending", answer.get_json()
        time.sleep(1.1)
        poll()
        assert queue.llen("celery") == 0  # not due yet
        time.sleep(1.1)
        poll()
        sent = [json.loads(message) for message in queue.lrange("celery", 0, -1)]
        assert [m["headers"]["task"] for m in sent] == ["workers.tasks.complete_device_authorization"]
        assert sent[0]["headers"]["argsrepr"].endswith(", 'alice', None, True)")  # development login: no identity
        time.sleep(1.1)
        poll()
        assert queue.llen("celery") == 1  # the next window has not begun
    finally:
        queue.close()
        close(app)
