"""RFC 8414 / OpenID Connect Discovery metadata, derived from what this app's server registered
and from the grant and endpoint classes themselves."""

from __future__ import annotations

from flask import current_app

from ..extensions import authorization_server, runtime
from ..services.keys import ID_TOKEN_ALG
from .introspection import IntrospectionEndpoint, RevocationEndpoint
from .protocol import token_endpoint_auth_methods

SCOPES_SUPPORTED = [
    "openid", "profile", "email", "offline_access", "wlcg.groups",
    "storage.read:/", "storage.create:/", "storage.modify:/", "storage.stage:/",
    "read:/", "write:/", "compute.read", "compute.modify", "compute.create", "compute.cancel",
]


def _has(endpoint: str) -> bool:
    return endpoint in current_app.view_functions


def server_metadata() -> dict:
    """Every field advertises something this running issuer does."""
    settings = runtime().settings
    base = settings.issuer_address
    grants = list(authorization_server().grant_types)
    meta: dict = {
        "issuer": base,
        "jwks_uri": f"{base}/auth/certs",
        "token_endpoint": f"{base}/auth/token",
        "grant_types_supported": grants,
        "token_endpoint_auth_methods_supported": token_endpoint_auth_methods(),
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": [],
        "introspection_endpoint": f"{base}/auth/introspect",
        "introspection_endpoint_auth_methods_supported": IntrospectionEndpoint.CLIENT_AUTH_METHODS,
        "revocation_endpoint": f"{base}/auth/revoke",
        "revocation_endpoint_auth_methods_supported": RevocationEndpoint.CLIENT_AUTH_METHODS,
    }
    if settings.registration != "closed":
        meta["registration_endpoint"] = f"{base}/auth/client/registration"
    if _has("oauth.authorize.authorize"):
        meta.update({
            "authorization_endpoint": f"{base}/auth/authorize",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
        })
    if _has("oauth.userinfo.userinfo"):
        meta.update({
            "userinfo_endpoint": f"{base}/auth/userinfo",
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ID_TOKEN_ALG],  # OIDC Core §15.1
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "jti", "at_hash",
                                 "preferred_username", "name", "email", "wlcg.groups", "wlcg.ver"],
        })
    if _has("oauth.scopes.scopes"):  # this issuer's extension (docs/researchers.md)
        meta["storage_scopes_endpoint"] = f"{base}/auth/scopes"
    if _has("oauth.device.device_authorization"):
        meta["device_authorization_endpoint"] = f"{base}/auth/device/code"
    return meta
