"""The one declared list of grants and endpoints this issuer runs (docs/architecture.md).

``init_oauth`` builds one authorization server per app from it; everything that must know which
grants run (discovery metadata, the grant types a client may register, ``STATIC_CLIENTS``,
metrics) reads :data:`GRANT_TYPES` or the server built from :data:`GRANTS`, never authlib's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from authlib.oauth2.rfc9207 import IssuerParameter

from ..services.clients import ClientRegistry
from .client_secrets import SecretAuthentication
from .device import DeviceAuthorizationEndpoint
from .grants.authorization_code import AuthorizationCodeGrant, StrictCodeChallenge
from .grants.client_credentials import ClientCredentialsGrant
from .grants.device_code import DeviceCodeGrant
from .grants.refresh_token import RefreshTokenGrant
from .grants.token_exchange import TokenExchangeGrant
from .introspection import IntrospectionEndpoint, RevocationEndpoint
from .oidc import DeviceIDToken, NoRequestObjects, OpenIDCode, QueryResponseMode
from .registration import ConfigurationEndpoint, RegistrationEndpoint
from .server import AuthorizationServer


@dataclass(frozen=True)
class GrantSpec:
    """A grant class and a factory of its extensions (new objects for every server)."""

    grant: type
    extensions: Callable[[], list] = field(default=list)

    @property
    def grant_type(self) -> str:
        return self.grant.GRANT_TYPE

    @property
    def repeatable(self) -> frozenset[str]:
        """The token-request parameters this grant accepts more than once (RFC 6749 §3.2: none,
        unless the grant's own RFC says so)."""
        return getattr(self.grant, "REPEATABLE_PARAMETERS", frozenset())


#: The token endpoint's grants, in the order discovery lists them.
GRANTS: tuple[GrantSpec, ...] = (
    # hooks run in this order (grants/hooks.py): a request object is refused before PKCE and nonce
    # are looked for outside it, since a client that sends one puts them inside
    GrantSpec(AuthorizationCodeGrant, lambda: [NoRequestObjects(), QueryResponseMode(),
                                               StrictCodeChallenge(required=True), OpenIDCode()]),
    GrantSpec(RefreshTokenGrant),
    GrantSpec(DeviceCodeGrant, lambda: [DeviceIDToken()]),
    GrantSpec(ClientCredentialsGrant),
    GrantSpec(TokenExchangeGrant),  # RFC 8693 (docs/token-exchange.md)
)
#: The endpoints besides the token and authorization endpoints.
ENDPOINTS: tuple[type, ...] = (DeviceAuthorizationEndpoint, IntrospectionEndpoint, RevocationEndpoint,
                               RegistrationEndpoint, ConfigurationEndpoint)
GRANT_TYPES: tuple[str, ...] = tuple(spec.grant_type for spec in GRANTS)


def token_endpoint_auth_methods() -> list[str]:
    """Every client authentication method some grant accepts at the token endpoint, read from
    the grant classes (their ``TOKEN_ENDPOINT_AUTH_METHODS``)."""
    return list(dict.fromkeys(method for spec in GRANTS for method in spec.grant.TOKEN_ENDPOINT_AUTH_METHODS))


def build_authorization_server(clients: ClientRegistry, issuer: str) -> AuthorizationServer:
    """A new server with every declared grant, endpoint and extension (one per app)."""
    server = AuthorizationServer(clients, GRANT_TYPES, realm=issuer,
                                 repeatable={spec.grant_type: spec.repeatable for spec in GRANTS})
    for spec in GRANTS:
        server.register_grant(spec.grant, spec.extensions())
    for endpoint in ENDPOINTS:
        server.register_endpoint(endpoint)
    server.register_extension(Issuer(issuer))
    secrets = SecretAuthentication(clients)
    server.register_client_auth_method("client_secret_basic", secrets.basic)
    server.register_client_auth_method("client_secret_post", secrets.post)
    return server


class Issuer(IssuerParameter):
    """RFC 9207: the ``iss`` parameter on every authorization response."""

    def __init__(self, issuer: str):
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer
