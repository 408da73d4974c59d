"""RFC 7591 dynamic registration and RFC 7592 client configuration, over the client registry."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from authlib.oauth2.rfc7591 import ClientMetadataClaims, ClientRegistrationEndpoint
from authlib.oauth2.rfc7591 import InvalidClientMetadataError, InvalidRedirectURIError
from authlib.oauth2.rfc7592 import ClientConfigurationEndpoint
from flask import request as flask_request
from joserfc.errors import InvalidClaimError

from ..extensions import runtime
from ..services.clients import EXTENSION_FIELDS, ClientMetadataError, new_client_id
from ..services.secrets import new_secret
from .server import error_description


class IssuerClientMetadataClaims(ClientMetadataClaims):
    """RFC 7591 metadata plus this issuer's extensions (``token_profile``)."""

    REGISTERED_CLAIMS = ClientMetadataClaims.REGISTERED_CLAIMS + list(EXTENSION_FIELDS)

    def validate_redirect_uris(self):
        """Checked by :func:`~scitoken_issuer.services.clients.validate_metadata`, which answers
        ``invalid_redirect_uri`` as RFC 7591 §3.2.2 asks."""

    def validate_jwks(self):
        """A ``jwks`` that is not a key set is invalid metadata (joserfc raises TypeError on some)."""
        try:
            super().validate_jwks()
        except (TypeError, AttributeError, KeyError) as exc:
            raise InvalidClaimError("jwks") from exc


@dataclass(frozen=True)
class RegistrationCaller:
    """Who is registering: ``admin`` callers presented the ``ADMIN_TOKEN``."""

    admin: bool


def bearer_token() -> str | None:
    header = flask_request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def registration_caller() -> RegistrationCaller | None:
    """The caller per ``REGISTRATION``: open (anyone; admin with the token), admin, closed."""
    settings = runtime().settings
    token = bearer_token()
    admin = bool(token and settings.admin_token and hmac.compare_digest(token, settings.admin_token))
    if token and not admin:
        return None
    if settings.registration == "closed":
        return None
    if settings.registration == "admin" and not admin:
        return None
    return RegistrationCaller(admin=admin)


def _as_oauth_error(exc: ClientMetadataError):
    if exc.error == "invalid_redirect_uri":
        return InvalidRedirectURIError(error_description(exc.description))
    return InvalidClientMetadataError(error_description(exc.description))


class RegistrationEndpoint(ClientRegistrationEndpoint):
    def __init__(self, server=None):
        super().__init__(server, claims_classes=[IssuerClientMetadataClaims])

    def authenticate_token(self, request):
        return registration_caller()

    def get_server_metadata(self):
        """Nothing for authlib's generic checks: :func:`validate_metadata` checks every field
        against what this server supports, with messages that say what is wrong."""
        return {}

    def generate_client_id(self, request):
        return new_client_id()

    def generate_client_secret(self, request):
        return new_secret()

    def generate_client_info(self, request):
        info = super().generate_client_info(request)
        if request.payload.data.get("token_endpoint_auth_method") == "none":
            info.pop("client_secret")
        return info

    def save_client(self, client_info, client_metadata, request):
        try:
            registration = runtime().clients.register(
                client_metadata, admin=request.credential.admin,
                source="admin" if request.credential.admin else "dynamic",
                client_id=client_info["client_id"], client_secret=client_info.get("client_secret"))
        except ClientMetadataError as exc:
            raise _as_oauth_error(exc) from None
        request.registration = registration
        client_metadata.clear()
        client_metadata.update(registration.client.client_metadata)
        return registration.client

    def generate_client_registration_info(self, client, request):
        return {"registration_client_uri": runtime().clients.registration_uri(client),
                "registration_access_token": request.registration.registration_access_token}


@dataclass(frozen=True)
class RegistrationAccessToken:
    client_id: str

    def check_client(self, client) -> bool:
        return client.client_id == self.client_id


class ConfigurationEndpoint(ClientConfigurationEndpoint):
    """Read, update and delete a client with its registration access token (RFC 7592)."""

    def __init__(self, server=None):
        super().__init__(server, claims_classes=[IssuerClientMetadataClaims])

    def authenticate_token(self, request):
        token = bearer_token()
        client = runtime().clients.by_registration_token(token) if token else None
        return RegistrationAccessToken(client.client_id) if client else None

    def authenticate_client(self, request):
        return runtime().clients.get(flask_request.view_args.get("client_id"))

    def revoke_access_token(self, request, token):
        """Nothing to revoke: tokens are found through their client, so a deleted client's
        registration access token already matches nothing."""

    def check_permission(self, client, request):
        return client.source == "dynamic" or client.source == "admin"

    def delete_client(self, client, request):
        runtime().clients.delete(client)

    def update_client(self, client, client_metadata, request):
        try:
            return runtime().clients.update(client, client_metadata, admin=False)
        except ClientMetadataError as exc:
            raise _as_oauth_error(exc) from None

    def introspect_client(self, client):
        return {**client.client_info, **client.client_metadata}

    def generate_client_registration_info(self, client, request):
        return {"registration_client_uri": runtime().clients.registration_uri(client),
                "registration_access_token": bearer_token()}

    def get_server_metadata(self):
        return {}

