"""The statements of the refresh path and the records they return (docs/tokens.md, "Cost of a
refresh").

Each statement is built once, here: a request only binds values to a statement whose compiled
form the engine already caches, and runs it on the session's connection, so no ORM object is
loaded, tracked, flushed or expired on the way. What the grant needs of a token and its family
comes back as two small read-only records.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, exists, insert, select, update

from ..models import RefreshFamily, RefreshToken

tokens = RefreshToken.__table__
families = RefreshFamily.__table__


@dataclass(frozen=True)
class TokenRecord:
    """One stored refresh token (its columns, as read by :data:`LOOKUP`)."""

    token_hash: str
    family_id: str
    scope: str
    issued_at: int
    expires_at: int
    rotated_at: int | None


@dataclass(frozen=True)
class FamilyRecord:
    """One refresh family (its columns, as read by :data:`LOOKUP`)."""

    id: str
    client_id: str
    subject: str
    scope: str
    identity_id: int | None
    created_at: int
    expires_at: int
    idp_checked_at: int | None = None
    revoked_at: int | None = None
    audience: str | None = None


_TOKEN_COLUMNS = [tokens.c[name] for name in TokenRecord.__dataclass_fields__]
_FAMILY_COLUMNS = [families.c[name].label(f"family_{name}_") for name in FamilyRecord.__dataclass_fields__]

#: the presented token and its family, by the token's keyed hash
LOOKUP = select(*_TOKEN_COLUMNS, *_FAMILY_COLUMNS).join_from(tokens, families, tokens.c.family_id == families.c.id) \
    .where(tokens.c.token_hash == bindparam("presented_hash"))

#: the claim: marks the token used unless it already was or its family was revoked meanwhile;
#: PostgreSQL's row lock and SQLite's write lock let one transaction win it
CLAIM = update(tokens).where(
    tokens.c.token_hash == bindparam("presented_hash"), tokens.c.rotated_at.is_(None),
    exists().where(families.c.id == tokens.c.family_id, families.c.revoked_at.is_(None)),
).values(rotated_at=bindparam("now"))

#: PostgreSQL: the claim and, when it won, the successor's INSERT in one statement (one round
#: trip), atomic on its own: the refresh grant runs it without a transaction around it
_claimed = CLAIM.returning(tokens.c.family_id).cte("claimed")
_SUCCESSOR_COLUMNS = ("token_hash", "scope", "issued_at", "expires_at")
CLAIM_AND_STORE = insert(tokens).from_select(
    ["family_id", *_SUCCESSOR_COLUMNS],
    select(_claimed.c.family_id, *(bindparam(f"successor_{name}", type_=tokens.c[name].type)
                                   for name in _SUCCESSOR_COLUMNS))).returning(tokens.c.token_hash)

#: after a lost claim: whether the family lives, and whether the successor is stored and unused
AFTER_LOST_CLAIM = select(families.c.revoked_at, tokens.c.token_hash, tokens.c.rotated_at) \
    .select_from(families.outerjoin(tokens, tokens.c.token_hash == bindparam("successor_hash"))) \
    .where(families.c.id == bindparam("family_id"))

#: a new refresh token (the first of a family, or a successor)
STORE_TOKEN = insert(tokens)

#: a new family
STORE_FAMILY = insert(families)

#: the upstream IdP vouched for the family's user again
IDP_CHECKED = update(families).where(families.c.id == bindparam("family_id")) \
    .values(idp_checked_at=bindparam("checked_at"))


def claim(connection: Connection, presented_hash: str, now: int, successor: dict) -> bool:
    """Claim the presented token and, if this transaction won, store ``successor`` (a row of
    ``refresh_tokens``): one statement on PostgreSQL, two elsewhere. True when it won."""
    if connection.dialect.name == "postgresql":
        values = {f"successor_{name}": successor[name] for name in _SUCCESSOR_COLUMNS}
        return connection.execute(CLAIM_AND_STORE, {"presented_hash": presented_hash, "now": now,
                                                    **values}).first() is not None
    if connection.execute(CLAIM, {"presented_hash": presented_hash, "now": now}).rowcount != 1:
        return False
    connection.execute(STORE_TOKEN, successor)
    return True


def records(row) -> tuple[TokenRecord, FamilyRecord]:
    """The records of one :data:`LOOKUP` row."""
    split = len(_TOKEN_COLUMNS)
    return TokenRecord(*row[:split]), FamilyRecord(*row[split:])
