"""Readiness (``GET /readyz``): does every dependency this deployment uses answer?"""

from __future__ import annotations

import logging
import os
from typing import Callable

import redis
from sqlalchemy import text

from ..extensions import db
from .keys import KeyStore
from .schema import SchemaState
from .upstream_idp import UpstreamIdP

logger = logging.getLogger(__name__)

#: What a check answers when it is not "ok" but the issuer may still serve (a fresh install).
NOT_YET = "no signing key yet"


class Readiness:
    """Asks the database, the signing keys and, when configured, Redis, the upstream IdP and the
    storage tree under POSIX_PATH (a host whose storage mount went away refuses every storage
    scope, so a load balancer should send its users elsewhere)."""

    def __init__(self, keys: KeyStore, redis_client: redis.Redis | None, idp: UpstreamIdP | None,
                 posix_path: str | None = None, schema: SchemaState | None = None):
        self.keys = keys
        self.schema = schema
        self.redis = redis_client
        self.idp = idp
        self.posix_path = posix_path

    def report(self) -> dict[str, str]:
        """name -> "ok" or why not; never raises."""
        checks: dict[str, str] = {}
        try:
            db.session.execute(text("SELECT 1"))
            checks["database"] = "ok"
            problem = self.schema.problem(db.session.connection()) if self.schema else None
            if problem:
                checks["schema"] = problem
            else:
                checks["schema"] = "ok"
                checks["keys"] = "ok" if self.keys.view().current else NOT_YET
        except Exception as exc:  # readiness reports, it never raises
            logger.warning("readiness: database check failed: %s", type(exc).__name__)
            checks["database"] = "unavailable"
        for name, check in self.dependency_checks().items():
            checks[name] = check()
        return checks

    @staticmethod
    def ready(checks: dict[str, str]) -> bool:
        return all(value in ("ok", NOT_YET) for value in checks.values())

    def dependency_checks(self) -> dict[str, Callable[[], str]]:
        checks: dict[str, Callable[[], str]] = {}
        if self.redis is not None:
            checks["redis"] = self.redis_ok
        if self.idp is not None:
            checks["idp"] = self.idp_ok
        if self.posix_path is not None:
            checks["storage"] = self.storage_ok
        return checks

    def storage_ok(self) -> str:
        """The tree under POSIX_PATH can be listed (a directory, readable and searchable)."""
        path = self.posix_path
        return "ok" if os.path.isdir(path) and os.access(path, os.R_OK | os.X_OK) else "unavailable"

    def redis_ok(self) -> str:
        try:
            return "ok" if self.redis.ping() else "no answer"
        except redis.RedisError:
            return "unavailable"

    def idp_ok(self) -> str:
        try:
            self.idp.metadata()
            return "ok"
        except Exception:  # readiness reports, never raises
            return "unavailable"
