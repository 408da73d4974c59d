"""Whole user flows through the app's test client with the development login (the steps are in
``dev_login``): the device flow (RFC 8628) and the code flow with PKCE (RFC 6749 §4.1, RFC 7636).

For tests of what the issuer puts in tokens; the same flows through real processes (gunicorn,
the upstream IdP) are in ``tests/test_e2e_flows.py``.
"""

from __future__ import annotations

import jwt as pyjwt

from .dev_login import approve, authorize_url, csrf_token, pkce, sign_in
from .dev_login import redirect_params as _redirect_params

__all__ = ["DEVICE_GRANT", "REDIRECT_URI", "approve_code", "authorize_query", "code_tokens", "csrf_token",
           "device_start", "device_tokens", "pkce", "redirect_params", "refresh", "sign_in", "verify"]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
REDIRECT_URI = "http://127.0.0.1:8765/callback"


def device_start(client, client_id: str, scope: str, **extra) -> tuple[int, dict]:
    response = client.post("/auth/device/code", data={"client_id": client_id, "scope": scope, **extra})
    return response.status_code, response.get_json()


def device_approved(client, client_id: str, scope: str, **extra) -> dict:
    """Start a device authorization and approve it as the signed-in user: the start's body."""
    status, start = device_start(client, client_id, scope, **extra)
    assert status == 200, start
    page = client.get(f"/auth/device?user_code={start['user_code']}")
    assert page.status_code == 200, page.get_data(as_text=True)
    done = client.post("/auth/device", data={"user_code": start["user_code"], "decision": "approve",
                                              "csrf_token": csrf_token(page.get_data(as_text=True))})
    assert done.status_code == 200, done.get_data(as_text=True)
    return start


def device_tokens(client, client_id: str, scope: str, **extra) -> dict:
    """Start a device authorization, approve it as the signed-in user, poll once: the token body."""
    start = device_approved(client, client_id, scope, **extra)
    token = client.post("/auth/token", data={"grant_type": DEVICE_GRANT, "device_code": start["device_code"],
                                             "client_id": client_id})
    assert token.status_code == 200, token.get_json()
    return token.get_json()


def authorize_query(client_id: str, scope: str, challenge: str | None, state: str = "st-1", **extra) -> str:
    """The authorization request; ``challenge=None`` sends no PKCE."""
    params = {"client_id": client_id, "redirect_uri": REDIRECT_URI, "scope": scope, "state": state, **extra}
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    return authorize_url(**params)


def redirect_params(response) -> dict[str, str]:
    """The query of a redirect back to ``REDIRECT_URI``."""
    return _redirect_params(response, REDIRECT_URI)


def approve_code(client, url: str) -> dict[str, str]:
    """Show the consent page for ``url`` (signed in), approve it: the redirect's parameters."""
    return redirect_params(approve(client, url))


def code_tokens(client, client_id: str, scope: str, auth: dict | None = None, **extra) -> dict:
    """The whole code flow with PKCE for a signed-in user: the token body."""
    verifier, challenge = pkce()
    params = approve_code(client, authorize_query(client_id, scope, challenge, **extra))
    form = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier}
    if auth is None:
        form["client_id"] = client_id
    response = client.post("/auth/token", data=form, headers=auth or {})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def refresh(client, client_id: str, refresh_token: str, **extra):
    return client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token,
                                            "client_id": client_id, **extra})


def verify(client, token: str, audience: str, issuer: str = "http://issuer.test") -> dict:
    """Verify the JWT with the published JWKS and require ``audience`` in ``aud`` (PyJWT)."""
    kid = pyjwt.get_unverified_header(token)["kid"]
    key = pyjwt.PyJWKSet.from_dict(client.get("/auth/certs").get_json())[kid].key
    return pyjwt.decode(token, key, algorithms=["RS256", "ES256"], audience=audience, issuer=issuer)
