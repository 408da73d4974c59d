"""RFC 8414 / OpenID Connect Discovery metadata, derived from what this app's server registered
and from the grant and endpoint classes themselves."""

from __future__ import annotations

from ..extensions import authorization_server, runtime
from ..urls import issuer_url, serves
from ..services.keys import ID_TOKEN_ALG
from .introspection import IntrospectionEndpoint, RevocationEndpoint
from .oidc import QueryResponseMode
from .protocol import token_endpoint_auth_methods

SCOPES_SUPPORTED = [
    "openid", "profile", "email", "offline_access", "wlcg.groups",
    "storage.read:/", "storage.create:/", "storage.modify:/", "storage.stage:/",
    "read:/", "write:/", "compute.read", "compute.modify", "compute.create", "compute.cancel",
]


def server_metadata() -> dict:
    """Every field advertises something this running issuer does."""
    settings = runtime().settings
    base = settings.issuer_address
    grants = list(authorization_server().grant_types)
    meta: dict = {
        "issuer": base,
        "jwks_uri": issuer_url("oauth.jwks.certs"),
        "token_endpoint": issuer_url("oauth.token.issue_token"),
        "grant_types_supported": grants,
        "token_endpoint_auth_methods_supported": token_endpoint_auth_methods(),
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": [],
        "introspection_endpoint": issuer_url("oauth.introspection.introspect"),
        "introspection_endpoint_auth_methods_supported": IntrospectionEndpoint.CLIENT_AUTH_METHODS,
        "revocation_endpoint": issuer_url("oauth.introspection.revoke"),
        "revocation_endpoint_auth_methods_supported": RevocationEndpoint.CLIENT_AUTH_METHODS,
    }
    if settings.registration != "closed":
        meta["registration_endpoint"] = issuer_url("oauth.registration.register")
    if serves("oauth.authorize.authorize"):
        meta.update({
            "authorization_endpoint": issuer_url("oauth.authorize.authorize"),
            "response_types_supported": ["code"],
            "response_modes_supported": list(QueryResponseMode.SUPPORTED),
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
        })
    if serves("oauth.userinfo.userinfo"):
        meta.update({
            "userinfo_endpoint": issuer_url("oauth.userinfo.userinfo"),
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ID_TOKEN_ALG],  # OIDC Core §15.1
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "jti", "at_hash",
                                 "preferred_username", "name", "email", "wlcg.groups", "wlcg.ver"],
        })
    if serves("oauth.scopes.scopes"):  # this issuer's extension (docs/researchers.md)
        meta["storage_scopes_endpoint"] = issuer_url("oauth.scopes.scopes")
    if serves("oauth.device_authorization.device_authorization"):
        meta["device_authorization_endpoint"] = issuer_url("oauth.device_authorization.device_authorization")
    return meta
