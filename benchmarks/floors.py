"""The floors every issuer scenario is compared with, measured in the same run.

- **L1** raw JWT signatures per second of the configured key type, in process (joserfc over
  ``cryptography``, the library the issuer signs with), one core, times the CPUs the web process
  runs a worker on (``gunicorn_conf.usable_cpus``).
- **L2** ``jwt_app``: a bare Flask endpoint that answers a POST with one freshly signed JWT in an
  RFC 6749 §5.1 body (``gunicorn benchmarks.floors:jwt_app``, key type from ``KEY_TYPE``).
- **L3** ``json_app``: a bare Flask endpoint answering a small JSON document.

L2 and L3 run under gunicorn with the issuer's own flags and take the same load, so "issuer
requests/s ÷ floor requests/s" compares across machines: it says how much of the time goes to
what a token service must do (parse, sign, answer) and how much to everything else.
"""

from __future__ import annotations

import os
import time
import uuid

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

