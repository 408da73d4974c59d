"""Client registry: validation of client metadata, registration, update, deletion, static clients.

Shared by the RFC 7591/7592 endpoints, the admin CLI and start-up (``STATIC_CLIENTS``).
Privileged grants (client credentials, token exchange) are given only by an administrator, and
an update never gives a client more than its caller could have registered (docs/registration.md).
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..extensions import db
from ..models import Client
from ..models.clients import PRIVILEGED_GRANTS
from .audit import audit
from .client_fields import (ClientMetadataError, PrivilegeError, check_redirect_uri, check_text,
                            check_uri_characters)
from .revocations import RevocationList
from .scopes import ScopeError, parse_scopes
from .secrets import SecretBox, new_secret
from .state_version import Stamp, StateVersion

logger = logging.getLogger(__name__)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
#: Metadata of this issuer beyond RFC 7591 that a client may register.
EXTENSION_FIELDS = ("token_profile",)
#: Settings of a client that only an administrator makes, outside the client's metadata.
ADMIN_ONLY_FIELDS = ("pkce_required",)
MAX_REDIRECT_URIS = 20
MAX_CONTACTS = 20
#: Free-text metadata, shown to people (the consent page shows ``client_name``).
TEXT_FIELDS = ("client_name", "software_id", "software_version")
#: URI metadata other than ``redirect_uris``; authlib checks their shape, we check their characters.
URI_FIELDS = ("client_uri", "logo_uri", "tos_uri", "policy_uri", "jwks_uri")
#: The fields that decide what a client may obtain. On a client whose policy is the administrator's
#: (docs/registration.md, "Updates") only the administrator may change them.
POLICY_FIELDS = ("scope", "grant_types")


def possible_client_id(client_id: object) -> bool:
    """Whether ``client_id`` could name a client: 1 to 128 characters without NUL (which
    PostgreSQL cannot hold in text, and refuses with an error rather than finding nothing)."""
    return isinstance(client_id, str) and 0 < len(client_id) <= 128 and "\x00" not in client_id


def new_client_id() -> str:
    """128 random bits in hex: never starts with '-' (safe as a command-line argument)."""
    return uuid.uuid4().hex


@dataclass
class Registration:
    client: Client
    client_secret: str | None
    registration_access_token: str | None


def validate_metadata(metadata: dict, *, admin: bool, current: Client | None = None,
                      supported_grants: frozenset[str]) -> dict:
    """Check and normalise client metadata as a registration by this caller; raise
    :class:`ClientMetadataError` naming the problem. Defaults are filled in and duplicates dropped,
    so the result is the metadata as registered (RFC 7591 §3.2.1). Nothing is inherited from a
    ``current`` client: :meth:`ClientRegistry.update` validates an update as a fresh registration."""
    data = dict(metadata)
    for name in ADMIN_ONLY_FIELDS:
        if name in data:
            raise ClientMetadataError(f"{name} is not client metadata: only an administrator sets it "
                                      "(scitoken-issuer client add/update, STATIC_CLIENTS)")
    grants = data.get("grant_types") or ["authorization_code"]
    if not isinstance(grants, list) or not all(isinstance(g, str) for g in grants):
        raise ClientMetadataError("grant_types must be a list of strings")
    privileged = PRIVILEGED_GRANTS & set(grants)
    if privileged and not admin:
        raise PrivilegeError(f"grant_type {sorted(privileged)[0]} may only be given by an administrator")
    unknown = [g for g in grants if g not in supported_grants]
    if unknown:
        raise ClientMetadataError(f"unsupported grant_type: {unknown[0]}")
    data["grant_types"] = list(dict.fromkeys(grants))

    responses = data.get("response_types") or (["code"] if "authorization_code" in grants else [])
    if not isinstance(responses, list) or any(r != "code" for r in responses):
        raise ClientMetadataError("response_types may only contain 'code'")
    if responses and "authorization_code" not in grants:
        raise ClientMetadataError("response_type 'code' needs grant_type authorization_code")
    data["response_types"] = list(dict.fromkeys(responses))

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
    data["redirect_uris"] = list(dict.fromkeys(check_redirect_uri(uri) for uri in uris))
    if "authorization_code" in grants and not uris:
        raise ClientMetadataError("redirect_uris are required for grant_type authorization_code",
                                  "invalid_redirect_uri")

    scope = data.get("scope")
    if scope is not None:
        if not isinstance(scope, str) or len(scope) > 8192:
            raise ClientMetadataError("scope must be a space-separated string")
        try:
            parsed = parse_scopes(scope)
        except ScopeError as exc:
            raise ClientMetadataError(f"invalid scope: {exc}") from None
        admin_only = next((s.raw for s in parsed if s.kind == "admin"), None)
        if admin_only and not admin:  # docs/scopes.md, "Administrator-only scopes"
            raise PrivilegeError(f"scope {admin_only} is administrator-only (compute and HTCondor scopes "
                                 "are set only by an administrator)")
        data["scope"] = " ".join(s.raw for s in parsed)

    profile = data.get("token_profile")
    if profile is not None and profile not in ("wlcg", "scitokens"):
        raise ClientMetadataError("token_profile must be wlcg or scitokens")
    for name in TEXT_FIELDS:
        if data.get(name) is not None:
            check_text(name, data[name])
    for name in URI_FIELDS:
        if data.get(name) not in (None, ""):
            check_uri_characters(name, data[name])
    contacts = data.get("contacts") or []
    if not isinstance(contacts, list) or len(contacts) > MAX_CONTACTS:
        raise ClientMetadataError(f"contacts must be a list of at most {MAX_CONTACTS} strings")
    data["contacts"] = list(dict.fromkeys(check_text("contacts", c) for c in contacts))
    # response_types [] says "no response type", unlike an absent one (RFC 7591 §2: "code")
    return {k: v for k, v in data.items() if v not in (None, "", []) or k == "response_types"}


def check_pkce_exemption(metadata: dict, pkce_required: object, *, admin: bool) -> None:
    """Only an administrator exempts a client from PKCE, and never a public one (RFC 9700 §2.1.1)."""
    if not isinstance(pkce_required, bool):
        raise ClientMetadataError("pkce_required must be true or false")
    if pkce_required:
        return
    if not admin:
        raise PrivilegeError("only an administrator may exempt a client from PKCE")
    if (metadata.get("token_endpoint_auth_method") or "client_secret_basic") == "none":
        raise ClientMetadataError("a public client cannot be exempted from PKCE")


#: Clients this process keeps copies of at most (the copies are dropped all at once beyond).
CACHED_CLIENTS = 4096


class ClientRegistry:
    """Creates, reads, updates and deletes clients. Adds/flushes; callers commit.

    :meth:`lookup` answers the hot paths (client authentication at the token, introspection,
    revocation and device endpoints) from a copy per process, reloaded as ``version`` says
    (docs/revocation.md); everything that changes a client reads it with :meth:`get`.
    """

    def __init__(self, box: SecretBox, registration_uri: Callable[[str], str], supported_grants: frozenset[str],
                 version: StateVersion, revocations: RevocationList):
        self.box = box
        #: client_id -> its RFC 7592 configuration endpoint URL
        self.configuration_uri = registration_uri
        #: the grant types the authorization server runs (``oauth2.protocol.GRANT_TYPES``)
        self.supported_grants = supported_grants
        self.version = version
        self.revocations = revocations
        self.static: dict[str, Client] = {}
        self._copies: dict[str, tuple[Stamp, Client]] = {}

    def get(self, client_id: object) -> Client | None:
        """The client as stored (attached to the session: changes to it are saved)."""
        if not possible_client_id(client_id):
            return None
        return self.static.get(client_id) or db.session.get(Client, client_id)

    def check_secret(self, client: Client, client_secret: object) -> bool:
        """Whether ``client_secret`` is the client's secret (compared as keyed hashes)."""
        if not client.client_secret_hash or not isinstance(client_secret, str):
            return False
        return hmac.compare_digest(self.box.hash(client_secret), client.client_secret_hash)

    def lookup(self, client_id: object) -> Client | None:
        """The client for authentication, read-only: a detached copy while it is fresh."""
        if not possible_client_id(client_id):
            return None
        if client_id in self.static:
            return self.static[client_id]
        now = self.version.stamp()
        cached = self._copies.get(client_id)
        if cached is not None and self.version.fresh(cached[0], now):
            return cached[1]
        row = db.session.get(Client, client_id)
        if row is None:
            self._copies.pop(client_id, None)
            return None
        copy = Client(**{column.key: getattr(row, column.key) for column in Client.__table__.columns})
        if len(self._copies) >= CACHED_CLIENTS:
            self._copies.clear()
        self._copies[client_id] = (now, copy)
        return copy

    def list(self) -> list[Client]:
        stored = db.session.execute(select(Client).order_by(Client.client_id)).scalars()
        return sorted([*self.static.values(), *stored], key=lambda c: c.client_id)

    def registration_uri(self, client: Client) -> str:
        return self.configuration_uri(client.client_id)

    def register(self, metadata: dict, *, admin: bool, source: str = "dynamic",
                 client_id: str | None = None, client_secret: str | None = None,
                 with_registration_token: bool = True, pkce_required: bool = True) -> Registration:
        data = validate_metadata(metadata, admin=admin, supported_grants=self.supported_grants)
        check_pkce_exemption(data, pkce_required, admin=admin)
        client_id = client_id or new_client_id()
        if not possible_client_id(client_id) or not client_id.isprintable():
            raise ClientMetadataError("client_id must be 1 to 128 printable characters")
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
            source=source, client_metadata=data, pkce_required=pkce_required)
        db.session.add(client)
        db.session.flush()
        self.version.will_change(db.session)
        audit("register", "created", client_id=client_id, scope=data.get("scope"), source=source,
              grant_types=data["grant_types"])
        return Registration(client, secret, token)

    def update(self, client: Client, metadata: dict, *, admin: bool, open_registration: bool = True) -> Client:
        """Replace a client's metadata (RFC 7592 §2.2); never more than the caller could register.

        An administrator may change anything, and the client's policy is then the administrator's.
        Anyone else (the holder of the registration access token) is validated as a fresh anonymous
        registration, except that the :data:`POLICY_FIELDS` of a client whose policy is the
        administrator's — or of any client while registration is not open — stay as they are.
        """
        if client.source == "static":
            raise ClientMetadataError(f"{client.client_id} is defined in STATIC_CLIENTS; change it there")
        if admin:
            data = validate_metadata(metadata, admin=True, supported_grants=self.supported_grants)
        elif self.policy_locked(client, open_registration=open_registration):
            # admin=True only relaxes the policy fields, which here keep the administrator's values
            data = validate_metadata(self._keep_policy(client, metadata), admin=True,
                                     supported_grants=self.supported_grants)
        else:
            data = validate_metadata(metadata, admin=False, supported_grants=self.supported_grants)
        if data["token_endpoint_auth_method"] == "none":
            client.client_secret_hash = None
        elif client.client_secret_hash is None:
            raise ClientMetadataError("a public client cannot become confidential; register a new client")
        client.client_metadata = data
        if admin:
            client.source = "admin"
        db.session.flush()
        self.version.will_change(db.session)
        audit("register", "updated", client_id=client.client_id, scope=data.get("scope"),
              grant_types=data["grant_types"], by="admin" if admin else "registration_token")
        return client

    @staticmethod
    def policy_locked(client: Client, *, open_registration: bool) -> bool:
        """Whether only an administrator may change the client's :data:`POLICY_FIELDS`."""
        return client.source != "dynamic" or client.privileged or not open_registration

    @staticmethod
    def _keep_policy(client: Client, metadata: dict) -> dict:
        """``metadata`` with the client's own policy fields; an omitted or empty one is kept
        (RFC 7592 §2.2 lets the server ignore it), a different one is refused by name."""
        kept = dict(metadata)
        current = {"scope": set(client.scope.split()), "grant_types": set(client.grant_types)}
        for name in POLICY_FIELDS:
            value = kept.get(name)
            if value in (None, "", []):
                kept[name] = client.client_metadata.get(name)
                continue
            # the same set in another order or with repeats is no change; anything else is
            asked = (set(value.split()) if isinstance(value, str) else None) if name == "scope" else (
                set(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else None)
            if asked != current[name]:
                raise PrivilegeError(f"{name} of this client is set by an administrator; "
                                     f"a registration access token may not change it")
        return kept

    def information(self, client: Client, *, client_secret: str | None = None,
                    registration_access_token: str | None = None) -> dict:
        """The client information response (RFC 7591 §3.2.1, RFC 7592 §3): the metadata as
        registered, the client's identifiers, and what to manage it with. Secrets are stored only
        as hashes, so ``client_secret`` appears only when it was just issued."""
        info = {**client.client_metadata, **client.client_info,
                "registration_client_uri": self.registration_uri(client)}
        if client_secret:
            info["client_secret"] = client_secret
        if registration_access_token:
            info["registration_access_token"] = registration_access_token
        return info

    def set_pkce_required(self, client: Client, required: bool) -> None:
        """The administrator's PKCE exemption (docs/tokens.md, "PKCE"); flushes."""
        check_pkce_exemption(client.client_metadata, required, admin=True)
        client.pkce_required = required
        db.session.flush()
        self.version.will_change(db.session)
        audit("register", "updated", client_id=client.client_id, pkce_required=required)

    def set_grant(self, client: Client, grant_type: str, allowed: bool) -> None:
        """The administrator gives or takes one grant type (``client update --allow-exchange``);
        validated as the administrator's registration, and the policy becomes theirs. Flushes."""
        if client.source == "static":
            raise ClientMetadataError(f"{client.client_id} is defined in STATIC_CLIENTS; change it there")
        grants = [g for g in client.grant_types if g != grant_type] + ([grant_type] if allowed else [])
        if not grants:
            raise ClientMetadataError(f"{grant_type} is the only grant of {client.client_id}; "
                                      "delete the client instead")
        data = validate_metadata({**client.client_metadata, "grant_types": grants}, admin=True,
                                 supported_grants=self.supported_grants)
        client.client_metadata = data
        client.source = "admin"
        db.session.flush()
        self.version.will_change(db.session)
        audit("register", "updated", client_id=client.client_id, grant_types=data["grant_types"], by="admin")

    def delete(self, client: Client) -> None:
        """Delete a client; every token it was given becomes inactive at introspection."""
        db.session.delete(client)
        self.revocations.revoke_client(client.client_id)
        db.session.flush()
        self.version.will_change(db.session)
        audit("register", "deleted", client_id=client.client_id)

    def by_registration_token(self, token: str) -> Client | None:
        if not token:
            return None
        digest = self.box.hash(token)
        return db.session.execute(
            select(Client).where(Client.registration_token_hash == digest)).scalar_one_or_none()

    def new_registration_token(self, client: Client) -> str:
        """Issue a fresh registration access token (the old one stops working); for the CLI."""
        if client.source == "static":
            raise ClientMetadataError(f"{client.client_id} is defined in STATIC_CLIENTS and has no registration token")
        token = new_secret()
        client.registration_token_hash = self.box.hash(token)
        db.session.flush()
        audit("register", "token_issued", client_id=client.client_id)
        return token

    def revoke_registration_token(self, client: Client, session: Session | None = None) -> None:
        """RFC 7592 §2.1: a token presented for a client that does not exist is revoked (in
        ``session``, by default the request's)."""
        session = session or db.session
        stored = session.get(Client, client.client_id)
        if stored is None:
            return
        stored.registration_token_hash = None
        session.flush()
        audit("register", "token_revoked", client_id=client.client_id)

    def load_static(self, static_clients: list[dict]) -> None:
        """Build the operator's ``STATIC_CLIENTS`` in memory (never written to the database);
        being the operator's, they may hold privileged grants."""
        static = {}
        for index, entry in enumerate(static_clients):
            entry = dict(entry)
            client_id = entry.pop("client_id")
            secret = entry.pop("client_secret", None)
            pkce_required = entry.pop("pkce_required", True)
            try:
                data = validate_metadata(entry, admin=True, supported_grants=self.supported_grants)
                check_pkce_exemption(data, pkce_required, admin=True)
            except ClientMetadataError as exc:
                raise ValueError(f"entry {index} ({client_id}): {exc.description}") from None
            if data["token_endpoint_auth_method"] != "none" and not secret:
                raise ValueError(f"entry {index} ({client_id}): client_secret is required")
            static[client_id] = Client(
                client_id=client_id, client_secret_hash=self.box.hash(secret) if secret else None,
                client_id_issued_at=0, client_secret_expires_at=0, registration_token_hash=None,
                source="static", client_metadata=data, pkce_required=pkce_required)
        self.static = static
