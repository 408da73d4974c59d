"""Users as the upstream IdP knows them, with the IdP refresh token encrypted at rest."""

from __future__ import annotations

from sqlalchemy import Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class UpstreamIdentity(db.Model):
    __tablename__ = "upstream_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject", name="uq_upstream_identities_issuer_subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    username: Mapped[str] = mapped_column(String(255), index=True)
    refresh_token: Mapped[bytes | None] = mapped_column(LargeBinary)  # encrypted
    created_at: Mapped[int] = mapped_column(Integer)
    last_login_at: Mapped[int] = mapped_column(Integer)
    last_checked_at: Mapped[int | None] = mapped_column(Integer)
    disabled_at: Mapped[int | None] = mapped_column(Integer)
