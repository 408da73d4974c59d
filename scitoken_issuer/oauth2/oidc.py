"""OpenID Connect ID tokens (Core §2) and the authorization-request rules of Core §3.1.2 / §6.

ID tokens are always signed RS256 with the ID-token key chain (Core §15.1), whatever
``KEY_TYPE`` signs access tokens; they carry ``jti`` and, for WLCG-profile clients,
``wlcg.ver``. The same claims come with the authorization code grant (``OpenIDCode``, which
also refuses a replayed nonce) and with the device code grant (``DeviceIDToken``) when
``openid`` is granted. See docs/conformance.md.
"""

from __future__ import annotations

import re
import time
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc9101.errors import RequestNotSupportedError, RequestUriNotSupportedError
from authlib.oidc.core import OpenIDCode as _OpenIDCode
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from authlib.oidc.core.grants.code import OpenIDToken
from authlib.oidc.core.grants.util import is_openid_scope, validate_request_prompt
from flask import request

from ..extensions import db, runtime
from ..models import AuthorizationCode
from ..services.authorization import UserAuthorization
from ..services.tokens import WLCG
from ..services.users import directory_claims
from .server import error_description
from .tokens import client_profile, user_info_claims


def _id_token_key():
    """The ID-token key for this request: read once, so header, algorithm and key always match
    even if the key changes in between (kept in the WSGI environ: one per HTTP request)."""
    key = request.environ.get("scitoken_issuer.id_token_key")
    if key is None:
        key = request.environ["scitoken_issuer.id_token_key"] = runtime().keys.id_token_key()
    return key


class IssuerIDToken:
    """How this issuer signs ID tokens; ``sub`` is the POSIX user name."""

    def resolve_client_private_key(self, client):
        return _id_token_key().private

    def get_client_algorithm(self, client) -> str:
        return _id_token_key().alg

    def get_encode_header(self, client) -> dict:
        key = _id_token_key()
        return {"alg": key.alg, "kid": key.kid, "typ": "JWT"}

    def get_client_claims(self, client) -> dict:
        now = int(time.time())
        claims = {"iss": runtime().settings.issuer_address, "aud": [client.client_id], "iat": now,
                  "exp": now + runtime().settings.access_token_lifetime, "jti": str(uuid.uuid4())}
        if client_profile(client) == WLCG:
            claims["wlcg.ver"] = "1.0"
        return claims

    def generate_user_info(self, user: UserAuthorization, scope: str) -> dict:
        """Claims for ``scope``; the sign-in's own claims (the IdP's) win over the user directory's."""
        known = {**directory_claims(runtime().groups.source, user.subject), **user.claims}
        claims = user_info_claims(UserAuthorization(user.subject, claims=known, grant=user.grant), scope)
        if user.auth_time:
            claims["auth_time"] = user.auth_time
        return claims


class OpenIDCode(IssuerIDToken, _OpenIDCode):
    def exists_nonce(self, nonce: str, request) -> bool:
        return db.session.query(AuthorizationCode.code_hash).filter_by(
            client_id=request.payload.client_id, nonce=nonce).first() is not None

    def __call__(self, grant):
        # authlib keeps a grant's hooks in a set, so hooks of one type run in no fixed order: the
        # prompt rules are one hook that applies them in order (else prompt=none with a sign-in
        # older than max_age answered login_required or consent_required at random, and a
        # prompt=consent could undo the re-authentication max_age asked for)
        grant.register_hook("after_create_token_response", self.process_token)
        if is_openid_scope(grant.request.payload.scope):
            grant.register_hook("after_validate_authorization_request_payload",
                                self.validate_openid_authorization_request)
            grant.register_hook("after_validate_consent_request", prompt_rules)


def prompt_rules(grant, redirect_uri, redirect_fragment=False) -> None:
    """OIDC Core §3.1.2.1 ``prompt`` (authlib's reading), then ``max_age``, then the
    ``prompt=none`` answer for a signed-in user, in that order."""
    validate_request_prompt(grant, redirect_uri, redirect_fragment)
    sign_in_not_older_than_max_age(grant, redirect_uri, redirect_fragment)
    no_interaction_with_user(grant, redirect_uri, redirect_fragment)


_MAX_AGE = re.compile(r"[0-9]{1,10}")


def sign_in_not_older_than_max_age(grant, redirect_uri, redirect_fragment=False) -> None:
    """OIDC Core §3.1.2.1 ``max_age``: a sign-in older than that many seconds must be repeated.
    Sets ``grant.prompt = "login"`` as ``prompt=login`` does (authlib), and the authorization
    endpoint sends the user to sign in again; with ``prompt=none`` it is ``login_required``."""
    raw = grant.request.payload.data.get("max_age")
    if raw is None:
        return
    if not isinstance(raw, str) or not _MAX_AGE.fullmatch(raw):
        raise InvalidRequestError("max_age must be a number of seconds", redirect_uri=redirect_uri)
    user = grant.request.user
    if user is not None and time.time() - user.auth_time > int(raw):
        if "none" in (grant.request.payload.data.get("prompt") or "").split():
            raise LoginRequiredError(redirect_uri=redirect_uri)
        grant.prompt = "login"


def after_fresh_sign_in(full_path: str) -> str:
    """The authorization request to come back to once the user signed in again: without
    ``login`` in ``prompt`` and without ``max_age``, which that sign-in satisfied (else the user
    would be sent to sign in once more)."""
    parts = urlsplit(full_path)
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "prompt":
            value = " ".join(p for p in value.split() if p != "login")
        if name == "max_age" or (name == "prompt" and not value):
            continue
        query.append((name, value))
    return parts.path + ("?" + urlencode(query) if query else "")


def no_interaction_with_user(grant, redirect_uri, redirect_fragment=False) -> None:
    """OIDC Core §3.1.2.6: ``prompt=none`` from a signed-in user is ``consent_required``, since
    this issuer always asks for consent (authlib answers ``login_required`` when nobody is)."""
    if (grant.request.payload.data.get("prompt") or "").split() == ["none"] and grant.request.user:
        raise ConsentRequiredError(redirect_uri=redirect_uri)


class NoRequestObjects:
    """Request objects are not supported (Discovery: ``request_parameter_supported`` and
    ``request_uri_parameter_supported`` are false): ``request`` and ``request_uri`` are refused
    with their own errors (OIDC Core §6.1–§6.2, RFC 9101 §10.1) instead of being ignored."""

    def __call__(self, grant) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.refuse)

    @staticmethod
    def refuse(grant, *_args) -> None:
        data = grant.request.payload.data
        if "request_uri" in data:
            raise RequestUriNotSupportedError()
        if "request" in data:
            raise RequestNotSupportedError()


class QueryResponseMode:
    """Authorization responses go back in the query (RFC 6749 §4.1.2), the one mode Discovery
    lists in ``response_modes_supported``. Another ``response_mode`` (OAuth 2.0 Multiple Response
    Type Encoding Practices §2.1: ``fragment``, ``form_post``, ``jwt``…) is refused with
    ``invalid_request`` rather than answered in a mode the client did not ask for."""

    SUPPORTED = ("query",)

    def __call__(self, grant) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.refuse)

    def refuse(self, grant, *_args) -> None:
        mode = grant.request.payload.data.get("response_mode")
        if mode and mode not in self.SUPPORTED:
            raise InvalidRequestError(error_description(
                f"response_mode {mode} is not supported: this issuer answers in the query", 200))


class DeviceIDToken(IssuerIDToken, OpenIDToken):
    """An ID token with the device grant's tokens when ``openid`` was granted."""
