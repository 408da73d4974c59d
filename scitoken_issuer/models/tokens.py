"""The revocation list of access tokens, and refresh-token families."""

from __future__ import annotations

import time

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class Revocation(db.Model):
    """One entry of the revocation list (docs/revocation.md): access tokens are self-contained
    JWTs, so instead of a row per issued token the issuer keeps what was revoked.

    ``kind`` says what ``value`` names: ``jti`` (one access token), ``family`` (the ``sid`` of
    every access token a refresh family gave), ``client`` or ``subject`` (every token of that
    client or user issued at or before ``revoked_at``). ``expires_at`` is when no token the entry
    covers can still be active, after which the entry is deleted, so the list stays small.
    """

    __tablename__ = "revocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(255))
    revoked_at: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[int] = mapped_column(Integer, index=True)


class RefreshFamily(db.Model):
    """A chain of rotated refresh tokens from one user authorization (docs/tokens.md, "Refresh
    families"). ``audience`` is the narrowed ``aud`` (space separated) every refresh keeps; None
    means the issuer's default. ``refreshed_at`` is no longer written (a rotation is recorded as
    the token's ``rotated_at``) and stays for rows written before."""

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
