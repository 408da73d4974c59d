"""OAuth 2.0 / OIDC protocol: authlib's server with this issuer's grants and endpoints."""

from __future__ import annotations

from flask import Flask

from .grants.client_credentials import ClientCredentialsGrant
from .introspection import IntrospectionEndpoint, RevocationEndpoint
from .registration import ConfigurationEndpoint, RegistrationEndpoint
from .server import authorization


def init_oauth(app: Flask) -> None:
    authorization.init_app(app)
    if authorization._token_grants:  # grants and endpoints are registered once per process
        return
    authorization.register_grant(ClientCredentialsGrant)
    authorization.register_endpoint(IntrospectionEndpoint)
    authorization.register_endpoint(RevocationEndpoint)
    authorization.register_endpoint(RegistrationEndpoint)
    authorization.register_endpoint(ConfigurationEndpoint)
