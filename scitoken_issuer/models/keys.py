"""Signing keys: one ordered key set shared by every process through the database."""

from __future__ import annotations

from sqlalchemy import JSON, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class SigningKey(db.Model):
    """A signing key. Its state is derived from time, never stored:

    - *next* while ``activates_at`` is in the future (published, not signing),
    - *current* from ``activates_at`` until the next generation activates,
    - *retired* afterwards, published until every token it signed has expired.

    ``generation`` is unique, so processes racing to create the same key collide on the
    constraint and the loser reads the winner's key.
    """

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, unique=True)
    alg: Mapped[str] = mapped_column(String(8))
    private_key: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted PEM
    public_jwk: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(Integer)
    activates_at: Mapped[int] = mapped_column(Integer)
