"""The RFC 6750 resource protector for this issuer's own protected resources (userinfo, the
scope listing): built once per app in ``init_oauth``.

No token is answered 401 with a bare ``Bearer`` challenge (RFC 6750 §3.1: no error code when the
request had no credentials), a bad, expired or revoked token 401 ``invalid_token``, a token
without the needed scope 403 ``insufficient_scope``; each with ``WWW-Authenticate`` and an RFC 6749
§5.2 JSON body. The token may come in the ``Authorization`` header (§2.1) or, on POST, as the
``access_token`` form field (§2.2)."""

from __future__ import annotations

import json
from typing import NoReturn

from authlib.integrations.flask_oauth2 import ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6750 import BearerTokenValidator, InsufficientScopeError, InvalidTokenError
from flask import Response, abort
from flask import request as flask_request

from .introspection import find_token


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
        form_tokens = flask_request.form.getlist("access_token") if flask_request.method == "POST" else []
        if len(form_tokens) > 1:  # RFC 6750 §3.1: invalid_request "repeats the same parameter"
            raise InvalidRequestError("send the access_token form field once")
        form_token = form_tokens[0] if form_tokens else None
        if header and form_token:
            raise InvalidRequestError("send the access token in one place only: the Authorization header or the form body")
        if form_token:
            return self.get_token_validator("bearer"), form_token
        scheme, _, token_string = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            raise NoTokenError()
        return self.get_token_validator("bearer"), token_string.strip()

    def raise_error_response(self, error: OAuth2Error) -> NoReturn:
        """The RFC 6750 §3 answer as a ready response (authlib's documented override point)."""
        response = Response(json.dumps(dict(error.get_body())), error.status_code, error.get_headers())
        abort(response)

    def require(self, scope: str):
        """The request's valid token carrying ``scope``, or the RFC 6750 error answer (raised)."""
        try:
            return self.acquire_token([scope])
        except OAuth2Error as error:
            self.raise_error_response(error)


def build_resource_protector() -> BearerResource:
    """A new protector accepting this issuer's access tokens (one per app)."""
    protector = BearerResource()
    protector.register_token_validator(AccessTokenValidator())
    return protector
