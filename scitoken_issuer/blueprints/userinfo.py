"""OIDC UserInfo (OpenID Connect Core §5.3) for a valid access token carrying ``openid``.

The endpoint is an RFC 6750 protected resource: no token is answered 401 with a bare ``Bearer``
challenge (§3.1: no error code when the request had no credentials), a bad, expired or revoked
token 401 ``invalid_token``, a token without ``openid`` 403 ``insufficient_scope``; each with
``WWW-Authenticate`` and an RFC 6749 §5.2 JSON body. The token may come in the ``Authorization``
header (§2.1) or, on POST, as the ``access_token`` form field (§2.2).
"""

from __future__ import annotations

from authlib.integrations.flask_oauth2 import ResourceProtector, current_token
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6750 import BearerTokenValidator, InsufficientScopeError, InvalidTokenError
from flask import Blueprint, jsonify
from flask import request as flask_request

from ..extensions import csrf, runtime
from ..oauth2.introspection import find_token
from ..oauth2.tokens import user_info_claims
from ..services.authorization import Grant, UserAuthorization
from ..services.users import directory_claims

bp = Blueprint("userinfo", __name__)


class NoTokenError(InvalidTokenError):
    """RFC 6750 §3.1: a request without credentials gets the challenge without error attributes."""

    description = "no access token was sent: use the Authorization: Bearer header"

    def get_headers(self):
        headers = [h for h in super().get_headers() if h[0] != "WWW-Authenticate"]
        return [*headers, ("WWW-Authenticate", "Bearer")]


class ScopeChallengeError(InsufficientScopeError):
    """RFC 6750 §3.1 ``insufficient_scope``, naming the scope the resource needs."""

    def __init__(self, scope: str):
        super().__init__(f"the access token lacks the {scope} scope")
        self.scope = scope

    def get_headers(self):
        challenge = (f'Bearer error="{self.error}", error_description="{self.description}", '
                     f'scope="{self.scope}"')
        return [*super().get_headers(), ("WWW-Authenticate", challenge)]


class AccessTokenValidator(BearerTokenValidator):
    """Our signed JWT access tokens, recorded, not revoked, not expired."""

    def authenticate_token(self, token_string):
        token = find_token(token_string, "access_token")
        return token if token is not None and token.kind == "access_token" else None

    def validate_token(self, token, scopes, request):
        if token is None:
            raise InvalidTokenError("the access token is not one this issuer signed, or it is malformed")
        if token.is_expired():
            raise InvalidTokenError("the access token has expired")
        if token.is_revoked():
            raise InvalidTokenError("the access token was revoked")
        if self.scope_insufficient(token.get_scope(), scopes):
            raise ScopeChallengeError(" ".join(scopes))


class BearerResource(ResourceProtector):
    """Finds the bearer token in the header (RFC 6750 §2.1) or the POST form body (§2.2)."""

    def parse_request_authorization(self, request):
        header = request.headers.get("Authorization")
        form_token = flask_request.form.get("access_token") if flask_request.method == "POST" else None
        if header and form_token:
            raise InvalidRequestError("send the access token in one place only: the Authorization header or the form body")
        if form_token:
            return self.get_token_validator("bearer"), form_token
        scheme, _, token_string = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            raise NoTokenError()
        return self.get_token_validator("bearer"), token_string.strip()


require_token = BearerResource()
require_token.register_token_validator(AccessTokenValidator())


@bp.route("/userinfo", methods=["GET", "POST"])
@csrf.exempt
@require_token("openid")
def userinfo():
    token = current_token
    claims = token.claims
    user = UserAuthorization(subject=token.subject, claims=directory_claims(runtime().groups.source, token.subject),
                             grant=Grant([], list(claims.get("wlcg.groups") or [])))
    response = jsonify(user_info_claims(user, token.scope))
    response.headers["Cache-Control"] = "no-store"
    return response
