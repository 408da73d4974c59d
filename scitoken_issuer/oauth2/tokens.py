"""The token generator authlib calls for user grants: JWT access tokens in the client's profile,
and a refresh token when the user granted ``offline_access``."""

from __future__ import annotations

from dataclasses import dataclass

from flask import g

from ..extensions import runtime
from ..services.authorization import UserAuthorization
from ..services.scopes import parse_scopes, render_scopes
from ..services.tokens import MintedToken, TokenRequest
from .audience import to_text


def client_profile(client) -> str:
    """The client's token profile, as the scope decision saw it (docs/scopes.md, "Tokens")."""
    return runtime().policy.token_profile(client)


def user_info_claims(user: UserAuthorization, scope: str) -> dict:
    """OIDC claims about the user for the granted ``scope`` (id token and userinfo)."""
    scopes = set((scope or "").split())
    claims: dict = {"sub": user.subject}
    if "profile" in scopes:
        claims["preferred_username"] = user.subject
        if user.claims.get("name"):
            claims["name"] = user.claims["name"]
    if "email" in scopes and user.claims.get("email"):
        claims["email"] = user.claims["email"]
    if user.grant is not None and user.grant.groups:
        claims["wlcg.groups"] = list(user.grant.groups)
    return claims


@dataclass(frozen=True)
class Issued:
    """What :func:`generate_token` gave in this request: the access token's ``jti`` and ``exp``,
    and its refresh family (None without one). The code grant records it with the code it
    claims, to revoke it if the code comes back (RFC 6749 §4.1.2)."""

    jti: str
    expires_at: int
    family_id: str | None


def issued() -> Issued | None:
    """What this request's :func:`generate_token` issued."""
    return g.get("issued_tokens")


def bearer_response(minted: MintedToken) -> dict:
    """The RFC 6749 §5.1 body for a minted access token."""
    return {"access_token": minted.token, "token_type": "Bearer", "expires_in": minted.expires_in,
            "scope": minted.claims["scope"]}


def generate_token(grant_type: str, client, user: UserAuthorization | None = None, scope: str | None = None,
                   expires_in: int | None = None, include_refresh_token: bool = True) -> dict:
    """Mint the access token for ``user`` with the scopes the grant decided (``user.grant``).

    The access token belongs to the user's refresh family (``user.family_id``, a refresh) or to a
    new one when the user granted ``offline_access``; only a new family's first refresh token is
    issued here (the refresh grant adds the rotated successor itself). The new family's id is
    known before the signature; the family and its token are written when the request's
    transaction commits, so nothing here takes a write lock and an error answer stores neither."""
    rt = runtime()
    if user is None or user.grant is None:  # pragma: no cover - every user grant decides first
        raise RuntimeError(f"{grant_type}: token requested before the scopes were decided")
    granted = parse_scopes(scope) if scope is not None else user.grant.scopes
    profile = client_profile(client)
    family_id, new_family = user.family_id, None
    if family_id is None and include_refresh_token and client.check_grant_type("refresh_token") and \
            any(s.raw == "offline_access" for s in user.grant.scopes):
        new_family = rt.refresh.family_record(client.client_id, user.subject, user.grant.scope, user.identity_id,
                                              audience=to_text(user.audience))
        family_id = new_family.id
    minted = rt.tokens.mint(TokenRequest(
        subject=user.subject, client_id=client.client_id, scopes=render_scopes(granted, profile),
        grant_type=grant_type, profile=profile, audience=user.audience, groups=user.grant.groups,
        family_id=family_id))
    g.issued_tokens = Issued(minted.claims["jti"], minted.claims["exp"], family_id)
    token = bearer_response(minted)
    if new_family is not None:  # both written at the commit (RefreshService.store_family, issue)
        token["refresh_token"] = rt.refresh.issue(rt.refresh.store_family(new_family))
    return token
