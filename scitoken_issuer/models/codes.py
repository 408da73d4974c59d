"""Authorization codes and device codes, stored by keyed hash, single use."""

from __future__ import annotations

from sqlalchemy import JSON, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class AuthorizationCode(db.Model):
    """A single-use code bound to its client, redirect URI and PKCE challenge."""

    __tablename__ = "authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(String(255))
    identity_id: Mapped[int | None] = mapped_column(Integer)
    nonce: Mapped[str | None] = mapped_column(String(255))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(16))
    auth_time: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[int] = mapped_column(Integer, index=True)
    used_at: Mapped[int | None] = mapped_column(Integer)
    claims: Mapped[dict] = mapped_column(JSON, default=dict)
    #: what the exchange gave (recorded when it claims the code): revoked if the code comes back
    issued_jti: Mapped[str | None] = mapped_column(String(64))
    issued_expires_at: Mapped[int | None] = mapped_column(Integer)
    issued_family_id: Mapped[str | None] = mapped_column(String(64))


class DeviceCode(db.Model):
    """An RFC 8628 device authorization; the outcome is recorded here durably."""

    __tablename__ = "device_codes"

    device_code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_code: Mapped[str] = mapped_column(String(16), unique=True)
    client_id: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[int] = mapped_column(Integer, index=True)
    interval: Mapped[int] = mapped_column(Integer)
    last_poll_at: Mapped[float | None] = mapped_column(Integer)
    #: pending | approved | denied (by the user) | refused (a scope was not granted) | consumed
    status: Mapped[str] = mapped_column(String(16), default="pending")
    subject: Mapped[str | None] = mapped_column(String(255))
    identity_id: Mapped[int | None] = mapped_column(Integer)
    granted_scope: Mapped[str | None] = mapped_column(Text)
    denial_reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[int | None] = mapped_column(Integer)
    claims: Mapped[dict] = mapped_column(JSON, default=dict)
    #: the ``audience`` asked at the device authorization endpoint (space separated), None: default
    audience: Mapped[str | None] = mapped_column(Text)
    #: the decision the verification page accepted, until a worker records it (docs/flows.md, flow 2):
    #: ``{"username", "identity_id", "approved"}``, and when it was last handed to a worker
    requested: Mapped[dict | None] = mapped_column(JSON)
    requested_at: Mapped[int | None] = mapped_column(Integer)
