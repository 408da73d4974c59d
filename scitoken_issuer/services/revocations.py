"""The revocation list (docs/revocation.md): what was revoked, instead of a row per access token.

An access token is a self-contained JWT, so issuing one writes nothing. Introspection checks its
signature and expiry and then this list, which holds

- ``jti``: one access token (RFC 7009), until that token expires;
- ``family``: every access token a refresh family gave (their ``sid`` claim), until the last of
  them expires;
- ``client`` / ``subject``: every token of a client (deleted, or its tokens revoked) or of a user
  issued at or before the cut-off ``revoked_at``, until the last of them expires.

Entries live in the database (durable, one small table) and are served from a copy in each
process, reloaded as :class:`~scitoken_issuer.services.state_version.StateVersion` says: at once
on every worker with Redis, within ``SHARED_STATE_MAX_AGE`` (2 s) without it. Expired entries
are deleted by the periodic clean-up, so the list holds only what was revoked within one token
lifetime.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ..extensions import db
from ..models import AuthorizationCode, DeviceCode, Revocation
from .secrets import SecretBox
from .state_version import Stamp, StateVersion

#: Verifiers' clock skew: entries outlive the tokens they cover by this much.
CLOCK_SKEW = 300
JTI, FAMILY, CLIENT, SUBJECT = "jti", "family", "client", "subject"


class RevocationList:
    """Records revocations (adds/flushes; callers commit) and answers whether claims are revoked."""

    def __init__(self, box: SecretBox, version: StateVersion, max_token_lifetime: int):
        self.box = box
        self.version = version
        self.max_token_lifetime = max_token_lifetime
        self._lock = threading.Lock()
        self._copy: tuple[Stamp, dict[tuple[str, str], int]] | None = None

    def family_reference(self, family_id: str) -> str:
        """The ``sid`` claim of a family's access tokens: names the family without revealing its id."""
        return self.box.hash(f"refresh family {family_id}")[:32]

    # -- recording ----------------------------------------------------------------------------
    def _add(self, kind: str, value: str, revoked_at: int, expires_at: int, session: Session | None = None) -> None:
        session = session or db.session
        session.add(Revocation(kind=kind, value=value[:255], revoked_at=revoked_at,
                               expires_at=expires_at + CLOCK_SKEW))
        self.version.will_change(session)

    def revoke_token(self, jti: str, expires_at: int, session: Session | None = None) -> None:
        """One access token, until it expires (in ``session``, by default the request's)."""
        self._add(JTI, jti, int(time.time()), expires_at, session)

    def revoke_family(self, family_id: str, session: Session | None = None) -> None:
        """Every access token of a refresh family (issued before now; none is issued after), in
        ``session`` (by default the request's)."""
        now = int(time.time())
        self._add(FAMILY, self.family_reference(family_id), now, now + self.max_token_lifetime, session)

    def revoke_client(self, client_id: str) -> None:
        """Every token of a client issued until now, and until any process may still have served
        it from a copy made before this change."""
        cut_off = int(time.time() + self.version.max_age) + 1
        self._add(CLIENT, client_id, cut_off, cut_off + self.max_token_lifetime)

    def revoke_subject(self, subject: str) -> None:
        """Every token of a user issued until now."""
        now = int(time.time())
        self._add(SUBJECT, subject, now, now + self.max_token_lifetime)

    def end_pending_codes(self, *, subject: str | None = None, client_id: str | None = None) -> int:
        """Codes not yet exchanged and device authorizations not yet collected, of a user or a
        client: they would otherwise give tokens issued after the cut-off."""
        now = int(time.time())
        codes = update(AuthorizationCode).where(AuthorizationCode.used_at.is_(None))
        devices = update(DeviceCode).where(DeviceCode.status.in_(("pending", "approved")))
        if subject is not None:
            codes = codes.where(AuthorizationCode.subject == subject)
            devices = devices.where(DeviceCode.subject == subject)
        if client_id is not None:
            codes = codes.where(AuthorizationCode.client_id == client_id)
            devices = devices.where(DeviceCode.client_id == client_id)
        ended = db.session.execute(codes.values(used_at=now)).rowcount or 0
        ended += db.session.execute(devices.values(status="denied", decided_at=now,
                                                   denial_reason="the authorization was revoked")).rowcount or 0
        return ended

    # -- answering ----------------------------------------------------------------------------
    def _entries(self) -> dict[tuple[str, str], int]:
        """(kind, value) -> cut-off, from this process's copy while it is fresh."""
        now = self.version.stamp()
        copy = self._copy
        if copy is not None and self.version.fresh(copy[0], now):
            return copy[1]
        with self._lock:
            entries: dict[tuple[str, str], int] = {}
            rows = db.session.execute(select(Revocation.kind, Revocation.value, Revocation.revoked_at)
                                      .where(Revocation.expires_at > int(time.time())))
            for kind, value, revoked_at in rows:
                key = (kind, value)
                entries[key] = max(revoked_at, entries.get(key, revoked_at))
            self._copy = (now, entries)
        return entries

    def is_revoked(self, claims: dict) -> bool:
        """Is an access token with these (verified) claims revoked?"""
        entries = self._entries()
        if not entries:
            return False
        if (JTI, claims.get("jti")) in entries or (FAMILY, claims.get("sid")) in entries:
            return True
        issued_at = claims.get("iat", 0)
        for kind, value in ((CLIENT, claims.get("client_id")), (SUBJECT, claims.get("sub"))):
            cut_off = entries.get((kind, value))
            if cut_off is not None and issued_at <= cut_off:
                return True
        return False

    def purge_expired(self, now: int | None = None) -> int:
        now = int(time.time()) if now is None else now
        return db.session.execute(delete(Revocation).where(Revocation.expires_at < now)).rowcount or 0
