"""Access-token minting in the WLCG 1.0 and SciTokens 2.0 profiles (docs/tokens.md), and verification.

Access tokens are JWTs signed with the current key and self-contained: minting writes nothing.
What introspection (RFC 7662) must know beyond the signature and expiry — that a token was
revoked (RFC 7009) — is kept in the revocation list (docs/revocation.md). A token given from a
refresh family carries the family's reference in ``sid``, so revoking the family reaches it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .audit import audit
from .keys import KeyStore
from .revocations import RevocationList

logger = logging.getLogger(__name__)

WLCG = "wlcg"
SCITOKENS = "scitokens"
#: The "any audience" value each profile's verifiers accept (WLCG JWT profile §2.3; SciTokens 2.0):
#: scitokens-cpp honours each only in tokens of its own profile.
WLCG_ANY_AUDIENCE = "https://wlcg.cern.ch/jwt/v1/any"
SCITOKENS_ANY_AUDIENCE = "ANY"
ANY_AUDIENCE_BY_PROFILE = {WLCG: WLCG_ANY_AUDIENCE, SCITOKENS: SCITOKENS_ANY_AUDIENCE}
#: how many checked tokens a process remembers, by their exact text (docs/revocation.md)
CHECKED_TOKENS = 1024


@dataclass(frozen=True)
class TokenRequest:
    """What an access token says, decided by the grant before minting."""

    subject: str
    client_id: str
    scopes: list[str]
    grant_type: str
    profile: str = WLCG
    audience: str | list[str] | None = None
    groups: list[str] = field(default_factory=list)  # wlcg.groups values, e.g. ["/atlas"]
    lifetime: int | None = None
    not_after: int | None = None  # the latest ``exp`` allowed (an exchanged token's subject's end)
    family_id: str | None = None
    extra_claims: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MintedToken:
    token: str
    claims: dict
    expires_in: int


class TokenService:
    """Mints signed access tokens and answers what the issuer knows about one."""

    #: claims that make a JWT of this issuer an access token (an ID token has no client_id or scope)
    ACCESS_TOKEN_CLAIMS = {"jti": str, "sub": str, "client_id": str, "scope": str, "iat": int, "exp": int}

    def __init__(self, keys: KeyStore, issuer: str, site_audience: str | None, default_lifetime: int,
                 revocations: RevocationList):
        self.keys = keys
        self.revocations = revocations
        self.issuer = issuer
        self.site_audience = site_audience
        self.default_lifetime = default_lifetime
        #: the key ids of the published keys last verified with, and the check of a token's text
        #: against those keys (remembered for the last CHECKED_TOKENS tokens; a new key set starts
        #: afresh)
        self._checked: tuple[tuple[str, ...], Callable[[str], dict | None] | None] = ((), None)

    def default_audience(self, profile: str) -> str:
        """The site's ``AUDIENCE`` when set, else the profile's "any" audience."""
        return self.site_audience or ANY_AUDIENCE_BY_PROFILE[profile]

    def claims_for(self, request: TokenRequest, now: int | None = None) -> dict:
        now = int(time.time()) if now is None else now
        lifetime = request.lifetime or self.default_lifetime
        claims = {
            "iss": self.issuer,
            "sub": request.subject,
            "aud": request.audience or self.default_audience(request.profile),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime if request.not_after is None else min(now + lifetime, request.not_after),
            "jti": str(uuid.uuid4()),
            "scope": " ".join(request.scopes),
            "client_id": request.client_id,
        }
        if request.family_id:
            claims["sid"] = self.revocations.family_reference(request.family_id)
        if request.profile == SCITOKENS:
            claims["ver"] = "scitoken:2.0"
        else:
            claims["wlcg.ver"] = "1.0"
            if request.groups:
                claims["wlcg.groups"] = list(request.groups)
        claims.update(request.extra_claims)
        return claims

    def mint(self, request: TokenRequest) -> MintedToken:
        """Sign an access token and audit it; nothing is stored."""
        key = self.keys.signing_key()
        claims = self.claims_for(request)
        header = {"alg": key.alg, "kid": key.kid, "typ": "JWT"}
        token = jwt.encode(header, claims, key.private)
        audit("issue", "granted", subject=request.subject, client_id=request.client_id,
              scope=claims["scope"], jti=claims["jti"], grant_type=request.grant_type)
        return MintedToken(token, claims, claims["exp"] - claims["iat"])

    def verify(self, token: str) -> dict | None:
        """Claims of an access token this issuer signed with a published key and that has not
        expired (revocation is the caller's question: :meth:`RevocationList.is_revoked`).

        What a token's text proves — its signature, issuer and claims — cannot change while the
        published keys stay the same, so the answer is remembered per key set for the last
        :data:`CHECKED_TOKENS` tokens (a resource server introspects the same token again and
        again); expiry is checked on every call."""
        keys = self.keys.published()
        if not keys or not isinstance(token, str) or len(token) > 16384:
            return None
        kids = tuple(k.kid for k in keys)  # the set, not the list: published() builds a new list each second
        checked = self._checked  # one read: another thread may replace it
        if checked[0] != kids:
            check = lru_cache(maxsize=CHECKED_TOKENS)(partial(self._check, KeySet([k.private for k in keys])))
            checked = self._checked = (kids, check)
        claims = checked[1](token)
        return dict(claims) if claims is not None and claims["exp"] > time.time() else None

    def _check(self, key_set: KeySet, token: str) -> dict | None:
        """The claims of ``token`` when ``key_set`` verifies its signature and it is an access
        token of this issuer (whatever its expiry)."""
        try:
            claims = jwt.decode(token, key_set, algorithms=["RS256", "ES256"]).claims
        except (JoseError, ValueError, TypeError):
            return None
        if claims.get("iss") != self.issuer or any(
                not isinstance(claims.get(name), kind) for name, kind in self.ACCESS_TOKEN_CLAIMS.items()):
            return None
        return claims
