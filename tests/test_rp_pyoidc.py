"""An independent Python relying party, pyoidc (``oic``), against the issuer over HTTPS with RS256
and ES256 access-token keys: discovery with provider-info validation, RFC 7591 registration, the
code flow with PKCE and ID-token verification, userinfo. See docs/conformance.md."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
from oic.oic import Client
from oic.oic.message import AuthorizationResponse, OpenIDSchema, ProviderConfigurationResponse
from oic.utils.authn.client import CLIENT_AUTHN_METHOD
from oic.utils.settings import OicClientSettings

from .support.processes import free_port


@pytest.fixture
def rp(rp_issuer):
    """A pyoidc client trusting the test CA, with the issuer's metadata and keys loaded."""
    client = Client(client_authn_method=CLIENT_AUTHN_METHOD,
                    settings=OicClientSettings(verify_ssl=str(rp_issuer.bundle), timeout=30))
    client.provider_config(rp_issuer.url)
    return client


def test_pyoidc_provider_info_validates(rp, rp_issuer):
    """OIDC Discovery §3/§4.3: the metadata passes pyoidc's validation (issuer equals the URL it
    was fetched from, https, RS256 offered for ID tokens) and its JWKS loads."""
    info = rp.provider_info
    assert isinstance(info, ProviderConfigurationResponse) and info.verify()
    assert info["issuer"] == rp_issuer.url
    assert "RS256" in info["id_token_signing_alg_values_supported"]
    assert info["request_uri_parameter_supported"] is False
    algs = {key.alg for key in rp.keyjar.get_issuer_keys(rp_issuer.url)}
    assert {"RS256", rp_issuer.key_type} <= algs


def test_pyoidc_code_flow_with_pkce(rp, rp_issuer):
    """RFC 7591 registration, then OIDC Core §3.1 code flow with RFC 7636 PKCE: pyoidc builds the
    request, checks the response (state, RFC 9207 ``iss``), exchanges the code and verifies the
    ID token (signature by ``kid`` from the JWKS, RS256 as it expects by default, ``iss``,
    ``aud``, nonce); userinfo (OIDC Core §5.3) returns the user's email."""
    redirect_uri = f"http://127.0.0.1:{free_port()}/cb"
    registration = rp.register(rp.provider_info["registration_endpoint"], redirect_uris=[redirect_uri],
                               client_name="pyoidc conformance RP", grant_types=["authorization_code"],
                               response_types=["code"], token_endpoint_auth_method="client_secret_basic",
                               scope="openid email profile")
    assert registration["client_id"] == rp.client_id and rp.client_secret

    state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    challenge, verifier = rp.add_code_challenge()
    request = rp.construct_AuthorizationRequest(request_args={
        "client_id": rp.client_id, "response_type": "code", "scope": ["openid", "email", "profile"],
        "redirect_uri": redirect_uri, "state": state, "nonce": nonce, **challenge})
    location = rp_issuer.browser("alice").authorize(request.request(rp.authorization_endpoint))
    query = urlsplit(location).query
    assert parse_qs(query)["iss"] == [rp_issuer.url]

    response = rp.parse_response(AuthorizationResponse, info=query, sformat="urlencoded")
    assert isinstance(response, AuthorizationResponse) and response["state"] == state
    tokens = rp.do_access_token_request(state=state, request_args={"code": response["code"],
                                                                   "code_verifier": verifier,
                                                                   "redirect_uri": redirect_uri},
                                        authn_method="client_secret_basic")
    id_token = tokens["id_token"]  # verified by pyoidc: signature, iss, aud, exp, nonce
    assert id_token.jws_header["alg"] == "RS256"
    assert id_token["iss"] == rp_issuer.url and id_token["sub"] == "alice" and id_token["nonce"] == nonce
    assert id_token["email"] == "alice@example.org" and id_token["jti"]

    userinfo = rp.do_user_info_request(state=state)
    assert isinstance(userinfo, OpenIDSchema)
    assert userinfo["sub"] == "alice" and userinfo["email"] == "alice@example.org"
