"""RFC 6749 §4.4 client credentials, for clients an administrator allowed (docs/tokens.md);
``audience`` narrows ``aud`` as in every grant (:mod:`scitoken_issuer.oauth2.audience`)."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidScopeError, grants

from ...extensions import runtime
from ...services.audit import audit
from ...services.policy import check_client_scopes, client_policy
from ...services.scopes import parse_scopes, render_scopes
from ...services.tokens import TokenRequest
from ..audience import requested_audience
from ..tokens import bearer_response, client_profile


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """Scopes come only from the client's registered policy: a request outside it is refused.

    With no ``scope`` parameter the client gets its whole registered scope (RFC 6749 §3.3).
    """

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    #: RFC 8707 §2: ``resource`` may be given several times
    REPEATABLE_PARAMETERS = frozenset({"resource"})

    def validate_requested_scope(self) -> None:
        super().validate_requested_scope()
        client = self.request.client
        requested = self.request.payload.scope
        scopes = parse_scopes(requested) if requested else client_policy(client, for_user=False)
        refusal = check_client_scopes(client, scopes, for_user=False)
        if refusal:
            audit("issue", "refused", subject=client.client_id, client_id=client.client_id,
                  scope=requested, reason=refusal.reason, grant_type=self.GRANT_TYPE)
            raise InvalidScopeError(refusal.reason)
        self.request.granted_scopes = scopes
        self.request.audience = requested_audience(self.request.payload)

    def create_token_response(self):
        client = self.request.client
        profile = client_profile(client)
        minted = runtime().tokens.mint(TokenRequest(
            subject=client.client_id, client_id=client.client_id,
            scopes=render_scopes(self.request.granted_scopes, profile),
            grant_type=self.GRANT_TYPE, profile=profile, audience=self.request.audience))
        token = bearer_response(minted)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER
