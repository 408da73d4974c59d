"""OpenID Connect ID tokens (Core §2), signed with the issuer's current key.

The same claims come with the authorization code grant (``OpenIDCode``, which also refuses a
replayed nonce) and with the device code grant (``DeviceIDToken``) when ``openid`` is granted.
"""

from __future__ import annotations

import time

from authlib.oidc.core import OpenIDCode as _OpenIDCode
from authlib.oidc.core.grants.code import OpenIDToken

from ..extensions import db, runtime
from ..models import AuthorizationCode
from ..services.authorization import UserAuthorization
from .tokens import user_info_claims


class IssuerIDToken:
    """How this issuer signs ID tokens; ``sub`` is the POSIX user name."""

    def resolve_client_private_key(self, client):
        return runtime().keys.signing_key().private

    def get_client_algorithm(self, client) -> str:
        return runtime().keys.signing_key().alg

    def get_encode_header(self, client) -> dict:
        key = runtime().keys.signing_key()
        return {"alg": key.alg, "kid": key.kid, "typ": "JWT"}

    def get_client_claims(self, client) -> dict:
        now = int(time.time())
        return {"iss": runtime().settings.issuer_address, "aud": [client.client_id], "iat": now,
                "exp": now + runtime().settings.access_token_lifetime}

    def generate_user_info(self, user: UserAuthorization, scope: str) -> dict:
        claims = user_info_claims(user, scope)
        if user.auth_time:
            claims["auth_time"] = user.auth_time
        return claims


class OpenIDCode(IssuerIDToken, _OpenIDCode):
    def exists_nonce(self, nonce: str, request) -> bool:
        return db.session.query(AuthorizationCode.code_hash).filter_by(
            client_id=request.payload.client_id, nonce=nonce).first() is not None


class DeviceIDToken(IssuerIDToken, OpenIDToken):
    """An ID token with the device grant's tokens when ``openid`` was granted."""
