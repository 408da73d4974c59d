"""Clients and pre-created inputs for one benchmark configuration, made through the services.

Runs in the benchmark process against the same database (and Redis) the web server will use,
before the server starts: the schema (Alembic), the clients (``ClientRegistry``), refresh tokens
(``RefreshService``: one family each, as a fresh login gives), pending device codes
(``DeviceFlow``, announced to Redis as the device endpoint does), authorization codes with PKCE
(stored as the code grant stores them, scopes decided by ``UserScopes.grant_scopes``) and access
tokens for introspection (``TokenService``). Each kind is written to a file, one input per line.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from flask_migrate import upgrade

from scitoken_issuer.app import create_app
from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.models import AuthorizationCode
from scitoken_issuer.services.device import new_device_code, new_user_code
from scitoken_issuer.services.tokens import TokenRequest

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
REDIRECT_URI = "http://127.0.0.1:9/callback"
USER = "alice"  # a development user (config/dev-users.json)
USER_SCOPE = "openid offline_access storage.read:/data"
SERVICE_SCOPE = "storage.read:/data compute.read"


@dataclass(frozen=True)
class Prepared:
    """What the scenarios need: client credentials and one inputs file per kind."""

    service_auth: str  # Basic value of the client-credentials client
    user_auth: str  # Basic value of the user-flow client
    service_id: str
    service_secret: str
    files: dict[str, Path]


def basic_auth(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def prepare(settings: dict, folder: Path, counts: dict[str, int]) -> Prepared:
    """Migrate, register clients, and pre-create ``counts[kind]`` inputs of each kind."""
    app = create_app(dict(settings))
    try:
        with app.app_context():
            upgrade(directory=app.extensions["migrate"].directory)
            logging.getLogger("scitoken_issuer").setLevel(logging.WARNING)  # no audit line per input
            rt = runtime()
            rt.keys.signing_key()
            if rt.tree is not None:  # as an operator does at deployment (scan-tree --store)
                rt.tree.rebuild()
            service = rt.clients.register({"client_name": "bench service", "grant_types": ["client_credentials"],
                                           "scope": SERVICE_SCOPE}, admin=True, source="admin")
            user = rt.clients.register({"client_name": "bench user flows", "redirect_uris": [REDIRECT_URI],
                                        "grant_types": ["authorization_code", "refresh_token", DEVICE_GRANT],
                                        "scope": USER_SCOPE}, admin=True, source="admin")
            db.session.commit()
            files = {
                "refresh": _write(folder / "refresh.txt", _refresh_tokens(user.client, counts["refresh"])),
                "device": _write(folder / "device.txt", _device_codes(user.client, counts["device"])),
                "code": _write(folder / "code.txt", _authorization_codes(user.client, counts["code"])),
                "access": _write(folder / "access.txt", _access_tokens(service.client, counts["access"])),
            }
            return Prepared(basic_auth(service.client.client_id, service.client_secret),
                            basic_auth(user.client.client_id, user.client_secret),
                            service.client.client_id, service.client_secret, files)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _refresh_tokens(client, count: int) -> list[str]:
    refresh = runtime().refresh
    lines = []
    for start in range(0, count, 1000):
        for _ in range(min(1000, count - start)):
            family = refresh.new_family(client.client_id, USER, USER_SCOPE, None)
            lines.append(refresh.issue(family))
        db.session.commit()
    return lines


def _device_codes(client, count: int) -> list[str]:
    flow = runtime().device
    lines, rows = [], []
    for _ in range(count):
        code = new_device_code()
        rows.append(flow.create(client.client_id, "openid storage.read:/data", code, new_user_code()))
        lines.append(code)
    db.session.commit()
    for row in rows:
        flow.announce(row)
    return lines


def _authorization_codes(client, count: int) -> list[str]:
    rt = runtime()
    grant = rt.user_scopes.grant_scopes(USER, USER_SCOPE, client)
    if not hasattr(grant, "groups"):
        raise RuntimeError(f"the benchmark user may not have {USER_SCOPE}: {grant}")
    now = int(time.time())
    lines = []
    for _ in range(count):
        code, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        db.session.add(AuthorizationCode(
            code_hash=rt.secrets.hash(code), client_id=client.client_id, redirect_uri=REDIRECT_URI,
            scope=grant.scope, subject=USER, identity_id=None, nonce=None, code_challenge=challenge,
            code_challenge_method="S256", auth_time=now, expires_at=now + rt.settings.auth_code_lifetime,
            claims={"groups": grant.groups, "audience": None}))
        lines.append(f"{code}\t{verifier}")
    db.session.commit()
    return lines


def _access_tokens(client, count: int) -> list[str]:
    tokens = runtime().tokens
    lines = [tokens.mint(TokenRequest(subject=client.client_id, client_id=client.client_id,
                                      scopes=SERVICE_SCOPE.split(), grant_type="client_credentials")).token
             for _ in range(count)]
    db.session.commit()
    return lines
