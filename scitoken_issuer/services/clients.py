"""Client registry: validation of client metadata, registration, update, deletion, static clients.

Shared by the RFC 7591/7592 endpoints, the admin CLI and start-up (``STATIC_CLIENTS``).
Privileged grants (client credentials, token exchange) are given only by an administrator.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select

from ..extensions import db
from ..models import Client
from ..models.clients import PRIVILEGED_GRANTS
from .audit import audit
from .scopes import ScopeError, parse_scopes
from .secrets import SecretBox, new_secret

logger = logging.getLogger(__name__)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
#: Every grant this issuer implements; the running server narrows it to what it registered.
SUPPORTED_GRANTS = frozenset({"authorization_code", "refresh_token", DEVICE_GRANT, "client_credentials"})
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
#: Metadata of this issuer beyond RFC 7591 that a client may register.
EXTENSION_FIELDS = ("token_profile",)
MAX_REDIRECT_URIS = 20
MAX_URI_LENGTH = 2000
MAX_TEXT_LENGTH = 200


def new_client_id() -> str:
    """128 random bits in hex: never starts with '-' (safe as a command-line argument)."""
    return uuid.uuid4().hex


class ClientMetadataError(ValueError):
    """Client metadata is invalid (RFC 7591 ``invalid_client_metadata`` / ``invalid_redirect_uri``)."""

    def __init__(self, description: str, error: str = "invalid_client_metadata"):
        super().__init__(description)
        self.description = description
        self.error = error


class PrivilegeError(ClientMetadataError):
    """A caller without administrator rights asked for a privileged grant."""


@dataclass
class Registration:
    client: Client
    client_secret: str | None
    registration_access_token: str | None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_redirect_uri(uri: object) -> str:
    """https anywhere, http only on loopback, or a private-use scheme with a dot (RFC 8252 §7)."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI_LENGTH:
        raise ClientMetadataError("each redirect_uri must be a string of at most 2000 characters",
                                  "invalid_redirect_uri")
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise ClientMetadataError(f"redirect_uri must not have a fragment: {uri}", "invalid_redirect_uri")
    if parts.scheme == "https" and parts.hostname:
        return uri
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return uri
    if parts.scheme not in ("http", "https", "") and "." in parts.scheme:
        return uri
    raise ClientMetadataError(f"redirect_uri must be https, http on a loopback address, or a "
                              f"private-use scheme: {uri}", "invalid_redirect_uri")


def validate_metadata(metadata: dict, *, admin: bool, current: Client | None = None,
                      supported_grants: frozenset[str] = SUPPORTED_GRANTS) -> dict:
    """Check and normalise client metadata; raise :class:`ClientMetadataError` naming the problem."""
    data = dict(metadata)
    grants = data.get("grant_types") or ["authorization_code"]
    if not isinstance(grants, list) or not all(isinstance(g, str) for g in grants):
        raise ClientMetadataError("grant_types must be a list of strings")
    privileged = PRIVILEGED_GRANTS & set(grants)
    already = PRIVILEGED_GRANTS & set(current.grant_types) if current else set()
    if privileged - already and not admin:
        raise PrivilegeError(f"grant_type {sorted(privileged - already)[0]} may only be given by an administrator")
    unknown = [g for g in grants if g not in supported_grants]
    if unknown:
        raise ClientMetadataError(f"unsupported grant_type: {unknown[0]}")
    data["grant_types"] = list(dict.fromkeys(grants))

    responses = data.get("response_types") or (["code"] if "authorization_code" in grants else [])
    if not isinstance(responses, list) or any(r != "code" for r in responses):
        raise ClientMetadataError("response_types may only contain 'code'")
    if responses and "authorization_code" not in grants:
        raise ClientMetadataError("response_type 'code' needs grant_type authorization_code")
    data["response_types"] = responses

    method = data.get("token_endpoint_auth_method") or "client_secret_basic"
    if method not in AUTH_METHODS:
        raise ClientMetadataError(f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}")
    if method == "none" and privileged:
        raise ClientMetadataError("a public client (token_endpoint_auth_method none) cannot use "
                                  f"{sorted(privileged)[0]}")
    data["token_endpoint_auth_method"] = method

    uris = data.get("redirect_uris") or []
    if not isinstance(uris, list) or len(uris) > MAX_REDIRECT_URIS:
        raise ClientMetadataError(f"redirect_uris must be a list of at most {MAX_REDIRECT_URIS} URIs",
                                  "invalid_redirect_uri")
    data["redirect_uris"] = [check_redirect_uri(uri) for uri in uris]
    if "authorization_code" in grants and not uris:
        raise ClientMetadataError("redirect_uris are required for grant_type authorization_code",
                                  "invalid_redirect_uri")

    scope = data.get("scope")
    if scope is not None:
        if not isinstance(scope, str) or len(scope) > 8192:
            raise ClientMetadataError("scope must be a space-separated string")
        try:
            data["scope"] = " ".join(s.raw for s in parse_scopes(scope))
        except ScopeError as exc:
            raise ClientMetadataError(f"invalid scope: {exc}") from None

    profile = data.get("token_profile")
    if profile is not None and profile not in ("wlcg", "scitokens"):
        raise ClientMetadataError("token_profile must be wlcg or scitokens")
    for name in ("client_name", "software_id", "software_version"):
        if name in data and (not isinstance(data[name], str) or len(data[name]) > MAX_TEXT_LENGTH):
            raise ClientMetadataError(f"{name} must be a string of at most {MAX_TEXT_LENGTH} characters")
    return {k: v for k, v in data.items() if v not in (None, "", [])}


class ClientRegistry:
    """Creates, reads, updates and deletes clients. Adds/flushes; callers commit."""

    def __init__(self, box: SecretBox, issuer: str):
        self.box = box
        self.issuer = issuer
        self.static: dict[str, Client] = {}
        #: the grant types the authorization server has registered (set in ``init_oauth``)
        self.supported_grants: frozenset[str] = SUPPORTED_GRANTS

    def get(self, client_id: object) -> Client | None:
        if not isinstance(client_id, str) or not client_id or len(client_id) > 128:
            return None
        return self.static.get(client_id) or db.session.get(Client, client_id)

    def list(self) -> list[Client]:
        stored = db.session.execute(select(Client).order_by(Client.client_id)).scalars()
        return sorted([*self.static.values(), *stored], key=lambda c: c.client_id)

    def registration_uri(self, client: Client) -> str:
        return f"{self.issuer}/auth/client/registration/{client.client_id}"

    def register(self, metadata: dict, *, admin: bool, source: str = "dynamic",
                 client_id: str | None = None, client_secret: str | None = None,
                 with_registration_token: bool = True) -> Registration:
        data = validate_metadata(metadata, admin=admin, supported_grants=self.supported_grants)
        client_id = client_id or new_client_id()
        if not isinstance(client_id, str) or not 1 <= len(client_id) <= 128:
            raise ClientMetadataError("client_id must be 1 to 128 characters")
        if self.get(client_id) is not None:
            raise ClientMetadataError(f"client_id {client_id} is already registered")
        secret = None
        if data["token_endpoint_auth_method"] != "none":
            secret = client_secret or new_secret()
        token = new_secret() if with_registration_token else None
        client = Client(
            client_id=client_id, client_secret_hash=self.box.hash(secret) if secret else None,
            client_id_issued_at=int(time.time()), client_secret_expires_at=0,
            registration_token_hash=self.box.hash(token) if token else None,
            source=source, client_metadata=data)
        db.session.add(client)
        db.session.flush()
        audit("register", "created", client_id=client_id, scope=data.get("scope"), source=source,
              grant_types=data["grant_types"])
        return Registration(client, secret, token)

    def update(self, client: Client, metadata: dict, *, admin: bool) -> Client:
        data = validate_metadata(metadata, admin=admin, current=client, supported_grants=self.supported_grants)
        if data["token_endpoint_auth_method"] == "none":
            client.client_secret_hash = None
        elif client.client_secret_hash is None:
            raise ClientMetadataError("a public client cannot become confidential; register a new client")
        client.client_metadata = data
        db.session.flush()
        audit("register", "updated", client_id=client.client_id, scope=data.get("scope"))
        return client

    def delete(self, client: Client) -> None:
        db.session.delete(client)
        db.session.flush()
        audit("register", "deleted", client_id=client.client_id)

    def by_registration_token(self, token: str) -> Client | None:
        if not token:
            return None
        digest = self.box.hash(token)
        return db.session.execute(
            select(Client).where(Client.registration_token_hash == digest)).scalar_one_or_none()

    def load_static(self, static_clients: list[dict]) -> None:
        """Build the operator's ``STATIC_CLIENTS`` in memory (never written to the database);
        being the operator's, they may hold privileged grants."""
        static = {}
        for index, entry in enumerate(static_clients):
            entry = dict(entry)
            client_id = entry.pop("client_id")
            secret = entry.pop("client_secret", None)
            try:
                data = validate_metadata(entry, admin=True, supported_grants=self.supported_grants)
            except ClientMetadataError as exc:
                raise ValueError(f"entry {index} ({client_id}): {exc.description}") from None
            if data["token_endpoint_auth_method"] != "none" and not secret:
                raise ValueError(f"entry {index} ({client_id}): client_secret is required")
            static[client_id] = Client(
                client_id=client_id, client_secret_hash=self.box.hash(secret) if secret else None,
                client_id_issued_at=0, client_secret_expires_at=0, registration_token_hash=None,
                source="static", client_metadata=data)
        self.static = static
