"""``GET /readyz`` (README, "Endpoints"): 200 when every dependency this deployment uses answers,
else 503 with ``Retry-After`` and which one is down."""

from __future__ import annotations

import pytest

from tests.conftest import make_app


@pytest.fixture
def storage(tmp_path):
    root = tmp_path / "storage"
    root.mkdir()
    return root


def test_ready_with_database_keys_and_storage(tmp_path, storage):
    app = make_app(tmp_path, POSIX_PATH=str(storage))
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 200
    assert answer.json == {"status": "ready", "checks": {"database": "ok", "schema": "ok",
                                                         "keys": "no signing key yet", "storage": "ok"}}


def test_storage_gone_is_not_ready(tmp_path, storage):
    """A host whose storage mount went away refuses every storage scope: not ready, named."""
    app = make_app(tmp_path, POSIX_PATH=str(storage))
    storage.rmdir()
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert answer.json["status"] == "unavailable" and answer.json["checks"]["storage"] == "unavailable"
    assert answer.json["checks"]["database"] == "ok"


def test_redis_down_is_not_ready(tmp_path, redis_server, redis_url):
    client = make_app(tmp_path, REDIS_URL=redis_url).test_client()
    assert client.get("/readyz").json["checks"]["redis"] == "ok"
    redis_server.stop()
    try:
        answer = client.get("/readyz")
    finally:
        redis_server.start()
    assert answer.status_code == 503 and answer.json["checks"]["redis"] == "unavailable"
