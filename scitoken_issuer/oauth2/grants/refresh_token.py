"""RFC 6749 §6 refresh, with rotation, reuse detection and re-authorization (docs/tokens.md,
"Refresh families").

Every refresh re-checks the user at the upstream IdP (at most every ``IDP_RECHECK_INTERVAL``),
re-resolves the user's groups and re-decides every scope: a token only ever says what the
filesystem allows now. A narrower ``scope`` or ``audience`` may be asked, never a wider one; the
family's audience is kept. Rotation hands every refresh of one token the same successor, so
concurrent refreshes never fork the family (:meth:`RefreshService.rotate`).

On PostgreSQL the lookup and the rotation (one claim-and-insert statement) each commit on their
own, two round trips in all; the IdP re-check and a family's revocation have short transactions
of their own (docs/tokens.md, "Cost of a refresh").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from authlib.oauth2.rfc6749 import (InvalidGrantError, InvalidRequestError, InvalidScopeError,
                                    UnauthorizedClientError, grants)

from ...extensions import each_statement_commits, runtime, separate_transaction
from ...services.audit import audit
from ...services.authorization import UserAuthorization
from ...services.identities import IdentityCheckFailed
from ...services.policy import Refusal, policy_allows
from ...services.refresh import RefreshRefused
from ...services.refresh_records import FamilyRecord, TokenRecord
from ...services.scopes import parse_scopes
from ..audience import from_text, narrowed_audience
from ..server import requested_scopes


def recheck_user(family: FamilyRecord) -> None:
    """Re-check the family's user at the upstream IdP when it is due, in a short transaction of
    its own: the identity row is locked only for the IdP's answer, and what the IdP said (a
    rotated IdP refresh token, the time of the check) is kept even when the request then fails.
    Raises :class:`IdentityCheckFailed` once the family has been ended."""
    rt = runtime()
    if not rt.identities.recheck_due(family):
        return
    try:
        with separate_transaction() as session:
            rt.identities.recheck(session, family)
    except IdentityCheckFailed as exc:
        end_family(family, exc)
        raise


def end_family(family: FamilyRecord, exc: IdentityCheckFailed) -> None:
    """The IdP no longer vouches for the family's user: record that and revoke the family in a
    transaction of its own, which the error answer that follows does not roll back."""
    rt = runtime()
    family_id, identity_id = family.id, family.identity_id
    with separate_transaction() as session:
        if exc.disabled_at is not None and identity_id is not None:
            rt.identities.mark_disabled(session, identity_id, exc.disabled_at)
        rt.refresh.revoke_family(family_id, str(exc), session)


@dataclass
class RefreshCredential:
    token: TokenRecord
    family: FamilyRecord
    presented: str

    def check_client(self, client) -> bool:
        return self.family.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.family.scope


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True
    #: RFC 8707 §2: ``resource`` may be given several times
    REPEATABLE_PARAMETERS = frozenset({"resource"})

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshCredential | None:
        rt = runtime()
        with each_statement_commits() as connection:
            found = rt.refresh.lookup(refresh_token, connection)
        if found is None:
            return None
        token, family = found
        problem = rt.refresh.check_presented(token, family)  # a replay's revocation is already committed
        if problem:
            self._refused(family, problem)
        return RefreshCredential(token, family, refresh_token)

    def _refused(self, family: FamilyRecord, problem: str) -> NoReturn:
        audit("issue", "refused", subject=family.subject, client_id=family.client_id, reason=problem,
              grant_type="refresh_token")
        raise InvalidGrantError(problem)

    def validate_token_request(self) -> None:
        """RFC 6749 §6 as authlib checks it, with our scope rule: a narrower scope is one the
        family's scope covers by policy (``storage.read:/data`` covers ``storage.read:/data/ana``),
        not only a subset of its words."""
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'")
        self.request.client = client
        refresh_token = self.request.form.get("refresh_token")
        if refresh_token is None:
            raise InvalidRequestError("Missing 'refresh_token' in request.")
        credential = self.authenticate_refresh_token(refresh_token)
        if not credential or not credential.check_client(client):
            raise InvalidGrantError()
        self.check_narrower_scope(credential)
        self.request.refresh_token = credential

    def check_narrower_scope(self, credential: RefreshCredential) -> None:
        """A ``scope`` asked with the refresh must be within the family's (RFC 6749 §6)."""
        requested = self.request.payload.scope
        if not requested:
            return
        allowed = parse_scopes(credential.family.scope)
        for scope in requested_scopes(requested):
            if not policy_allows(allowed, scope):
                raise InvalidScopeError(f"scope {scope.raw} is wider than the original grant")

    def authenticate_user(self, credential: RefreshCredential) -> UserAuthorization:
        rt = runtime()
        family, client = credential.family, self.request.client
        audience = narrowed_audience(self.request.payload, from_text(family.audience))  # the family's, or narrower
        try:
            recheck_user(family)
        except IdentityCheckFailed as exc:
            raise InvalidGrantError(str(exc)) from None
        requested = self.request.payload.scope or family.scope
        decision = rt.user_scopes.grant_scopes(family.subject, parse_scopes(requested), client)
        if isinstance(decision, Refusal):
            audit("issue", "refused", subject=family.subject, client_id=client.client_id, scope=requested,
                  reason=decision.reason, grant_type="refresh_token")
            raise InvalidScopeError(decision.reason)
        return UserAuthorization(subject=family.subject, identity_id=family.identity_id, grant=decision,
                                 family_id=family.id, auth_time=family.created_at, audience=audience)

    def issue_token(self, user: UserAuthorization, credential: RefreshCredential) -> dict:
        """Mint the access token in the family, then rotate (the family's one successor): signing
        first keeps the claim's lock (a row on PostgreSQL, the database on SQLite) held only for
        the claim and the successor's INSERT (and SQLite's commit). On PostgreSQL that is one
        statement committing on its own."""
        token = self.generate_token(user=user, scope=user.grant.scope, include_refresh_token=False)
        try:
            with each_statement_commits() as connection:
                token["refresh_token"] = runtime().refresh.rotate(credential.token, credential.family,
                                                                  credential.presented, connection)
        except RefreshRefused as exc:
            self._refused(credential.family, str(exc))
        return token

    def revoke_old_credential(self, credential: RefreshCredential) -> None:
        """Nothing left to do: :meth:`issue_token` rotated the presented token."""
