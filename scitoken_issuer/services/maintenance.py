"""Periodic work (Celery beat): key rotation, permission index, expiry cleanup. Each run is
idempotent and, with Redis, holds a lock so that two runs never overlap; the task commits inside
the lock (docs/architecture.md)."""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import redis
from sqlalchemy import delete

from ..extensions import db
from ..models import AuthorizationCode, DeviceCode
from .keys import KeyStore
from .refresh import RefreshService
from .revocations import RevocationList
from .tree_store import TreeIndexStore

logger = logging.getLogger(__name__)


class Maintenance:
    """The periodic jobs over the services they maintain. Adds/flushes; the task commits."""

    def __init__(self, redis_client: redis.Redis | None, keys: KeyStore, tree: TreeIndexStore | None,
                 refresh: RefreshService, revocations: RevocationList):
        self.redis = redis_client
        self.keys = keys
        self.tree = tree
        self.refresh = refresh
        self.revocations = revocations

    @contextlib.contextmanager
    def exclusive(self, name: str, timeout: int = 3600) -> Iterator[bool]:
        """Yield True if this run holds the lock ``name`` (always True without Redis)."""
        if self.redis is None:
            yield True
            return
        lock = self.redis.lock(f"scitoken-issuer:lock:{name}", timeout=timeout)
        acquired = lock.acquire(blocking=False)
        try:
            yield acquired
        finally:
            if acquired:
                with contextlib.suppress(Exception):
                    lock.release()

    def rotate_keys(self) -> str | None:
        """Publish due keys and drop retired ones; the new kids, comma separated, or None."""
        created = self.keys.ensure()
        purged = self.keys.purge()
        db.session.flush()
        if purged:
            logger.info("dropped %d retired signing keys", purged)
        return ",".join(k.kid for k in created) or None

    def rebuild_tree_index(self) -> dict | None:
        """Rescan POSIX_PATH (no database work); None when there is no POSIX_PATH."""
        if self.tree is None:
            return None
        index = self.tree.rebuild()
        return {"directories": index.directories, "boundaries": len(index)}

    def cleanup_expired(self, now: int) -> dict:
        """Delete what expired more than a grace period ago; counts per table."""
        return {
            "authorization_codes": db.session.execute(
                delete(AuthorizationCode).where(AuthorizationCode.expires_at < now - 3600)).rowcount,
            "device_codes": db.session.execute(
                delete(DeviceCode).where(DeviceCode.expires_at < now - 3600)).rowcount,
            "revocations": self.revocations.purge_expired(now),
            "refresh_families": self.refresh.purge_expired(now),
        }
