"""Issued access tokens (by jti, for introspection and revocation) and refresh-token families."""

from __future__ import annotations

import time

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class IssuedToken(db.Model):
    """One issued access token, recorded by ``jti``; the JWT itself is never stored."""

    __tablename__ = "issued_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128), index=True)
    subject: Mapped[str] = mapped_column(String(255))
    scope: Mapped[str] = mapped_column(Text)
    grant_type: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[int] = mapped_column(Integer, index=True)
    revoked_at: Mapped[int | None] = mapped_column(Integer)
    family_id: Mapped[str | None] = mapped_column(String(64), index=True)

    # -- authlib TokenMixin (revocation / introspection) --------------------------------------
    def check_client(self, client) -> bool:
        return client.get_client_id() == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_at - self.issued_at

    def is_expired(self) -> bool:
        return self.expires_at <= time.time()

    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class RefreshFamily(db.Model):
    """A chain of rotated refresh tokens from one user authorization (docs/tokens.md, "Refresh
    families"). ``audience`` is the narrowed ``aud`` (space separated) every refresh keeps; None
    means the issuer's default. ``refreshed_at`` is updated under the row lock of each rotation."""

    __tablename__ = "refresh_families"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128), index=True)
    subject: Mapped[str] = mapped_column(String(255), index=True)
    scope: Mapped[str] = mapped_column(Text)  # the widest scope this family may ever carry
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("upstream_identities.id"))
    created_at: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[int] = mapped_column(Integer, index=True)
    idp_checked_at: Mapped[int | None] = mapped_column(Integer)
    revoked_at: Mapped[int | None] = mapped_column(Integer)
    revoked_reason: Mapped[str | None] = mapped_column(String(255))
    audience: Mapped[str | None] = mapped_column(Text)
    refreshed_at: Mapped[int | None] = mapped_column(Integer)


class RefreshToken(db.Model):
    """One refresh token of a family, by keyed hash. ``rotated_at`` marks it used; its one
    successor is derived from it (:meth:`~scitoken_issuer.services.refresh.RefreshService.rotate`)."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(ForeignKey("refresh_families.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[int] = mapped_column(Integer)
    rotated_at: Mapped[int | None] = mapped_column(Integer)
