"""Device access token requests (RFC 8628 §3.4–3.5) that name a device code the issuer cannot
use for this client: RFC 6749 §5.2 errors. See docs/conformance.md, "Token requests"."""

from __future__ import annotations

import pytest

from scitoken_issuer.extensions import db, runtime

from .conftest import make_app
from .support.user_flows import DEVICE_GRANT, device_start


@pytest.fixture
def issuer(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        ids = []
        for name in ("laptop", "other tool"):
            registration = runtime().clients.register(
                {"client_name": name, "grant_types": [DEVICE_GRANT], "scope": "openid storage.read:/",
                 "token_endpoint_auth_method": "none"}, admin=False, source="dynamic")
            ids.append(registration.client.client_id)
        db.session.commit()
        app.config["test_client_ids"] = ids
    yield app
    with app.app_context():
        db.engine.dispose()


def poll(client, client_id: str, **form):
    return client.post("/auth/token", data={"grant_type": DEVICE_GRANT, "client_id": client_id, **form})


def test_unknown_or_foreign_device_code_is_invalid_grant(issuer):
    """RFC 6749 §5.2: a grant that is "invalid ... or was issued to another client" is
    ``invalid_grant``; ``unauthorized_client`` would say this client may not use the device grant
    (it may) and ``invalid_request`` that the request is malformed (it is not)."""
    client = issuer.test_client()
    mine, other = issuer.config["test_client_ids"]
    status, start = device_start(client, mine, "openid")
    assert status == 200, start
    for client_id, device_code in ((other, start["device_code"]), (mine, "not-a-device-code")):
        response = poll(client, client_id, device_code=device_code)
        body = response.get_json()
        assert response.status_code == 400 and body["error"] == "invalid_grant", body
        assert body["error_description"] and response.headers["Cache-Control"] == "no-store"
    assert poll(client, mine, device_code=start["device_code"]).get_json()["error"] == "authorization_pending"
    missing = poll(client, mine)
    assert missing.status_code == 400 and missing.get_json()["error"] == "invalid_request"
