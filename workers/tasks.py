"""Celery tasks: thin wrappers over the services, taking ids and plain data, never objects."""

from __future__ import annotations

import logging
import time

from celery import shared_task

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.services.group_cache import PrecomputeInProgress
from scitoken_issuer.services.upstream_idp import UpstreamLoginError, UpstreamLoginRefused, UpstreamUnavailable

logger = logging.getLogger(__name__)


@shared_task(name="workers.tasks.exchange_idp_code", ignore_result=False)
def exchange_idp_code(state: dict, params: dict) -> dict:
    """The IdP code exchange of a browser login (docs/flows.md, flow 1); the web process waits for it."""
    try:
        result = runtime().logins.finish_idp_login(state, params)
        db.session.commit()
        return {"ok": True, "login": result}
    except UpstreamLoginError as exc:  # answered as data: the web side shows a page or tells the client
        db.session.rollback()
        kind = "refused" if isinstance(exc, UpstreamLoginRefused) else "login"
        return {"ok": False, "error": kind, "message": str(exc)}
    except UpstreamUnavailable:
        db.session.rollback()
        return {"ok": False, "error": "unavailable", "message": "the identity provider"}


@shared_task(name="workers.tasks.refresh_group_cache")
def refresh_group_cache() -> dict | None:
    """Precompute every user's groups into the cache (beat, and `scitoken-issuer cache refresh`)."""
    try:
        stats = runtime().groups.precompute()
    except PrecomputeInProgress:
        logger.info("group cache precompute already running; skipped")
        return None
    return stats.__dict__


@shared_task(name="workers.tasks.rebuild_tree_index")
def rebuild_tree_index() -> dict | None:
    """Rescan POSIX_PATH for the strict-mode permission index."""
    maintenance = runtime().maintenance
    if maintenance.tree is None:
        return None
    with maintenance.exclusive("tree-index") as mine:
        return maintenance.rebuild_tree_index() if mine else None


@shared_task(name="workers.tasks.rotate_keys")
def rotate_keys() -> str | None:
    """Publish the next signing key of each chain (access tokens, ID tokens) when rotation is due;
    drop keys whose tokens all expired. Returns the new kids, comma separated, or None."""
    maintenance = runtime().maintenance
    with maintenance.exclusive("rotate-keys", 300) as mine:
        if not mine:
            return None
        created = maintenance.rotate_keys()
        db.session.commit()
        return created


@shared_task(name="workers.tasks.cleanup_expired")
def cleanup_expired() -> dict:
    """Delete expired codes, device codes, token records and refresh families."""
    maintenance = runtime().maintenance
    with maintenance.exclusive("cleanup", 600) as mine:
        if not mine:
            return {}
        counts = maintenance.cleanup_expired(int(time.time()))
        db.session.commit()
        return counts


@shared_task(name="workers.tasks.complete_device_authorization")
def complete_device_authorization(device_code_hash: str, username: str, identity_id: int | None,
                                  approved: bool) -> str:
    """Record the user's decision on a device authorization (docs/flows.md, flow 2): committed,
    then announced to the pollers through Redis (an after-commit hook)."""
    outcome = runtime().device_decisions.complete(device_code_hash, username, identity_id, approved)
    db.session.commit()
    return outcome
