"""Periodic work (Celery beat): key rotation, permission index, expiry cleanup. Each run is
idempotent and, with Redis, holds a lock so that two runs never overlap."""

from __future__ import annotations

import contextlib
import logging

from sqlalchemy import delete

from ..extensions import db, runtime
from ..models import AuthorizationCode, DeviceCode

logger = logging.getLogger(__name__)

@contextlib.contextmanager
def exclusive(name: str, timeout: int = 3600):
    """Yield True if this run holds the lock ``name`` (always True without Redis)."""
    client = runtime().redis
    if client is None:
        yield True
        return
    lock = client.lock(f"scitoken-issuer:lock:{name}", timeout=timeout)
    acquired = lock.acquire(blocking=False)
    try:
        yield acquired
    finally:
        if acquired:
            with contextlib.suppress(Exception):
                lock.release()


def rotate_keys() -> str | None:
    with exclusive("rotate-keys", 300) as mine:
        if not mine:
            return None
        keys = runtime().keys
        created = keys.ensure()
        purged = keys.purge()
        db.session.commit()
        if purged:
            logger.info("dropped %d retired signing keys", purged)
        return ",".join(k.kid for k in created) or None


def rebuild_tree_index() -> dict | None:
    rt = runtime()
    if rt.tree is None:
        return None
    with exclusive("tree-index") as mine:
        if not mine:
            return None
        index = rt.tree.rebuild()
        return {"directories": index.directories, "boundaries": len(index)}


def cleanup_expired(now: int) -> dict:
    with exclusive("cleanup", 600) as mine:
        if not mine:
            return {}
        counts = {
            "authorization_codes": db.session.execute(
                delete(AuthorizationCode).where(AuthorizationCode.expires_at < now - 3600)).rowcount,
            "device_codes": db.session.execute(
                delete(DeviceCode).where(DeviceCode.expires_at < now - 3600)).rowcount,
            "revocations": runtime().revocations.purge_expired(now),
            "refresh_families": runtime().refresh.purge_expired(now),
        }
        db.session.commit()
        return counts
