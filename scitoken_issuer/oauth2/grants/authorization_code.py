"""RFC 6749 §4.1 authorization code with PKCE (RFC 7636, S256 only, required: RFC 9700 §2.1.1)
and OpenID Connect.

Codes are stored by keyed hash, bound to client, redirect URI and PKCE challenge, and used once;
a code presented again with its verifier revokes what its exchange gave (RFC 6749 §4.1.2).
The exchange reads the code, signs the access token and the ID token, and only then writes: it
claims the code with one conditional UPDATE (a concurrent exchange that claimed it first makes
this one a replay, answered ``invalid_grant``), and the commit writes the new refresh family and
its first token (``RefreshService.store_family``, ``issue``); an error answer writes nothing. On
SQLite the write lock is held from the claim to the commit only (docs/tokens.md, "Cost of a
refresh"). The user's scopes are decided when the user approves
(``create_authorization_response``), through the one policy interface.
"""

from __future__ import annotations

import hmac
import time

from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, InvalidScopeError, grants
from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge
from authlib.oauth2.rfc7636.challenge import CODE_VERIFIER_PATTERN
from sqlalchemy import bindparam, select, update

from ...extensions import db, runtime, separate_transaction
from ...models import AuthorizationCode
from ...services.audit import audit
from ...services.authorization import Grant, UserAuthorization
from ...services.policy import Refusal
from ...services.scopes import parse_scopes
from ..audience import narrowed_audience, requested_audience
from ..server import error_description
from ..tokens import issued
from .hooks import OrderedHooks


_codes = AuthorizationCode.__table__

#: an unused, unexpired code of this client (built once; docs/tokens.md, "Cost of a refresh")
FIND_CODE = select(_codes).where(
    _codes.c.code_hash == bindparam("presented_hash"), _codes.c.client_id == bindparam("client"),
    _codes.c.used_at.is_(None), _codes.c.expires_at > bindparam("now"))
#: the exchange's claim, its first write: marks the code used unless a concurrent exchange did,
#: and records what the exchange gave
CLAIM_CODE = update(_codes).where(
    _codes.c.code_hash == bindparam("presented_hash"), _codes.c.used_at.is_(None),
).values(used_at=bindparam("now"), issued_jti=bindparam("jti"), issued_expires_at=bindparam("issued_until"),
         issued_family_id=bindparam("family_id"))
#: after a replay revoked them: nothing left to revoke
FORGET_ISSUED = update(_codes).where(_codes.c.code_hash == bindparam("presented_hash")).values(
    issued_jti=None, issued_expires_at=None, issued_family_id=None)


#: the longest ``nonce`` a code can carry to its ID token (OIDC Core §3.1.2.1 sets no limit; the
#: column does, and PostgreSQL refuses a longer value or a NUL character)
MAX_NONCE = AuthorizationCode.__table__.c.nonce.type.length


class StrictCodeChallenge(CodeChallenge):
    """PKCE with S256 only, required of every client (RFC 9700 §2.1.1) unless an administrator
    exempted a confidential one (``Client.needs_pkce``; docs/tokens.md, "PKCE")."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant, redirect_uri):
        payload = grant.request.payload.data
        if grant.request.client.needs_pkce and not payload.get("code_challenge"):
            raise InvalidRequestError("code_challenge required: send code_challenge with "
                                      "code_challenge_method=S256 (PKCE, RFC 7636)")
        if payload.get("code_challenge") and payload.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        return super().validate_code_challenge(grant, redirect_uri)

    def get_authorization_code_challenge(self, authorization_code):
        return authorization_code.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code):
        return authorization_code.code_challenge_method


class StoredCode:
    """authlib's AuthorizationCodeMixin over a claimed row (the columns of ``authorization_codes``)."""

    def __init__(self, row):
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int:
        return self.row.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None


class AuthorizationCodeGrant(OrderedHooks, grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    #: RFC 8707 §2: ``resource`` may be given several times, at /auth/authorize and /auth/token
    REPEATABLE_PARAMETERS = frozenset({"resource"})

    def validate_requested_scope(self) -> None:
        """Also check ``audience``, and that no parameter but ``resource`` (RFC 8707 §2.1) came
        twice (RFC 6749 §3.1: authlib checks five, a second ``nonce``, ``prompt`` or ``audience``
        would be dropped unseen), here: the client and redirect URI are verified, so either is an
        error redirect before consent."""
        for name, values in self.request.payload.datalist.items():
            if len(values) > 1 and name not in self.REPEATABLE_PARAMETERS:
                raise InvalidRequestError(error_description(f"parameter {name} was sent more than once", 200))
        nonce = self.request.payload.data.get("nonce")
        if nonce is not None and (len(nonce) > MAX_NONCE or not nonce.isprintable()):
            raise InvalidRequestError(f"nonce must be at most {MAX_NONCE} printable characters")
        super().validate_requested_scope()
        requested_audience(self.request.payload)

    def create_authorization_response(self, redirect_uri: str, grant_user: UserAuthorization | None):
        """Decide the scopes when the user approved; refuse with ``invalid_scope`` naming the scope."""
        if grant_user is not None:
            client = self.request.client
            requested = parse_scopes(self.request.payload.scope or "")
            decision = runtime().user_scopes.grant_scopes(grant_user.subject, requested, client)
            if isinstance(decision, Refusal):
                audit("issue", "refused", subject=grant_user.subject, client_id=client.client_id,
                      scope=self.request.payload.scope, reason=decision.reason, grant_type="authorization_code")
                raise InvalidScopeError(decision.reason, redirect_uri=redirect_uri)
            grant_user = grant_user.with_grant(decision)
            self.request.audience = requested_audience(self.request.payload)
        else:
            audit("issue", "denied", client_id=self.request.client.client_id, scope=self.request.payload.scope,
                  reason="the user denied the request", grant_type="authorization_code")
        return super().create_authorization_response(redirect_uri, grant_user)

    def save_authorization_code(self, code: str, request) -> None:
        user: UserAuthorization = request.user
        data = request.payload.data
        db.session.add(AuthorizationCode(
            code_hash=runtime().secrets.hash(code), client_id=request.client.client_id,
            # "" when the request named none: the token request need not name one (RFC 6749 §4.1.3)
            redirect_uri=request.payload.redirect_uri or "",
            scope=user.grant.scope, subject=user.subject, identity_id=user.identity_id,
            nonce=data.get("nonce"), code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            auth_time=user.auth_time or int(time.time()),
            expires_at=int(time.time()) + runtime().settings.auth_code_lifetime,
            claims={"groups": user.grant.groups, "audience": getattr(request, "audience", None),
                    **user.claims}))

    def query_authorization_code(self, code: str, client) -> StoredCode | None:
        """The code, unused and unexpired (claimed last, :meth:`delete_authorization_code`); on a
        miss, say why."""
        if not isinstance(code, str) or len(code) > 256:
            return None
        code_hash, now = runtime().secrets.hash(code), int(time.time())
        row = db.session.connection().execute(
            FIND_CODE, {"presented_hash": code_hash, "client": client.client_id, "now": now}).first()
        if row is not None:
            return StoredCode(row)
        stored = db.session.get(AuthorizationCode, code_hash)
        if stored is None or stored.client_id != client.client_id:
            return None
        if stored.used_at is not None:
            if (stored.issued_jti or stored.issued_family_id) and self._presented_by_holder(stored, client):
                self._revoke_issued(stored)
            raise self._replayed(stored.subject, client.client_id)
        raise InvalidGrantError("the authorization code has expired")

    def create_token_response(self):
        """authlib's token response, both tokens signed (the ID token in OpenIDCode's
        ``after_create_token_response`` hook), then the claim of the code: the exchange's first
        write, so on SQLite no other exchange waits for this one's signatures."""
        answer = super().create_token_response()
        self.claim_code(self.request.authorization_code)
        return answer

    def delete_authorization_code(self, authorization_code: StoredCode) -> None:
        """Nothing yet: authlib calls this before the ID token is signed; the code is claimed
        after it (:meth:`create_token_response`)."""

    def claim_code(self, authorization_code: StoredCode) -> None:
        """Mark the code used: once, also under concurrency (a concurrent exchange that claimed
        it first makes this one a replay, and the error answer drops its queued family)."""
        row, given = authorization_code.row, issued()
        claimed = db.session.connection().execute(CLAIM_CODE, {
            "presented_hash": row.code_hash, "now": int(time.time()), "jti": given and given.jti,
            "issued_until": given and given.expires_at, "family_id": given and given.family_id})
        if claimed.rowcount != 1:
            raise self._replayed(row.subject, row.client_id)

    def _presented_by_holder(self, stored: AuthorizationCode, client) -> bool:
        """Does this request hold the code's PKCE verifier (or, for a client an administrator
        exempted from PKCE, its authentication)? Only then may a replay revoke: someone who found
        a used code in a log or a browser history must not be able to end the user's tokens."""
        if not stored.code_challenge:
            return not client.needs_pkce  # an exempted client authenticated to get here
        verifier = self.request.payload.data.get("code_verifier")
        # RFC 7636 §4.1's characters only: authlib's S256 encodes the verifier as ASCII (a 500 else)
        if not isinstance(verifier, str) or not CODE_VERIFIER_PATTERN.fullmatch(verifier):
            return False
        return hmac.compare_digest(create_s256_code_challenge(verifier), stored.code_challenge)

    def _revoke_issued(self, stored: AuthorizationCode) -> None:
        """RFC 6749 §4.1.2: revoke the tokens the code's exchange gave — its refresh family
        (every refresh token and access token of it) and its access token — in a transaction of
        its own, since the error answer rolls the request's work back."""
        rt = runtime()
        with separate_transaction() as session:
            if stored.issued_family_id:
                rt.refresh.revoke_family(stored.issued_family_id, "authorization code replayed", session)
            if stored.issued_jti and stored.issued_expires_at:
                rt.revocations.revoke_token(stored.issued_jti, stored.issued_expires_at, session)
            session.execute(FORGET_ISSUED, {"presented_hash": stored.code_hash})

    @staticmethod
    def _replayed(subject: str, client_id: str) -> InvalidGrantError:
        audit("issue", "refused", subject=subject, client_id=client_id,
              reason="authorization code replayed", grant_type="authorization_code")
        return InvalidGrantError("the authorization code was already used")

    def authenticate_user(self, authorization_code: StoredCode) -> UserAuthorization:
        row = authorization_code.row
        claims = dict(row.claims or {})
        groups = claims.pop("groups", [])
        # the code's audience, or a narrower one asked with the token request (RFC 8707 §2.2)
        audience = narrowed_audience(self.request.payload, claims.pop("audience", None))
        return UserAuthorization(subject=row.subject, identity_id=row.identity_id, auth_time=row.auth_time,
                                 claims=claims, grant=Grant(parse_scopes(row.scope), groups), audience=audience)
