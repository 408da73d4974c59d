"""OAuth clients, with the authlib ``ClientMixin`` interface. The secret is kept as a keyed hash;
checking one is the registry's work (:meth:`ClientRegistry.check_secret`)."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import JSON, Boolean, Integer, String, true
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..services.redirects import redirect_uri_allowed

#: Grants only an administrator may give a client (docs/registration.md).
PRIVILEGED_GRANTS = frozenset({
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:token-exchange",
})


class Client(db.Model, ClientMixin):
    """A registered client. ``client_metadata`` holds the RFC 7591 metadata as registered."""

    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    client_secret_hash: Mapped[str | None] = mapped_column(String(64))
    client_id_issued_at: Mapped[int] = mapped_column(Integer)
    client_secret_expires_at: Mapped[int] = mapped_column(Integer, default=0)
    registration_token_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    #: whose policy it is: "dynamic" (anonymous RFC 7591), "admin" (registered or last updated by an
    #: administrator, CLI or admin token), "static" (STATIC_CLIENTS)
    source: Mapped[str] = mapped_column(String(16))
    client_metadata: Mapped[dict] = mapped_column(JSON)
    #: RFC 9700 §2.1.1: PKCE on every authorization request. Only an administrator may clear it
    #: (CLI ``--no-pkce-required``, ``STATIC_CLIENTS``), and never for a public client.
    pkce_required: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    # -- metadata accessors -------------------------------------------------------------------
    @property
    def redirect_uris(self) -> list[str]:
        return list(self.client_metadata.get("redirect_uris") or [])

    @property
    def grant_types(self) -> list[str]:
        return list(self.client_metadata.get("grant_types") or ["authorization_code"])

    @property
    def response_types(self) -> list[str]:
        """As registered; ``[]`` is "none" (a client without the code grant), absent is ``code``."""
        return list(self.client_metadata.get("response_types", ["code"]))

    @property
    def scope(self) -> str:
        return self.client_metadata.get("scope") or ""

    @property
    def token_endpoint_auth_method(self) -> str:
        return self.client_metadata.get("token_endpoint_auth_method") or "client_secret_basic"

    @property
    def client_name(self) -> str:
        return self.client_metadata.get("client_name") or self.client_id

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    @property
    def needs_pkce(self) -> bool:
        """Whether an authorization request must carry ``code_challenge`` (docs/tokens.md, "PKCE")."""
        return self.is_public or self.pkce_required is not False

    @property
    def privileged(self) -> bool:
        return bool(PRIVILEGED_GRANTS & set(self.grant_types))

    @property
    def client_info(self) -> dict:
        return {
            "client_id": self.client_id,
            "client_id_issued_at": self.client_id_issued_at,
            "client_secret_expires_at": self.client_secret_expires_at,
        }

    # -- authlib ClientMixin ------------------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        uris = self.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str) -> str:
        # The real decision is made by the policy service with the user; here keep the request.
        return scope or ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri_allowed(self.redirect_uris, redirect_uri)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "token":
            return method == self.token_endpoint_auth_method
        # introspection and revocation: confidential clients by secret, public by client_id
        if self.is_public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type in self.response_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types
