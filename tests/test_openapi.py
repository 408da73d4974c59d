"""docs/openapi.md: ``scitoken_issuer/openapi.yaml`` describes every HTTP endpoint, exactly the
Flask URL rules and methods, is valid OpenAPI 3.1, is served at ``/openapi.yaml``; and
schemathesis, generating requests from it against the WSGI app, finds no 5xx and no response
whose status, content type or body the description does not allow."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from .conftest import basic_auth, make_app

OPENAPI_DOCUMENT = Path(__file__).resolve().parent.parent / "scitoken_issuer" / "openapi.yaml"
#: Flask adds HEAD to every GET rule and answers OPTIONS itself; neither is an endpoint of ours.
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}
CLIENT_ID, CLIENT_SECRET = "schemathesis-client", "schemathesis-secret-0123456789abcdef-0123456789"
#: Operations that authenticate a client: schemathesis sends this client's credentials there, so
#: generated requests reach the grants and endpoints rather than stopping at client authentication.
CLIENT_AUTHENTICATED = {"POST /auth/token", "POST /auth/introspect", "POST /auth/revoke", "POST /auth/device/code"}


def described() -> set[tuple[str, str]]:
    paths = yaml.safe_load(OPENAPI_DOCUMENT.read_text())["paths"]
    return {(path, method.upper()) for path, item in paths.items() for method in item
            if method in ("get", "put", "post", "delete", "patch")}


def flask_rules(app) -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every URL rule: ``<client_id>`` and ``<path:filename>`` become
    ``{client_id}`` and ``{filename}``."""
    return {(re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule), method)
            for rule in app.url_map.iter_rules() for method in rule.methods - AUTOMATIC_METHODS}


def test_description_is_valid_openapi_31():
    """The document is OpenAPI 3.1 and valid against its meta-schema."""
    document = yaml.safe_load(OPENAPI_DOCUMENT.read_text())
    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_every_url_rule_is_described_and_nothing_else(app):
    """Every Flask URL rule and method is in the description, and every described operation is
    a URL rule: a new endpoint (or a removed one) fails here until openapi.yaml says so."""
    rules = flask_rules(app)
    assert rules - described() == set(), "URL rules missing from openapi.yaml"
    assert described() - rules == set(), "operations in openapi.yaml that no URL rule serves"


def test_served_at_documented_path(client):
    """``GET /openapi.yaml`` answers the packaged document as application/yaml (RFC 9512)."""
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.content_type == "application/yaml"
    assert response.data == OPENAPI_DOCUMENT.read_bytes()


def test_non_ascii_response_type_is_a_client_error(client, make_client):
    """Found by schemathesis (docs/openapi.md): RFC 6749 §4.1.2.1 ``unsupported_response_type``
    for a response_type with characters §5.2 forbids in ``error_description`` — a readable 400
    page without a verified redirect URI, a redirect back to the client with one; never a 500."""
    response = client.get("/auth/authorize", query_string={"response_type": "c\u00f6de", "client_id": "nobody"})
    assert response.status_code == 400 and "unsupported_response_type" in response.get_data(as_text=True)
    registered, _secret = make_client(grant_types=["authorization_code"], redirect_uris=["https://client.example/cb"],
                                      scope="openid")
    response = client.get("/auth/authorize", query_string={
        "response_type": "\U0001d413oken", "client_id": registered.client_id,
        "redirect_uri": "https://client.example/cb", "state": "s1"})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("https://client.example/cb?") and "error=unsupported_response_type" in location
    assert "state=s1" in location and "U%2B1D413oken" in location


@pytest.fixture
def issuer(tmp_path):
    """The app as deployed by default (development login, open registration), with one static
    client holding every grant, and failure limits off so generated requests are not all 429."""
    storage = tmp_path / "storage"
    (storage / "data" / "ana").mkdir(parents=True)
    return make_app(tmp_path, POSIX_PATH=str(storage), FAILED_AUTH_LIMIT_ADDRESS="off",
                    FAILED_AUTH_LIMIT_CLIENT="off", FAILED_USER_CODE_LIMIT="off", STATIC_CLIENTS=[{
                        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "client_name": "schemathesis",
                        "grant_types": ["authorization_code", "refresh_token", "client_credentials",
                                        "urn:ietf:params:oauth:grant-type:device_code"],
                        "redirect_uris": ["https://client.example/cb"],
                        "scope": "openid offline_access storage.read:/data compute.read"}])


@pytest.fixture
def registered(issuer) -> dict:
    """A dynamically registered client: RFC 7592 operations are sent its id and registration
    access token, so generated reads and updates reach the configuration endpoint's logic."""
    response = issuer.test_client().post("/auth/client/registration", json={
        "client_name": "registered", "redirect_uris": ["https://client.example/cb"]})
    assert response.status_code == 201
    return response.get_json()


@pytest.fixture
def api_schema(issuer):
    return schemathesis.openapi.from_wsgi("/openapi.yaml", issuer)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=int(os.environ.get("ST_EXAMPLES", "25")), derandomize=not os.environ.get("ST_RANDOM"),
          deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                HealthCheck.filter_too_much])
def test_no_server_error_and_every_response_as_described(case, registered):
    """Generated requests to every operation: never a 5xx, and every response's status, content
    type and JSON body are what openapi.yaml says (schemathesis' conformance checks).
    ``ST_EXAMPLES`` / ``ST_RANDOM`` make a deeper, random run (docs/openapi.md)."""
    if case.operation.label in CLIENT_AUTHENTICATED:
        case.headers = {**(case.headers or {}), **basic_auth(CLIENT_ID, CLIENT_SECRET)}
    if case.operation.path == "/auth/client/registration/{client_id}":
        case.path_parameters = {"client_id": registered["client_id"]}
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {registered['registration_access_token']}"}
        if isinstance(case.body, dict):  # RFC 7592 §2.2: an update names its client
            case.body = {**case.body, "client_id": registered["client_id"]}
    case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                   response_schema_conformance])
