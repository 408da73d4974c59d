"""RFC 6749 §2.3 client authentication and §5.2 error responses at the token endpoint.

Every failure is RFC-shaped JSON (``error`` and ``error_description``) with ``Cache-Control:
no-store``, and never a 500 (docs/errors.md).
"""

from __future__ import annotations

import base64

import pytest

from .conftest import basic_auth

TOKEN = "/auth/token"
GRANT = {"grant_type": "client_credentials"}


def assert_error(response, status: int, error: str) -> dict:
    """RFC 6749 §5.2: the status, a JSON object with ``error`` and ``error_description``, no-store."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == error, body
    assert isinstance(body.get("error_description"), str) and body["error_description"]
    assert response.headers["Cache-Control"] == "no-store"
    assert "access_token" not in body
    return body


def raw_basic(payload: bytes) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(payload).decode()}


@pytest.fixture
def confidential(make_client):
    return make_client()


def test_unknown_client_id(client, confidential):
    """RFC 6749 §5.2: an unknown client is ``invalid_client``, 401 when Basic was used — never 500."""
    _, secret = confidential
    response = client.post(TOKEN, data=GRANT, headers=basic_auth("no-such-client", secret))
    assert_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_unknown_client_id_in_form(client):
    """RFC 6749 §5.2: client_secret_post with an unknown client id; 401 is a MAY without a Basic header."""
    response = client.post(TOKEN, data={**GRANT, "client_id": "no-such-client", "client_secret": "x"})
    assert_error(response, response.status_code, "invalid_client")
    assert response.status_code in (400, 401)


@pytest.mark.parametrize("path", [TOKEN, "/auth/introspect", "/auth/revoke"])
def test_basic_challenge_names_the_realm(client, confidential, path):
    """RFC 6749 §5.2: a failed authentication through the Authorization header is 401 with a
    ``WWW-Authenticate`` of the scheme used; RFC 7617 §2: a Basic challenge has a ``realm``."""
    registered, secret = confidential
    response = client.post(path, data={**GRANT, "token": "x"}, headers=basic_auth(registered.client_id, secret + "x"))
    assert_error(response, 401, "invalid_client")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Basic realm="http://issuer.test", error="invalid_client"'), challenge


@pytest.mark.parametrize("client_id", ["", "x" * 129, "x" * 5000, "é", "a\x00b", "../../etc"])
def test_odd_client_ids(client, client_id):
    """RFC 6749 §5.2: odd or oversized client ids are simply unknown clients."""
    response = client.post(TOKEN, data=GRANT, headers=raw_basic(f"{client_id}:secret".encode()))
    assert_error(response, 401, "invalid_client")


def test_wrong_secret(client, confidential):
    """RFC 6749 §2.3.1: a wrong secret fails authentication."""
    registered, secret = confidential
    response = client.post(TOKEN, data=GRANT, headers=basic_auth(registered.client_id, secret + "x"))
    assert_error(response, 401, "invalid_client")


def test_empty_secret(client, confidential):
    registered, _ = confidential
    response = client.post(TOKEN, data=GRANT, headers=basic_auth(registered.client_id, ""))
    assert_error(response, 401, "invalid_client")


def test_secret_of_another_client(client, make_client):
    """RFC 6749 §2.3.1: a valid secret only authenticates its own client."""
    first, _ = make_client()
    _, other_secret = make_client()
    response = client.post(TOKEN, data=GRANT, headers=basic_auth(first.client_id, other_secret))
    assert_error(response, 401, "invalid_client")


def test_basic_client_may_not_use_post(client, confidential):
    """RFC 7591 §2 ``token_endpoint_auth_method``: a client_secret_basic client can't authenticate in the body."""
    registered, secret = confidential
    response = client.post(TOKEN, data={**GRANT, "client_id": registered.client_id, "client_secret": secret})
    assert_error(response, 401, "invalid_client")


def test_post_client_may_not_use_basic(client, make_client):
    """RFC 7591 §2: a client_secret_post client can't authenticate with HTTP Basic."""
    registered, secret = make_client(token_endpoint_auth_method="client_secret_post")
    response = client.post(TOKEN, data=GRANT, headers=basic_auth(registered.client_id, secret))
    assert_error(response, 401, "invalid_client")


def test_no_credentials(client):
    """RFC 6749 §3.2.1: confidential grants need client authentication."""
    assert_error(client.post(TOKEN, data=GRANT), 401, "invalid_client")


def test_two_authentication_methods_are_not_both_accepted(client, make_client):
    """RFC 6749 §2.3: the client MUST NOT use more than one method; a wrong Basic is not rescued by the body."""
    registered, secret = make_client(token_endpoint_auth_method="client_secret_post")
    response = client.post(TOKEN, data={**GRANT, "client_id": registered.client_id, "client_secret": secret + "x"},
                           headers=basic_auth(registered.client_id, secret))
    assert_error(response, 401, "invalid_client")


def test_basic_header_does_not_fall_through_to_the_body(client, make_client):
    """RFC 6749 §2.3: a Basic header that does not authenticate (another client with a wrong
    secret) is not rescued by client_secret_post credentials in the body."""
    registered, secret = make_client(token_endpoint_auth_method="client_secret_post")
    other, _ = make_client()
    response = client.post(TOKEN, data={**GRANT, "client_id": registered.client_id, "client_secret": secret},
                           headers=basic_auth(other.client_id, "wrong"))
    body = assert_error(response, 401, "invalid_client")
    assert "one method" in body["error_description"]
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")


@pytest.mark.parametrize("body_id", ["same", "other"])
def test_client_id_in_the_body_beside_basic(client, make_client, body_id):
    """RFC 6749 §2.3.1: a Basic client may also send its own ``client_id`` in the body; a body
    ``client_id`` naming another client is ``invalid_client`` (one request, one client)."""
    registered, secret = make_client()
    other, _ = make_client()
    named = registered.client_id if body_id == "same" else other.client_id
    response = client.post(TOKEN, data={**GRANT, "client_id": named}, headers=basic_auth(registered.client_id, secret))
    if body_id == "same":
        assert response.status_code == 200, response.get_data(as_text=True)
    else:
        assert_error(response, 401, "invalid_client")


@pytest.mark.parametrize("header", [
    "Basic !!!not-base64!!!",
    "Basic " + base64.b64encode(b"no-colon-here").decode(),
    "Basic " + base64.b64encode(b"\xff\xfe:\xfa").decode(),  # not UTF-8
    "Basic " + base64.b64encode(b"\xc3(:secret").decode(),  # invalid UTF-8 sequence
    "Basic ",
    "Basic",
    "Bearer abc",
    "Basic " + "A" * 10000,
    "Basic " + base64.b64encode(b"%zz:%zz").decode(),  # bad percent-encoding (RFC 6749 §2.3.1)
    "Basic " + base64.b64encode(b"a\x00:b\x00").decode(),
])
def test_malformed_basic_header(client, header):
    """RFC 7617 / RFC 6749 §2.3.1: a malformed Basic header is ``invalid_client``, never a 500."""
    response = client.post(TOKEN, data=GRANT, headers={"Authorization": header})
    assert_error(response, 401, "invalid_client")


def test_missing_grant_type(client, confidential):
    """RFC 6749 §5.2 ``invalid_request``: the request is missing a required parameter."""
    registered, secret = confidential
    response = client.post(TOKEN, data={"scope": "compute.read"}, headers=basic_auth(registered.client_id, secret))
    body = assert_error(response, 400, "invalid_request")
    assert "grant_type" in body["error_description"]


@pytest.mark.parametrize("grant_type", ["password", "implicit", "urn:example:nope", "é" * 50, "x" * 5000])
def test_unsupported_grant_type(client, confidential, grant_type):
    """RFC 6749 §5.2 ``unsupported_grant_type`` (the password grant is not offered at all)."""
    registered, secret = confidential
    response = client.post(TOKEN, data={"grant_type": grant_type}, headers=basic_auth(registered.client_id, secret))
    body = assert_error(response, 400, "unsupported_grant_type")
    assert len(body["error_description"]) < 1000


def test_get_is_not_allowed(client):
    """RFC 6749 §3.2: the token endpoint only takes POST."""
    response = client.get(TOKEN, query_string=GRANT)
    assert_error(response, 405, "invalid_request")


@pytest.mark.parametrize("data,content_type", [
    (b"\x00\x01\x02\xff\xfe", "application/x-www-form-urlencoded"),
    (b"grant_type&&&===&%zz%", "application/x-www-form-urlencoded"),
    (b"%ff%fe=%ff", "application/x-www-form-urlencoded"),
    (b"<xml/>", "text/xml"),
    (b"", "application/x-www-form-urlencoded"),
    (b"--x\r\nnot multipart", "multipart/form-data; boundary=x"),
])
def test_form_body_garbage(client, confidential, data, content_type):
    """RFC 6749 §3.2 (form-encoded body): garbage is a 4xx with an RFC error, never a 500."""
    registered, secret = confidential
    response = client.post(TOKEN, data=data, content_type=content_type,
                           headers=basic_auth(registered.client_id, secret))
    assert 400 <= response.status_code < 500
    assert_error(response, response.status_code, response.get_json()["error"])


def test_json_body_instead_of_form(client, confidential):
    """RFC 6749 §3.2: parameters are form-encoded; a JSON body carries no grant_type."""
    registered, secret = confidential
    response = client.post(TOKEN, json={"grant_type": "client_credentials"},
                           headers=basic_auth(registered.client_id, secret))
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize("field", ["scope", "client_id", "client_secret", "audience", "grant_type", "junk"])
def test_huge_form_values(client, confidential, field):
    """docs/errors.md: a huge value is a clear 4xx (413 above the 64 KiB body limit)."""
    registered, secret = confidential
    response = client.post(TOKEN, data={**GRANT, field: "x" * 70_000},
                           headers=basic_auth(registered.client_id, secret))
    assert_error(response, 413, "invalid_request")


@pytest.mark.parametrize("field", ["scope", "client_id", "client_secret", "audience"])
def test_large_but_allowed_form_values(client, make_client, field):
    """docs/errors.md: a large value under the body limit is refused by validation, never a 500."""
    registered, secret = make_client(token_endpoint_auth_method="client_secret_post")
    form = {**GRANT, "client_id": registered.client_id, "client_secret": secret, field: "x" * 30_000}
    response = client.post(TOKEN, data=form)
    assert 400 <= response.status_code < 500
    assert_error(response, response.status_code, response.get_json()["error"])


def test_repeated_parameters(client, confidential):
    """RFC 6749 §3.2: request parameters MUST NOT be included more than once."""
    registered, secret = confidential
    response = client.post(TOKEN, data="grant_type=client_credentials&grant_type=client_credentials",
                           content_type="application/x-www-form-urlencoded",
                           headers=basic_auth(registered.client_id, secret))
    assert_error(response, 400, "invalid_request")


def test_failures_do_not_leak_the_secret(client, confidential, caplog):
    """docs/errors.md: no secret in any log line, also on failed authentication."""
    registered, secret = confidential
    with caplog.at_level("DEBUG"):
        client.post(TOKEN, data=GRANT, headers=basic_auth(registered.client_id, secret + "x"))
        client.post(TOKEN, data={**GRANT, "client_id": registered.client_id, "client_secret": secret})
    assert not any(secret in record.getMessage() for record in caplog.records)
