"""OAuth 2.0 / OIDC protocol: authlib's server with this issuer's grants and endpoints."""

from __future__ import annotations

from authlib.oauth2.rfc9207 import IssuerParameter
from flask import Flask

from ..extensions import runtime
from .device import DeviceAuthorizationEndpoint
from .grants.authorization_code import AuthorizationCodeGrant, StrictCodeChallenge
from .grants.client_credentials import ClientCredentialsGrant
from .grants.device_code import DeviceCodeGrant
from .grants.refresh_token import RefreshTokenGrant
from .grants.token_exchange import TokenExchangeGrant
from .introspection import IntrospectionEndpoint, RevocationEndpoint
from .oidc import DeviceIDToken, NoRequestObjects, OpenIDCode
from .registration import ConfigurationEndpoint, RegistrationEndpoint
from .server import authorization


def init_oauth(app: Flask) -> None:
    authorization.init_app(app)
    if not authorization._token_grants:  # grants and endpoints are registered once per process
        register_protocol()
    clients = app.extensions["scitoken_issuer"].clients
    clients.supported_grants = frozenset(grant.GRANT_TYPE for grant, _ in authorization._token_grants)


class Issuer(IssuerParameter):
    """RFC 9207: the ``iss`` parameter on every authorization response."""

    def get_issuer(self) -> str:
        return runtime().settings.issuer_address


def register_protocol() -> None:
    authorization.register_grant(AuthorizationCodeGrant,
                                 [StrictCodeChallenge(required=True), OpenIDCode(), NoRequestObjects()])
    authorization.register_grant(RefreshTokenGrant)
    authorization.register_grant(DeviceCodeGrant, [DeviceIDToken()])
    authorization.register_endpoint(DeviceAuthorizationEndpoint)
    authorization.register_extension(Issuer())
    authorization.register_grant(ClientCredentialsGrant)
    authorization.register_grant(TokenExchangeGrant)  # RFC 8693 (docs/token-exchange.md)
    authorization.register_endpoint(IntrospectionEndpoint)
    authorization.register_endpoint(RevocationEndpoint)
    authorization.register_endpoint(RegistrationEndpoint)
    authorization.register_endpoint(ConfigurationEndpoint)
