"""The token generator authlib calls for every grant: JWT access tokens in the client's profile."""

from __future__ import annotations

from ..extensions import runtime
from ..services.scopes import parse_scopes, render_scopes
from ..services.tokens import TokenRequest


def client_profile(client) -> str:
    return client.client_metadata.get("token_profile") or runtime().settings.token_profile


def generate_token(grant_type: str, client, user=None, scope: str | None = None,
                   expires_in: int | None = None, include_refresh_token: bool = True) -> dict:
    """Mint the access token (and, for users asking ``offline_access``, a refresh token).

    ``scope`` is the *granted* scope the grant decided; ``user`` is a
    :class:`~scitoken_issuer.services.policy.Authorization` for user grants, None for clients.
    """
    rt = runtime()
    profile = client_profile(client)
    scopes = render_scopes(parse_scopes(scope or ""), profile)
    if user is None:
        request = TokenRequest(subject=client.client_id, client_id=client.client_id, scopes=scopes,
                               grant_type=grant_type, profile=profile)
        minted = rt.tokens.mint(request)
        token = {"access_token": minted.token, "token_type": "Bearer", "expires_in": minted.expires_in}
    else:
        token = rt.refresh.issue_tokens(grant_type, client, user, scopes, profile,
                                        include_refresh_token=include_refresh_token)
    if scopes:
        token["scope"] = " ".join(scopes)
    return token
