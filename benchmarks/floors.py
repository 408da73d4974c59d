"""The floors every issuer scenario is compared with, measured in the same run.

- **L1** raw JWT signatures per second of the configured key type, in process (joserfc over
  ``cryptography``, the library the issuer signs with), one core, times the CPUs the web process
  runs a worker on (``gunicorn_conf.usable_cpus``).
- **L2** ``jwt_app``: a bare Flask endpoint that answers a POST with one freshly signed JWT in an
  RFC 6749 §5.1 body (``gunicorn benchmarks.floors:jwt_app``, key type from ``KEY_TYPE``).
- **L3** ``json_app``: a bare Flask endpoint answering a small JSON document.
- **P** ``protocol_app``: authlib's own grants (client credentials, refresh token, device code) on
  a bare Flask token endpoint, with everything in memory: the benchmark's clients, any refresh
  token valid, every device code pending, and the token signed as L2 signs it. Not a floor the
  targets are held against, but a reference: the issuer's rate over P's says how much of a
  request goes to the protocol library with Flask, and how much to the issuer's own work
  (storage, policy, limits, audit, metrics) on top.

L2 and L3 run under gunicorn with the issuer's own flags and take the same load, so "issuer
requests/s ÷ floor requests/s" compares across machines: it says how much of the time goes to
what a token service must do (parse, sign, answer) and how much to everything else.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
import uuid

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc8628 import DeviceCodeGrant, DeviceCredentialMixin
from flask import Flask, jsonify, request
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

CLAIMS = {"iss": "http://127.0.0.1", "sub": "floor", "aud": "https://wlcg.cern.ch/jwt/v1/any",
          "scope": "storage.read:/data compute.read", "client_id": "floor", "wlcg.ver": "1.0"}


def signing_key(key_type: str) -> RSAKey | ECKey:
    return ECKey.generate_key("P-256") if key_type == "ES256" else RSAKey.generate_key(2048)


def fresh_claims() -> dict:
    now = int(time.time())
    return {**CLAIMS, "iat": now, "nbf": now, "exp": now + 3600, "jti": str(uuid.uuid4())}


def signatures_per_second(key_type: str, seconds: float = 2.0) -> float:
    """L1 for one core: how many tokens like the issuer's one thread signs per second."""
    key = signing_key(key_type)
    header = {"alg": key_type, "kid": "floor", "typ": "JWT"}
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        jwt.encode(header, fresh_claims(), key)
        count += 1
    return count / elapsed


def cores() -> int:
    """The CPUs the web process runs a worker on (its affinity, capped by a cgroup CPU quota)."""
    from scitoken_issuer.gunicorn_conf import usable_cpus
    return usable_cpus()


def jwt_app() -> Flask:
    """L2 (``gunicorn 'benchmarks.floors:jwt_app()'``): each worker has its own key."""
    app = Flask("floor-jwt")
    key_type = os.environ.get("KEY_TYPE", "RS256")
    key = signing_key(key_type)
    header = {"alg": key_type, "kid": "floor", "typ": "JWT"}

    @app.post("/token")
    def token():
        grant_type = request.form.get("grant_type")  # parse the form as a token endpoint must
        claims = fresh_claims()
        response = jsonify({"access_token": jwt.encode(header, claims, key), "token_type": "Bearer",
                            "expires_in": 3600, "scope": claims["scope"], "grant_type": grant_type})
        response.headers["Cache-Control"] = "no-store"
        return response

    return app


def json_app() -> Flask:
    """L3 (``gunicorn 'benchmarks.floors:json_app()'``)."""
    app = Flask("floor-json")
    document = {"issuer": "http://127.0.0.1", "token_endpoint": "http://127.0.0.1/token",
                "grant_types_supported": ["client_credentials"], "active": False}

    @app.route("/json", methods=["GET", "POST"])
    def json_document():
        return jsonify(document)

    return app


class _Client(ClientMixin):
    """A confidential client that may use every grant of :func:`protocol_app`."""

    def __init__(self, client_id: str, secret: str):
        self.client_id, self.secret = client_id, secret

    def get_client_id(self) -> str:
        return self.client_id

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic"

    def check_grant_type(self, grant_type: str) -> bool:
        return True

    def get_allowed_scope(self, scope: str) -> str:
        return scope


class _RefreshToken:
    """Any presented refresh token: live, the client's own."""

    def __init__(self, client_id: str):
        self.client_id = client_id

    def check_client(self, client: _Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return CLAIMS["scope"]

    def is_expired(self) -> bool:
        return False

    def is_revoked(self) -> bool:
        return False


class _RefreshTokenGrant(grants.RefreshTokenGrant):
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> _RefreshToken:
        return _RefreshToken(self.request.client.client_id)

    def authenticate_user(self, refresh_token: _RefreshToken) -> str:
        return "floor"

    def revoke_old_credential(self, refresh_token: _RefreshToken) -> None:
        pass


class _DeviceCredential(DeviceCredentialMixin):
    """Any presented device code: the client's own, not yet decided by its user."""

    def __init__(self, client_id: str):
        self.client_id = client_id

    def get_client_id(self) -> str:
        return self.client_id

    def get_scope(self) -> str:
        return CLAIMS["scope"]

    def get_user_code(self) -> str:
        return "FLOORCODE"

    def is_expired(self) -> bool:
        return False


class _DeviceCodeGrant(DeviceCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]

    def query_device_credential(self, device_code: str) -> _DeviceCredential:
        # authlib asks before it sets request.client: the code belongs to the client that polls
        return _DeviceCredential(extract_basic_authorization(self.request.headers)[0])

    def query_user_grant(self, user_code: str) -> None:
        return None  # pending: authlib answers authorization_pending

    def should_slow_down(self, credential: _DeviceCredential) -> bool:
        return False


def protocol_app() -> Flask:
    """P (``gunicorn 'benchmarks.floors:protocol_app()'``): the clients come from
    ``FLOOR_CLIENTS`` (``id:secret`` pairs, comma separated); each worker has its own key."""
    app = Flask("floor-protocol")
    clients = {}
    for pair in filter(None, os.environ.get("FLOOR_CLIENTS", "").split(",")):
        client_id, secret = pair.split(":", 1)
        clients[client_id] = _Client(client_id, secret)
    key_type = os.environ.get("KEY_TYPE", "RS256")
    key = signing_key(key_type)
    header = {"alg": key_type, "kid": "floor", "typ": "JWT"}

    def generate_token(grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True):
        claims = fresh_claims()
        token = {"access_token": jwt.encode(header, claims, key), "token_type": "Bearer", "expires_in": 3600,
                 "scope": claims["scope"]}
        if include_refresh_token:
            token["refresh_token"] = secrets.token_urlsafe(32)
        return token

    server = AuthorizationServer(app, query_client=clients.get, save_token=lambda token, request: None)
    server.register_token_generator("default", generate_token)
    server.register_grant(grants.ClientCredentialsGrant)
    server.register_grant(_RefreshTokenGrant)
    server.register_grant(_DeviceCodeGrant)

    @app.post("/auth/token")
    def token():
        return server.create_token_response()

    return app
