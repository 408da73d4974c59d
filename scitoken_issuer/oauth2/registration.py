"""RFC 7591 dynamic registration and RFC 7592 client configuration, over the client registry.

Both endpoints are OAuth 2.0 protected resources (RFC 7591 §3, RFC 7592 §2): a missing or bad
bearer token is answered as RFC 6750 §3.1 says. Who may register and change what, and every
error with its status: docs/registration.md.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidRequestError, UnauthorizedClientError
from authlib.oauth2.rfc6750 import InvalidTokenError
from authlib.oauth2.rfc7591 import ClientMetadataClaims, ClientRegistrationEndpoint
from authlib.oauth2.rfc7591 import InvalidClientMetadataError, InvalidRedirectURIError
from authlib.oauth2.rfc7592 import ClientConfigurationEndpoint
from flask import request as flask_request
from joserfc.errors import InvalidClaimError

from ..extensions import runtime, separate_transaction
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

    def string_uri(self, key: str) -> None:
        """authlib's URL parser raises on a non-string; that is invalid metadata, not a 500."""
        value = self.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidClaimError(key)

    def validate_client_uri(self):
        self.string_uri("client_uri")
        super().validate_client_uri()

    def validate_logo_uri(self):
        self.string_uri("logo_uri")
        super().validate_logo_uri()

    def validate_tos_uri(self):
        self.string_uri("tos_uri")
        super().validate_tos_uri()

    def validate_policy_uri(self):
        self.string_uri("policy_uri")
        super().validate_policy_uri()

    def validate_jwks_uri(self):
        self.string_uri("jwks_uri")
        super().validate_jwks_uri()


@dataclass(frozen=True)
class Caller:
    """Who calls: the administrator (``ADMIN_TOKEN``), the holder of one client's registration
    access token (``client_id``), or nobody in particular (anonymous registration)."""

    admin: bool = False
    client_id: str | None = None

    def check_client(self, client) -> bool:
        """authlib's token hook: a registration access token is valid for its own client only."""
        return self.admin or client.client_id == self.client_id


class BearerTokenError(InvalidTokenError):
    """RFC 6750 §3.1: 401 ``invalid_token`` with ``WWW-Authenticate: Bearer error=...``; when no
    token was presented at all the challenge carries no error attribute (RFC 6750 §3.1)."""

    def __init__(self, description: str, *, missing: bool = False):
        super().__init__(error_description(description), realm=runtime().settings.issuer_address)
        self.missing = missing

    def get_headers(self):
        if not self.missing:
            return super().get_headers()
        return [*default_json_headers, ("WWW-Authenticate", f'Bearer realm="{self.realm}"')]


def bearer_token() -> str | None:
    header = flask_request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _is_admin(token: str) -> bool:
    admin_token = runtime().settings.admin_token
    return bool(admin_token) and hmac.compare_digest(token.encode(), admin_token.encode())


def _require_json_object() -> None:
    """RFC 7591 §3.2.2 / RFC 7592 §2.2: the body must be a JSON object (and not nested so deep
    that the JSON parser gives up with a RecursionError)."""
    try:
        body = flask_request.get_json(silent=True)
    except RecursionError:
        raise InvalidClientMetadataError("the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidClientMetadataError("the request body must be a JSON object")


def _as_oauth_error(exc: ClientMetadataError):
    if exc.error == "invalid_redirect_uri":
        return InvalidRedirectURIError(error_description(exc.description))
    return InvalidClientMetadataError(error_description(exc.description))


class RegistrationEndpoint(ClientRegistrationEndpoint):
    """RFC 7591 registration, open to the callers ``REGISTRATION`` allows."""

    def __init__(self, server=None):
        super().__init__(server, claims_classes=[IssuerClientMetadataClaims])

    def authenticate_token(self, request) -> Caller:
        """``open``: anyone (the admin token for privileged clients); ``admin``: the admin token;
        ``closed``: nobody (the CLI only). Any other bearer token is refused, never ignored."""
        token = bearer_token()
        mode = runtime().settings.registration
        if token is not None and not _is_admin(token):
            raise BearerTokenError("the bearer token is not valid here: send the administrator's token or none")
        if mode == "closed":
            raise AccessDeniedError("dynamic registration is closed on this issuer; ask its administrator",
                                    status_code=403)
        if token is None and mode == "admin":
            raise BearerTokenError("registration on this issuer needs the administrator's token", missing=True)
        return Caller(admin=token is not None)

    def create_registration_response(self, request):
        """authlib's flow, answered with the metadata as registered — normalised, defaults filled —
        rather than the request echoed back (RFC 7591 §3.2.1)."""
        request.credential = self.authenticate_token(request)
        client_metadata = self.extract_client_metadata(request)
        self.save_client(self.generate_client_info(request), client_metadata, request)
        registration = request.registration
        body = runtime().clients.information(
            registration.client, client_secret=registration.client_secret,
            registration_access_token=registration.registration_access_token)
        return 201, body, default_json_headers

    def extract_client_metadata(self, request):
        _require_json_object()
        if not request.payload.data:  # {}: the metadata rules say what is missing (authlib: a bare invalid_request)
            return {}
        return super().extract_client_metadata(request)

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
        admin = request.credential.admin
        try:
            registration = runtime().clients.register(
                client_metadata, admin=admin, source="admin" if admin else "dynamic",
                client_id=client_info["client_id"], client_secret=client_info.get("client_secret"))
        except ClientMetadataError as exc:
            raise _as_oauth_error(exc) from None
        request.registration = registration
        return registration.client


class ConfigurationEndpoint(ClientConfigurationEndpoint):
    """Read, update and delete a client (RFC 7592) with its registration access token, or with
    the administrator's token (``ADMIN_TOKEN``), which may manage every non-static client."""

    #: RFC 7592 §2.2: an update request must not carry these (they are the server's to set)
    SERVER_FIELDS = ("registration_access_token", "registration_client_uri",
                     "client_secret_expires_at", "client_id_issued_at")

    def __init__(self, server=None):
        super().__init__(server, claims_classes=[IssuerClientMetadataClaims])

    def authenticate_token(self, request) -> Caller:
        token = bearer_token()
        if token is None:
            raise BearerTokenError("a registration access token is required", missing=True)
        if _is_admin(token):
            return Caller(admin=True)
        client = runtime().clients.by_registration_token(token)
        if client is None:
            raise BearerTokenError("the registration access token is not valid: unknown, revoked, "
                                   "or its client was deleted")
        return Caller(client_id=client.client_id)

    def authenticate_client(self, request):
        """The client named in the URI. RFC 7592 §2.1-2.3: a client that does not exist is a 401
        and the token used is revoked; a token of another client is not valid for this one."""
        client = runtime().clients.get(flask_request.view_args.get("client_id"))
        if client is None:
            self.revoke_access_token(request, request.credential)
            raise BearerTokenError("no such client on this server; the registration access token used is revoked")
        if not request.credential.check_client(client):
            raise BearerTokenError("the registration access token is not valid for this client")
        return client

    def revoke_access_token(self, request, token: Caller) -> None:
        """Revoke the registration access token of ``token``'s client (the admin token stays), in a
        transaction of its own, because the 401 that follows rolls the request's work back."""
        client = None if token.admin else runtime().clients.get(token.client_id)
        if client is not None:
            with separate_transaction() as session:
                runtime().clients.revoke_registration_token(client, session)

    def check_permission(self, client, request) -> bool:
        """A static client (``STATIC_CLIENTS``) may be read but not changed over HTTP: 403
        (RFC 7592 §2.2/§2.3, a client not allowed to update or delete its record)."""
        if client.source == "static" and request.method != "GET":
            raise UnauthorizedClientError(f"{client.client_id} is defined in STATIC_CLIENTS; change it there",
                                          status_code=403)
        return True

    def create_update_client_response(self, client, request):
        _require_json_object()
        data = request.payload.data
        for name in self.SERVER_FIELDS:
            if name in data:
                raise InvalidRequestError(f"{name} is set by the server and must not be sent (RFC 7592 section 2.2)")
        if data.get("client_id") != client.client_id:
            raise InvalidRequestError("client_id must be sent and be this client's (RFC 7592 section 2.2)")
        if "client_secret" in data and not runtime().clients.check_secret(client, data["client_secret"]):
            raise InvalidRequestError("client_secret, when sent, must be the current one; "
                                      "a client cannot choose its secret (RFC 7592 section 2.2)")
        # the rest of authlib's RFC 7592 §2.2 response, through its public hooks (its own secret
        # check would ask the model; the registry checked it above)
        client_metadata = self.extract_client_metadata(request)
        client = self.update_client(client, client_metadata, request)
        return self.create_read_client_response(client, request)

    def delete_client(self, client, request):
        runtime().clients.delete(client)

    def update_client(self, client, client_metadata, request):
        try:
            return runtime().clients.update(client, client_metadata, admin=request.credential.admin,
                                            open_registration=runtime().settings.registration == "open")
        except ClientMetadataError as exc:
            raise _as_oauth_error(exc) from None

    def introspect_client(self, client):
        return runtime().clients.information(client)

    def generate_client_registration_info(self, client, request):
        """RFC 7592 §3: the client's own token back; the administrator's token is not the client's
        and is never echoed (the administrator gets the response without one)."""
        return {} if request.credential.admin else {"registration_access_token": bearer_token()}

    def get_server_metadata(self):
        return {}
