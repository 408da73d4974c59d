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


def test_code_of_a_deleted_client_is_not_valid_on_the_verification_page(issuer):
    """RFC 7592 §2.3 / RFC 8628 §3.3: once its client is deleted, a pending user code is no
    longer one the user can approve: the verification page says the code is not valid (it was a
    500), before and after sign-in, and approving it is refused the same way."""
    from .support.dev_login import csrf_token, sign_in

    client = issuer.test_client()
    mine, _other = issuer.config["test_client_ids"]
    _status, start = device_start(client, mine, "openid")
    sign_in(client)
    page = client.get(f"/auth/device?user_code={start['user_code']}")
    assert page.status_code == 200
    with issuer.app_context():
        runtime().clients.delete(runtime().clients.get(mine))
        db.session.commit()
    again = client.get(f"/auth/device?user_code={start['user_code']}")
    assert again.status_code == 400 and "not valid" in again.get_data(as_text=True), again.get_data(as_text=True)
    approval = client.post("/auth/device", data={"user_code": start["user_code"], "decision": "approve",
                                                 "csrf_token": csrf_token(page.get_data(as_text=True))})
    assert approval.status_code == 400 and "not valid" in approval.get_data(as_text=True)


def test_first_decision_on_the_verification_page_stands(issuer):
    """RFC 8628 §3.3: one user decision per code. A second submit of the page (a double click, a
    reload that re-posts, a second tab, the back button) was taken as a new decision: Deny in a
    second tab after Approve was accepted ("You denied") and raced the approval, and a reload
    said the code was "not valid" and counted as a wrong code. The first decision stands and the
    page says so; the device gets its tokens."""
    from .support.dev_login import csrf_token, sign_in

    client = issuer.test_client()
    mine, _other = issuer.config["test_client_ids"]
    _status, start = device_start(client, mine, "openid")
    sign_in(client)
    page = client.get(f"/auth/device?user_code={start['user_code']}")
    form = {"user_code": start["user_code"], "csrf_token": csrf_token(page.get_data(as_text=True))}
    first = client.post("/auth/device", data={**form, "decision": "approve"})
    assert first.status_code == 200 and "You approved" in first.get_data(as_text=True)
    for decision in ("approve", "deny"):  # a reload, then the other tab's Deny
        again = client.post("/auth/device", data={**form, "decision": decision})
        text = again.get_data(as_text=True)
        assert again.status_code == 200 and "You already approved" in text, text
    back = client.get(f"/auth/device?user_code={start['user_code'].lower()}")
    assert back.status_code == 200 and "You already approved" in back.get_data(as_text=True)
    assert 'id="approve"' not in back.get_data(as_text=True)
    tokens = poll(client, mine, device_code=start["device_code"]).get_json()
    assert "access_token" in tokens, tokens
    # another user with the code learns nothing: the code is not valid for them
    other = issuer.test_client()
    sign_in(other, "bob", "bob-dev-password")
    stranger = other.get(f"/auth/device?user_code={start['user_code']}")
    assert stranger.status_code == 400 and "not valid" in stranger.get_data(as_text=True)


def test_approving_a_page_opened_before_a_sign_out_says_what_to_do(issuer):
    """A consent page opened before signing out (the "Not you?" button, another tab) or more than
    an hour ago: its form's CSRF token no longer matches. The page said only "The CSRF session
    token is missing."; it now says nothing was done and to reload, still 400 and still HTML."""
    from .support.dev_login import csrf_token, sign_in

    client = issuer.test_client()
    mine, _other = issuer.config["test_client_ids"]
    _status, start = device_start(client, mine, "openid")
    sign_in(client)
    page = client.get(f"/auth/device?user_code={start['user_code']}")
    token = csrf_token(page.get_data(as_text=True))
    assert client.post("/auth/logout", data={"csrf_token": token}).status_code in (200, 302)
    stale = client.post("/auth/device", data={"user_code": start["user_code"], "decision": "approve",
                                              "csrf_token": token})
    text = stale.get_data(as_text=True)
    assert stale.status_code == 400 and stale.mimetype == "text/html", text
    assert "nothing was done" in text and "reload the page" in text and "CSRF" not in text, text
    assert poll(client, mine, device_code=start["device_code"]).get_json()["error"] == "authorization_pending"
