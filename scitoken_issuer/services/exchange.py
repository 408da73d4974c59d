"""RFC 8693 token exchange, the domain rules (docs/token-exchange.md): which subject tokens are
accepted, and how the exchanged token is bounded by its subject.

An exchange only ever attenuates. The subject token must be one this issuer signed and still
honours (signature with a published key, ``iss``, ``exp``, access-token claims, the revocation
list; for a refresh token its family's state). The new token's scopes must lie within the
subject's — compared by what verifiers read into each verb (the verb table,
``services/scope_verbs.py``), so a narrower path or a lesser verb passes and a wider one, another
verb or another profile's stronger reading does not — and it never ends later than the subject.
Its ``act`` claim names the exchanging client (RFC 8693 §4.1) above any earlier actor, and it
keeps the subject's refresh-family reference (``sid``), so revoking that family reaches it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .posix_rule import is_under
from .refresh import RefreshService
from .refresh_records import FamilyRecord
from .revocations import RevocationList
from .scope_verbs import Profile
from .scopes import Scope, ScopeError, parse_scopes
from .tokens import ANY_AUDIENCE_BY_PROFILE, SCITOKENS, WLCG, TokenService

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
REFRESH_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"
SUBJECT_TOKEN_TYPES = (ACCESS_TOKEN_TYPE, REFRESH_TOKEN_TYPE)
#: The "any audience" values: a subject carrying one may be narrowed to any audience.
ANY_AUDIENCES = frozenset(ANY_AUDIENCE_BY_PROFILE.values())
#: Nesting of ``act`` claims beyond which an exchange is refused (a chain that long is a loop).
MAX_ACTORS = 10


class ExchangeRefused(Exception):
    """An exchange the rules refuse: ``error`` is the RFC 8693 §2.2.2 / RFC 6749 §5.2 code."""

    def __init__(self, error: str, description: str):
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True)
class SubjectToken:
    """What the exchange needs to know of a verified subject token."""

    kind: str  # ACCESS_TOKEN_TYPE | REFRESH_TOKEN_TYPE
    subject: str
    client_id: str  # the client the subject token was issued to
    scopes: list[Scope]
    profile: Profile  # the profile its scopes are written in (what verifiers read into them)
    expires_at: int
    audience: list[str] | None  # None: any audience
    groups: list[str] | None  # its wlcg.groups claim; None: not bound (a refresh family's)
    act: dict | None = None
    sid: str | None = None  # an access token's family reference
    family: FamilyRecord | None = None  # a refresh token's family
    jti: str | None = None
    extra: dict = field(default_factory=dict)


def _profile_of(claims: dict) -> Profile:
    return SCITOKENS if claims.get("ver") == "scitoken:2.0" else WLCG


def _actor_depth(act: object) -> int:
    depth = 0
    while isinstance(act, dict):
        depth += 1
        act = act.get("act")
    return depth


class TokenExchange:
    """Verifies subject tokens and bounds exchanged tokens by them. Reads only; callers commit."""

    def __init__(self, tokens: TokenService, revocations: RevocationList, refresh: RefreshService,
                 default_profile: Profile):
        self.tokens = tokens
        self.revocations = revocations
        self.refresh = refresh
        self.default_profile = default_profile

    # -- the subject token --------------------------------------------------------------------
    def subject(self, token: str, token_type: str, client_profile=None) -> SubjectToken:
        """The verified subject token, or :class:`ExchangeRefused` (``invalid_request``, as
        RFC 8693 §2.2.2 asks for a subject token that is invalid or unacceptable).

        ``client_profile(client_id)`` answers the profile of a refresh family's client."""
        if token_type == ACCESS_TOKEN_TYPE:
            return self._access_subject(token)
        if token_type == REFRESH_TOKEN_TYPE:
            return self._refresh_subject(token, client_profile or (lambda client_id: self.default_profile))
        raise ExchangeRefused("invalid_request", "subject_token_type must be "
                              f"{ACCESS_TOKEN_TYPE} or {REFRESH_TOKEN_TYPE}")

    def _access_subject(self, token: str) -> SubjectToken:
        claims = self.tokens.verify(token)
        if claims is None:
            raise ExchangeRefused("invalid_request", "subject_token is not a valid access token of this issuer "
                                  "(signature, issuer, expiry and access-token claims are checked)")
        if self.revocations.is_revoked(claims):
            raise ExchangeRefused("invalid_request", "subject_token was revoked")
        try:
            scopes = parse_scopes(claims["scope"])
        except ScopeError:
            raise ExchangeRefused("invalid_request", "subject_token carries a scope this issuer no longer "
                                  "accepts") from None
        aud = claims.get("aud")
        values = [aud] if isinstance(aud, str) else [a for a in aud or [] if isinstance(a, str)]
        act = claims.get("act") if isinstance(claims.get("act"), dict) else None
        if _actor_depth(act) >= MAX_ACTORS:
            raise ExchangeRefused("invalid_request", f"subject_token was already exchanged {MAX_ACTORS} times")
        groups = claims.get("wlcg.groups")
        return SubjectToken(
            kind=ACCESS_TOKEN_TYPE, subject=claims["sub"], client_id=claims["client_id"], scopes=scopes,
            profile=_profile_of(claims), expires_at=claims["exp"],
            audience=None if not values or ANY_AUDIENCES & set(values) else values,
            groups=list(groups) if isinstance(groups, list) else [], act=act,
            sid=claims.get("sid") if isinstance(claims.get("sid"), str) else None, jti=claims["jti"])

    def _refresh_subject(self, token: str, client_profile) -> SubjectToken:
        found = self.refresh.lookup(token)
        if found is None:
            raise ExchangeRefused("invalid_request", "subject_token is not a refresh token of this issuer")
        row, family = found
        problem = self.refresh.check_presented(row, family)  # a replay after the grace window revokes
        if problem is None and row.rotated_at is not None:
            problem = "the refresh token was already used (present the family's current refresh token)"
        if problem is not None:
            raise ExchangeRefused("invalid_request", f"subject_token: {problem}")
        try:
            scopes = parse_scopes(family.scope)
        except ScopeError:
            raise ExchangeRefused("invalid_request", "subject_token carries a scope this issuer no longer "
                                  "accepts") from None
        audience = (family.audience or "").split() or None
        return SubjectToken(
            kind=REFRESH_TOKEN_TYPE, subject=family.subject, client_id=family.client_id, scopes=scopes,
            profile=client_profile(family.client_id), expires_at=min(row.expires_at, family.expires_at),
            audience=None if audience is None or ANY_AUDIENCES & set(audience) else audience,
            groups=None, family=family)

    # -- bounding the new token ---------------------------------------------------------------
    def requested_scopes(self, subject: SubjectToken, requested: list[Scope] | None) -> list[Scope]:
        """The scopes to decide: those asked, else the subject's (without ``offline_access``,
        which an exchange never gives). ``offline_access`` asked is ``invalid_scope``."""
        if requested is None:
            return [s for s in subject.scopes if s.kind != "offline_access"]
        for scope in requested:
            if scope.kind == "offline_access":
                raise ExchangeRefused("invalid_scope", "offline_access cannot be obtained by token exchange: "
                                      "an exchanged token never outlives its subject token")
        return requested

    def outside_subject(self, subject: SubjectToken, scopes: list[Scope], profile: Profile) -> Scope | None:
        """The first scope of a ``profile`` token that would give more than the subject token."""
        for scope in scopes:
            if not self.within_subject(subject, scope, profile):
                return scope
        return None

    @staticmethod
    def within_subject(subject: SubjectToken, scope: Scope, profile: Profile) -> bool:
        """Whether ``scope`` in a ``profile`` token gives no more than the subject's scopes.

        A storage scope needs subject scopes on its path or above that together stand for every
        permission its verb stands for *and* for everything verifiers read into it as written in
        ``profile`` (docs/scopes.md, columns "stands for" and "POSIX checks"): so ``create`` never
        becomes ``modify``, and a SciTokens ``create`` never becomes a WLCG ``storage.create``,
        which scitokens-cpp reads as ``write``. Groups follow the subject's group scopes (and its
        ``wlcg.groups`` claim); every other scope must be the subject's exactly.
        """
        if scope.kind == "storage":
            verb = scope.verb
            permissions, reads = set(verb.permissions), set(verb.checks(profile))
            for held in subject.scopes:
                if held.kind == "storage" and is_under(scope.path, held.path):
                    permissions -= set(held.verb.permissions)
                    reads -= set(held.verb.checks(subject.profile))
            return not permissions and not reads
        if scope.kind == "groups":
            if scope.path is not None and subject.groups is not None and scope.path not in subject.groups:
                return False
            return any(held.kind == "groups" and (held.path is None or (
                scope.path is not None and is_under(scope.path, held.path))) for held in subject.scopes)
        return any(held.raw == scope.raw for held in subject.scopes)

    @staticmethod
    def groups(subject: SubjectToken, decided: list[str]) -> list[str]:
        """The ``wlcg.groups`` of the new token: decided for the user, and the subject's."""
        return list(decided) if subject.groups is None else [g for g in decided if g in subject.groups]

    @staticmethod
    def audience(subject: SubjectToken, asked: list[str] | None) -> list[str] | None:
        """The new token's audience: within the subject's (RFC 8693 §2.1 ``audience``), else
        ``invalid_target``; unasked, the subject's (None: the profile's default)."""
        if asked is None:
            return subject.audience
        if subject.audience is not None:
            outside = [a for a in asked if a not in subject.audience]
            if outside:
                raise ExchangeRefused("invalid_target", f"audience {outside[0]} is outside the subject "
                                      "token's audience")
        return asked

    def lifetime(self, subject: SubjectToken, now: int | None = None) -> int:
        """Seconds the new token may live: the usual lifetime, never past the subject's end."""
        now = int(time.time()) if now is None else now
        left = subject.expires_at - now
        if left <= 0:
            raise ExchangeRefused("invalid_request", "subject_token has expired")
        return min(self.tokens.default_lifetime, left)

    @staticmethod
    def actor(client_id: str, subject: SubjectToken) -> dict:
        """RFC 8693 §4.1: the exchanging client acts; earlier actors nest below it."""
        act: dict = {"sub": client_id}
        if subject.act:
            act["act"] = subject.act
        return act

    def link_claims(self, subject: SubjectToken) -> dict:
        """Claims that tie the new token to the subject's refresh family (``sid``), so revoking
        the family revokes it (docs/revocation.md)."""
        if subject.family is not None:
            return {"sid": self.revocations.family_reference(subject.family.id)}
        return {"sid": subject.sid} if subject.sid else {}
