"""docs/errors.md "bad input of any kind gets a clear 4xx, never a 500": a sweep over every endpoint of the
core with malformed JSON, wrong types, huge bodies (> MAX_CONTENT_LENGTH 64 KiB → 413), NUL bytes
and unicode garbage; every error is RFC 6749 §5.2 JSON (``error``, ``error_description``)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import ADMIN_TOKEN, basic_auth

REG = "/auth/client/registration"
POST_ENDPOINTS = ["/auth/token", "/auth/introspect", "/auth/revoke", REG]
GARBAGE_STRINGS = ["", "\x00", "a\x00b", "é", "\ud7ff\ue000", "🙂" * 50, "\"'<>\\", "%00", "%ff%fe", "x" * 4000,
                   "\r\n\r\nX-Injected: 1", "../../../etc/passwd", "null", "[]", "{}"]


def assert_rfc_error(response, status: int | None = None) -> dict:
    """A 4xx with ``{"error", "error_description"}`` and no-store (RFC 6749 §5.2, docs/errors.md)."""
    text = response.get_data(as_text=True)
    assert 400 <= response.status_code < 500, (response.status_code, text[:500])
    if status is not None:
        assert response.status_code == status, text[:500]
    assert response.mimetype == "application/json", text[:500]
    body = response.get_json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]
    assert isinstance(body.get("error_description"), str) and body["error_description"]
    assert response.headers.get("Cache-Control") == "no-store"
    assert "Traceback" not in text
    return body


def assert_not_server_error(response) -> None:
    """Success is fine (e.g. RFC 7662 ``{"active": false}``); a 4xx must be RFC-shaped; never 5xx."""
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    if response.status_code >= 400:
        assert_rfc_error(response)


@pytest.fixture
def registered(make_client):
    return make_client()


@pytest.mark.parametrize("path", ["/auth/token", "/auth/introspect", "/auth/revoke"])
def test_body_over_limit_is_413(client, path):
    """docs/errors.md with MAX_CONTENT_LENGTH 64 KiB: a larger form body is 413, not processed.
    (Registration takes JSON only; a form body there is refused unread as not JSON, a 400.)"""
    response = client.post(path, data={"token": "x" * 70_000, "grant_type": "client_credentials"})
    assert_rfc_error(response, 413)


@pytest.mark.parametrize("path", POST_ENDPOINTS)
def test_json_over_limit_is_413(client, path):
    response = client.post(path, json={"client_name": "x" * 70_000})
    assert_rfc_error(response, 413)


@pytest.mark.parametrize("path", POST_ENDPOINTS)
@pytest.mark.parametrize("data,content_type", [
    (b"{not json", "application/json"),
    (b"\x00\x00\x00", "application/json"),
    (b"\xff\xfe\xfd", "application/x-www-form-urlencoded"),
    (b"a=\x00&b=%00&token=%00&grant_type=%00", "application/x-www-form-urlencoded"),
    ("token=é&grant_type=🙂&scope=ü".encode(), "application/x-www-form-urlencoded"),
    (b"[1,2,3]", "application/json"),
    (b"<?xml version='1.0'?><a/>", "application/xml"),
    (b"--b\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nx\r\n", "multipart/form-data; boundary=b"),
    (b"x", "multipart/form-data"),  # no boundary
])
def test_garbage_bodies(client, path, data, content_type):
    """docs/errors.md: garbage of any content type is never a 5xx."""
    assert_not_server_error(client.post(path, data=data, content_type=content_type))


@pytest.mark.parametrize("path", ["/auth/token", "/auth/introspect", "/auth/revoke"])
@pytest.mark.parametrize("value", GARBAGE_STRINGS)
def test_garbage_form_values_with_valid_client(client, registered, path, value):
    """docs/errors.md: an authenticated client sending garbage in every parameter gets 2xx/4xx, never 5xx."""
    client_obj, secret = registered
    form = {"grant_type": "client_credentials", "scope": value, "audience": value, "token": value,
            "token_type_hint": value}
    assert_not_server_error(client.post(path, data=form, headers=basic_auth(client_obj.client_id, secret)))
    assert_not_server_error(client.post(path, data={**form, "grant_type": value},
                                        headers=basic_auth(client_obj.client_id, secret)))


@pytest.mark.parametrize("value", GARBAGE_STRINGS)
def test_garbage_credentials(client, value):
    """RFC 6749 §2.3.1: garbage client ids and secrets are ``invalid_client``, never 5xx."""
    for headers, form in ((basic_auth(value, value), {}), ({}, {"client_id": value, "client_secret": value})):
        response = client.post("/auth/token", data={"grant_type": "client_credentials", **form}, headers=headers)
        assert_not_server_error(response)
        assert response.status_code >= 400


FORM = "application/x-www-form-urlencoded"
#: per form endpoint, a request that would succeed (or get its own error) but for the repeat
REPEATED = [
    ("/auth/token", "grant_type=client_credentials&grant_type=client_credentials", "grant_type"),
    ("/auth/token", "grant_type=client_credentials&scope=storage.read:/data&scope=compute.read", "scope"),
    ("/auth/token", "grant_type=client_credentials&audience=https://a.example&audience=https://b.example", "audience"),
    ("/auth/introspect", "token=one&token=two", "token"),
    ("/auth/revoke", "token=one&token=two", "token"),
    ("/auth/device/code", "scope=openid&scope=profile", "scope"),
]


@pytest.mark.parametrize("path,body,name", REPEATED)
def test_form_endpoints_refuse_repeated_parameters(client, registered, path, body, name):
    """RFC 6749 §3.1/§3.2: parameters MUST NOT be included more than once — ``invalid_request``
    naming it, never the first value silently taken (RFC 7662 §2.1, RFC 7009 §2.1, RFC 8628 §3.1
    use the same form encoding)."""
    client_obj, secret = registered
    response = client.post(path, data=body, content_type=FORM, headers=basic_auth(client_obj.client_id, secret))
    error = assert_rfc_error(response, 400)
    assert error["error"] == "invalid_request" and name in error["error_description"], error


@pytest.mark.parametrize("path,query,body", [
    ("/auth/token", "client_secret=SECRET", "grant_type=client_credentials"),
    ("/auth/token", "grant_type=client_credentials", ""),
    ("/auth/token", "scope=compute.read", "grant_type=client_credentials"),
    ("/auth/introspect", "token=TOKEN", ""),
    ("/auth/revoke", "token=TOKEN", ""),
])
def test_form_endpoints_refuse_parameters_in_the_uri(client, registered, path, query, body):
    """RFC 6749 §2.3.1 (client credentials MUST NOT be in the request URI) and §3.2 (parameters
    in the body): a query string is ``invalid_request``, not read, and gets no token or answer."""
    client_obj, secret = registered
    headers = basic_auth(client_obj.client_id, secret)
    token = client.post("/auth/token", data={"grant_type": "client_credentials"}, headers=headers).get_json()
    query = query.replace("SECRET", secret).replace("TOKEN", token["access_token"])
    response = client.post(f"{path}?{query}", data=body, content_type=FORM, headers=headers)
    error = assert_rfc_error(response, 400)
    assert error["error"] == "invalid_request" and "URI" in error["error_description"]
    assert client.post("/auth/introspect", data={"token": token["access_token"]}, headers=headers).get_json()["active"]


@pytest.mark.parametrize("path", ["/auth/token", "/auth/introspect", "/auth/revoke", "/auth/device/code"])
@pytest.mark.parametrize("kind", ["json", "multipart"])
def test_form_endpoints_want_a_form_body(client, registered, path, kind):
    """RFC 6749 §3.2 (and RFC 7662 §2.1, RFC 7009 §2.1, RFC 8628 §3.1): the parameters are an
    ``application/x-www-form-urlencoded`` body; JSON or multipart is ``invalid_request`` saying so,
    not read as if nothing was sent, nor accepted."""
    client_obj, secret = registered
    fields = {"grant_type": "client_credentials", "token": "x", "scope": "compute.read"}
    kwargs = {"json": fields} if kind == "json" else {"data": fields, "content_type": "multipart/form-data"}
    response = client.post(path, headers=basic_auth(client_obj.client_id, secret), **kwargs)
    error = assert_rfc_error(response, 400)
    assert error["error"] == "invalid_request" and FORM in error["error_description"], error


@pytest.mark.parametrize("path", ["/auth/token", "/auth/introspect", "/auth/revoke", "/auth/device/code"])
def test_form_body_that_is_not_utf8(client, registered, path):
    """docs/errors.md, "Form endpoints": a body that is not UTF-8 is named as such, not answered as if
    a parameter were missing."""
    client_obj, secret = registered
    response = client.post(path, data=b"grant_type=client_credentials&token=x&scope=\xff",
                           content_type=FORM, headers=basic_auth(client_obj.client_id, secret))
    error = assert_rfc_error(response, 400)
    assert error["error"] == "invalid_request" and "not a UTF-8" in error["error_description"], error


@pytest.mark.parametrize("body", [
    {"client_name": 42}, {"client_name": None}, {"client_name": ["a"]}, {"client_name": {"a": 1}},
    {"redirect_uris": [None]}, {"redirect_uris": [42]}, {"redirect_uris": [{"a": 1}]}, {"redirect_uris": {}},
    {"redirect_uris": ["http://127.0.0.1/\x00"]}, {"redirect_uris": ["https://é.example.org/cb"]},
    {"redirect_uris": ["https://a.example.org/\"cb\\"]}, {"redirect_uris": ["https://" + "a" * 3000]},
    {"redirect_uris": ["https://a.example.org/cb"] * 100},
    {"grant_types": [None]}, {"grant_types": [42]}, {"grant_types": {}}, {"grant_types": ["é"]},
    {"grant_types": ["\x00"]}, {"grant_types": ["refresh_token"], "scope": "é"},
    {"grant_types": ["refresh_token"], "scope": "\x00"}, {"grant_types": ["refresh_token"], "scope": ["a"]},
    {"grant_types": ["refresh_token"], "scope": "storage.read:/\"\\"},
    {"grant_types": ["refresh_token"], "token_endpoint_auth_method": 1},
    {"grant_types": ["refresh_token"], "token_endpoint_auth_method": "é"},
    {"grant_types": ["refresh_token"], "token_profile": ["wlcg"]},
    {"grant_types": ["refresh_token"], "response_types": "code"},
    {"grant_types": ["refresh_token"], "client_id": "chosen"}, {"grant_types": ["refresh_token"], "jwks": "x"},
    {"grant_types": ["refresh_token"], "software_statement": "a.b.c"},
    {"\x00": "\x00"}, {"é": "é"}, {"": ""},
])
def test_registration_wrong_types(client, body):
    """RFC 7591 §3.2.2: wrong types and garbage metadata are ``invalid_*`` 400s (or accepted when
    harmless), never a 5xx."""
    response = client.post(REG, json=body)
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        assert_rfc_error(response)


@pytest.mark.parametrize("body", [{"client_name": 42}, {"grant_types": [None]}, {"redirect_uris": [42]}])
def test_admin_registration_wrong_types(client, body):
    """RFC 7591 §3.2.2 for the administrator too."""
    response = client.post(REG, json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert_rfc_error(response, 400)


@pytest.mark.parametrize("client_id", ["unknown", "é", "%00", "x" * 3000, "a%2Fb"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize("token", [None, "garbage", "é", ADMIN_TOKEN])
def test_client_configuration_garbage(client, client_id, method, token):
    """RFC 7592 §2: an unknown client or a bad registration access token is a 4xx, never a 5xx."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kwargs = {"json": {"client_name": "x"}} if method == "PUT" else {}
    response = client.open(f"{REG}/{client_id}", method=method, headers=headers, **kwargs)
    assert_rfc_error(response)


def test_client_configuration_put_garbage(client):
    """RFC 7592 §2.2: a PUT with garbage JSON for a real client is 400, and the client is unchanged."""
    created = client.post(REG, json={"grant_types": ["refresh_token"], "client_name": "x"}).get_json()
    uri = created["registration_client_uri"].replace("http://issuer.test", "")
    headers = {"Authorization": f"Bearer {created['registration_access_token']}"}
    for data in (b"{bad", b"[]", b"\x00"):
        assert_rfc_error(client.put(uri, data=data, content_type="application/json", headers=headers), 400)
    assert_rfc_error(client.put(uri, json={"client_id": created["client_id"], "grant_types": [42]},
                                headers=headers), 400)
    assert client.get(uri, headers=headers).get_json()["client_name"] == "x"


@pytest.mark.parametrize("path,method", [
    ("/auth/token", "GET"), ("/auth/token", "PUT"), ("/auth/introspect", "GET"), ("/auth/revoke", "GET"),
    ("/auth/certs", "POST"), ("/auth/certs", "DELETE"), ("/.well-known/openid-configuration", "POST"),
    ("/.well-known/oauth-authorization-server", "PUT"), (REG, "GET"), (REG, "DELETE"),
])
def test_wrong_method_is_405(client, path, method):
    """RFC 9110 §15.5.6: 405 with ``Allow``, as RFC-shaped JSON."""
    response = client.open(path, method=method)
    assert_rfc_error(response, 405)
    assert response.headers.get("Allow")


@pytest.mark.parametrize("path", ["/nope", "/auth/nope", "/.well-known/nope", "/auth/token/extra",
                                  "/auth/certs/../../etc/passwd", "/%00", "/é", "/auth/" + "x" * 5000])
def test_unknown_paths_are_404_json(client, path):
    response = client.get(path)
    assert_rfc_error(response, 404)


@pytest.mark.parametrize("path", ["/auth/certs", "/.well-known/openid-configuration",
                                  "/.well-known/oauth-authorization-server"])
def test_read_endpoints_ignore_garbage_query(client, path):
    """Garbage query strings and headers do not break the public read endpoints."""
    response = client.get(path, query_string={"a": "\x00é🙂" * 100}, headers={"Accept": "\x7f garbage"})
    assert response.status_code == 200
    assert response.is_json


form_values = st.one_of(st.text(max_size=300), st.sampled_from(GARBAGE_STRINGS),
                        st.sampled_from(["client_credentials", "refresh_token", "authorization_code",
                                         "urn:ietf:params:oauth:grant-type:device_code", "storage.read:/data"]))
form_keys = st.sampled_from(["grant_type", "scope", "audience", "client_id", "client_secret", "code",
                             "redirect_uri", "refresh_token", "device_code", "code_verifier", "token"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(form=st.dictionaries(form_keys, form_values, max_size=8), authenticate=st.booleans(),
       raw=st.binary(max_size=200))
def test_token_endpoint_fuzz(client, registered, form, authenticate, raw):
    """docs/errors.md by property: any form the token endpoint receives gets 2xx or an RFC 6749 §5.2 4xx."""
    client_obj, secret = registered
    headers = basic_auth(client_obj.client_id, secret) if authenticate else {}
    assert_not_server_error(client.post("/auth/token", data=form, headers=headers))
    assert_not_server_error(client.post("/auth/token", data=raw, content_type="application/x-www-form-urlencoded",
                                        headers=headers))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: "Basic " + b.hex()),
                        st.binary(max_size=100).map(lambda b: "Basic " + __import__("base64").b64encode(b).decode())))
def test_authorization_header_fuzz(client, header):
    """RFC 6749 §2.3.1 by property: any Authorization header is answered, never with a 5xx."""
    try:
        header.encode("latin-1")
    except UnicodeEncodeError:
        header = header.encode("utf-8").decode("latin-1")
    header = header.replace("\r", " ").replace("\n", " ")
    response = client.post("/auth/token", data={"grant_type": "client_credentials"},
                           headers={"Authorization": header})
    assert_not_server_error(response)
    assert response.status_code >= 400
