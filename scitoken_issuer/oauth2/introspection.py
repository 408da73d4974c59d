"""RFC 7662 introspection and RFC 7009 revocation of access and refresh tokens."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from authlib.oauth2.rfc6749 import InvalidRequestError, UnsupportedTokenTypeError
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint

from ..extensions import runtime
from ..services.audit import audit
from .server import error_description


@dataclass
class KnownToken:
    """A presented token this issuer recognises: an access token (with its claims) or a refresh token."""

    kind: str  # "access_token" | "refresh_token"
    client_id: str
    subject: str
    scope: str
    issued_at: int
    expires_at: int
    revoked: bool
    jti: str | None = None
    family_id: str | None = None
    claims: dict = field(default_factory=dict)

    def check_client(self, client) -> bool:
        return client.get_client_id() == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return self.expires_at <= time.time()

    def is_revoked(self) -> bool:
        return self.revoked


def find_token(token_string: str, hint: str | None) -> KnownToken | None:
    """Look the token up as the hint suggests first, then as the other type (RFC 7009 §2.1)."""
    if not isinstance(token_string, str) or not token_string or len(token_string) > 16384:
        return None
    order = ("refresh_token", "access_token") if hint == "refresh_token" else ("access_token", "refresh_token")
    for kind in order:
        found = _find_access(token_string) if kind == "access_token" else _find_refresh(token_string)
        if found is not None:
            return found
    return None


def _find_access(token_string: str) -> KnownToken | None:
    """A JWT access token is what it says once its signature checks: its claims, and whether the
    revocation list names it, its family, or its client or user since it was issued."""
    rt = runtime()
    if token_string.count(".") != 2:
        return None
    claims = rt.tokens.verify(token_string)
    if claims is None:
        return None
    return KnownToken("access_token", claims["client_id"], claims["sub"], claims["scope"], claims["iat"],
                      claims["exp"], rt.revocations.is_revoked(claims), jti=claims["jti"], claims=claims)


def _find_refresh(token_string: str) -> KnownToken | None:
    found = runtime().refresh.lookup(token_string)
    if found is None:
        return None
    token, family = found
    revoked = family.revoked_at is not None or token.rotated_at is not None
    return KnownToken("refresh_token", family.client_id, family.subject, token.scope, token.issued_at,
                      min(token.expires_at, family.expires_at), revoked, family_id=family.id)


def check_token_params(request, supported) -> None:
    """RFC 7662 §2.1 / RFC 7009 §2.1: ``token`` is required; an unknown hint is
    ``unsupported_token_type`` with 400 (RFC 6749 §5.2), where authlib answers 401 without a description."""
    if "token" not in request.form:
        raise InvalidRequestError("the token parameter is required")
    hint = request.form.get("token_type_hint")
    if hint and hint not in supported:
        error = UnsupportedTokenTypeError()
        error.status_code = 400
        error.description = error_description(f"token_type_hint {hint} is not supported", 200)
        raise error


class IntrospectionEndpoint(_IntrospectionEndpoint):
    """RFC 7662: only an authenticated (confidential) client may introspect (§2.1), and only its
    own tokens; a public client is answered 401 ``invalid_client``."""

    #: RFC 7662 §2.1: introspection requires client authentication; public clients cannot.
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def check_params(self, request, client):
        check_token_params(request, self.SUPPORTED_TOKEN_TYPES)

    def query_token(self, token_string, token_type_hint):
        return find_token(token_string, token_type_hint)

    def check_permission(self, token, client, request):
        """A client may introspect the tokens issued to it; any other token reads as inactive."""
        return token.check_client(client)

    def introspect_token(self, token: KnownToken) -> dict:
        body = {"active": True, "client_id": token.client_id, "sub": token.subject, "scope": token.scope,
                "iat": token.issued_at, "exp": token.expires_at, "token_type": token.kind,
                "iss": runtime().settings.issuer_address, "username": token.subject}
        if token.kind == "access_token":
            body.update({"jti": token.jti, "aud": token.claims.get("aud"), "nbf": token.claims.get("nbf"),
                         "token_type": "Bearer"})
            if isinstance(token.claims.get("act"), dict):  # RFC 8693 §4.1: who acts (token exchange)
                body["act"] = token.claims["act"]
        return body


class RevocationEndpoint(_RevocationEndpoint):
    """RFC 7009 §2.1: a public client identifies itself by ``client_id`` and may revoke its own tokens."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def check_params(self, request, client):
        check_token_params(request, self.SUPPORTED_TOKEN_TYPES)

    def query_token(self, token_string, token_type_hint):
        return find_token(token_string, token_type_hint)

    def revoke_token(self, token: KnownToken, request) -> None:
        """Revoking a refresh token revokes its whole family and the access tokens it gave
        (RFC 7009 §2.1); revoking an access token revokes that token only."""
        rt = runtime()
        if token.kind == "refresh_token":
            rt.refresh.revoke_family(token.family_id, "revoked by client")
        elif not token.revoked:
            rt.revocations.revoke_token(token.jti, token.expires_at)
        audit("revoke", "revoked", subject=token.subject, client_id=token.client_id, scope=token.scope,
              jti=token.jti, token_type=token.kind)
