"""Refresh-token families (docs/tokens.md, "Refresh families"): opaque tokens stored as keyed
hashes, rotated on use, one live branch per family.

A refresh token has exactly one successor, derived from it with the issuer's key. Every refresh
of one token — the first, a concurrent one that lost the race, a retry whose answer was lost —
therefore hands out the same successor, so a family never forks: a storm of refreshes of one
token leaves one live token, not one per request. Rotation claims the presented token with one
conditional UPDATE (``rotated_at IS NULL`` and the family not revoked), which both PostgreSQL
(the row lock) and SQLite (the write lock) let only one transaction win; whoever loses the claim
answers with the successor the winner stored.

A refresh that succeeds runs the lookup, the claim and the successor's INSERT (docs/tokens.md,
"Cost of a refresh"): on SQLite in one transaction; on PostgreSQL the claim and the INSERT are one
statement, and the grant lets the lookup and that statement each commit on their own (two round
trips). The statements are built once in :mod:`.refresh_records`. A new family and its first
token are written when the caller's transaction commits (``write_at_commit``), whoever issues
them (a code exchange, a device grant, a script): the request signs its tokens before its first
write, and one that answers with an error (a code claimed by a concurrent exchange) writes none
of them.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.orm import Session

from ..extensions import db, separate_transaction, write_at_commit
from ..models import RefreshFamily, RefreshToken
from .audit import audit
from .refresh_records import (AFTER_LOST_CLAIM, LOOKUP, STORE_FAMILY, STORE_TOKEN, FamilyRecord, TokenRecord,
                              claim, records)
from .revocations import RevocationList
from .secrets import SecretBox, new_secret

logger = logging.getLogger(__name__)

SUCCESSOR = "refresh-token successor v1"


class RefreshRefused(Exception):
    """The presented refresh token may not be rotated (answered ``invalid_grant``)."""


class RefreshService:
    """Looks up, rotates and revokes refresh-token families. Writes in the caller's transaction;
    callers commit."""

    def __init__(self, box: SecretBox, lifetime: int, reuse_grace: int, revocations: RevocationList):
        self.box = box
        self.revocations = revocations
        self.lifetime = lifetime
        self.reuse_grace = reuse_grace

    def lookup(self, token_string: str, connection: Connection | None = None
               ) -> tuple[TokenRecord, FamilyRecord] | None:
        """The presented token and its family, as stored (one statement, on ``connection`` or
        the request session's)."""
        if not isinstance(token_string, str) or not token_string or len(token_string) > 512:
            return None
        connection = connection if connection is not None else db.session.connection()
        row = connection.execute(LOOKUP, {"presented_hash": self.box.hash(token_string)}).first()
        return records(row) if row else None

    def revoke_family(self, family_id: str, reason: str, session: Session | None = None) -> None:
        """Revoke a family, every refresh token in it and every access token it gave (in
        ``session``, by default the request's)."""
        session = session or db.session
        now = int(time.time())
        family = session.get(RefreshFamily, family_id)
        if family is None or family.revoked_at is not None:
            return
        family.revoked_at = now
        family.revoked_reason = reason[:255]
        self.revocations.revoke_family(family_id, session)
        session.flush()
        audit("revoke", "family-revoked", subject=family.subject, client_id=family.client_id,
              scope=family.scope, reason=reason, family=family_id)

    def revoke_families_of(self, reason: str, *, client_id: str | None = None, subject: str | None = None) -> int:
        """Revoke every live family of a client or of a user (their access tokens are covered by
        the client's or user's cut-off in the revocation list)."""
        if (client_id is None) == (subject is None):
            raise ValueError("name a client or a subject")
        column = RefreshFamily.client_id if client_id is not None else RefreshFamily.subject
        result = db.session.execute(
            update(RefreshFamily).where(column == (client_id if client_id is not None else subject),
                                        RefreshFamily.revoked_at.is_(None))
            .values(revoked_at=int(time.time()), revoked_reason=reason[:255]).execution_options(
                synchronize_session="fetch"))
        return result.rowcount or 0

    # -- issuing and rotating -----------------------------------------------------------------
    def new_family(self, client_id: str, subject: str, scope: str, identity_id: int | None,
                   audience: str | None = None) -> FamilyRecord:
        """A family for a new authorization (stored when the transaction commits); ``audience``
        (space separated) is kept by every refresh."""
        return self.store_family(self.family_record(client_id, subject, scope, identity_id, audience))

    def family_record(self, client_id: str, subject: str, scope: str, identity_id: int | None,
                      audience: str | None = None) -> FamilyRecord:
        """A new family, not stored yet: its id can name it in a token signed before any write."""
        now = int(time.time())
        return FamilyRecord(id=new_secret(24), client_id=client_id, subject=subject, scope=scope,
                            identity_id=identity_id, created_at=now, expires_at=now + self.lifetime,
                            idp_checked_at=now, audience=audience)

    def store_family(self, family: FamilyRecord) -> FamilyRecord:
        """Store ``family`` when the caller's transaction commits (never if it rolls back)."""
        write_at_commit(STORE_FAMILY, vars(family))
        return family

    def issue(self, family: FamilyRecord) -> str:
        """The first refresh token of ``family`` (the plaintext is returned once, only the hash
        kept), stored with it when the caller's transaction commits."""
        token = new_secret()
        write_at_commit(STORE_TOKEN, self._row(token, family))
        return token

    def _row(self, token: str, family: FamilyRecord) -> dict:
        now = int(time.time())
        return {"token_hash": self.box.hash(token), "family_id": family.id, "scope": family.scope,
                "issued_at": now, "expires_at": min(now + self.lifetime, family.expires_at), "rotated_at": None}

    def check_presented(self, token: TokenRecord, family: FamilyRecord, now: float | None = None) -> str | None:
        """Why a presented refresh token may not be used (None when it may).

        A token already rotated is a replay unless it comes back within the grace window (a
        client retrying a request whose answer it lost): a replay revokes the whole family, in a
        transaction of its own, because the error answer rolls the request's work back.
        """
        now = time.time() if now is None else now
        if family.revoked_at is not None:
            return "the refresh token was revoked"
        if min(token.expires_at, family.expires_at) <= now:
            return "the refresh token has expired"
        # rotated_at has whole seconds: compare whole seconds, or the window would shrink by up to one
        if token.rotated_at is not None and int(now) - token.rotated_at > self.reuse_grace:
            with separate_transaction() as session:
                self.revoke_family(family.id, "refresh token reused after rotation", session)
            return "refresh token reuse detected: every token of this authorization was revoked"
        return None

    def successor(self, presented: str) -> str:
        """The one refresh token that replaces ``presented``."""
        return self.box.derive(SUCCESSOR, presented)

    def rotate(self, token: TokenRecord, family: FamilyRecord, presented: str,
               connection: Connection | None = None) -> str:
        """Mark ``token`` used and return its successor (stored, on ``connection`` or the request
        session's). Raises :class:`RefreshRefused`.

        One conditional UPDATE claims the token; only its winner stores the successor. A
        concurrent refresh or a retry within the grace window gets the same successor, as long
        as nobody has used it yet (otherwise the family has moved on without this caller).
        """
        successor = self.successor(presented)
        connection = connection if connection is not None else db.session.connection()
        if claim(connection, token.token_hash, int(time.time()), self._row(successor, family)):
            return successor
        # Lost the race, a retry, or revoked meanwhile: read the committed state (not the identity map).
        state = connection.execute(AFTER_LOST_CLAIM, {"family_id": family.id,
                                                      "successor_hash": self.box.hash(successor)}).first()
        if state is None or state.revoked_at is not None:
            raise RefreshRefused("the refresh token was revoked")
        if state.token_hash is None:
            raise RefreshRefused("the refresh token was already used")
        if state.rotated_at is not None:
            raise RefreshRefused("the refresh token was already used and its successor too")
        return successor

    def purge_expired(self, now: int | None = None) -> int:
        """Delete families (and their tokens) that expired; their access tokens expired long ago."""
        now = int(time.time()) if now is None else now
        doomed = select(RefreshFamily.id).where(RefreshFamily.expires_at < now)
        db.session.execute(delete(RefreshToken).where(RefreshToken.family_id.in_(doomed)))
        result = db.session.execute(delete(RefreshFamily).where(RefreshFamily.expires_at < now))
        return result.rowcount or 0
