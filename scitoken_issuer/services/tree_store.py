"""Where the strict-mode tree index lives: Redis (shared by every process) or this process."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from .. import metrics
from .tree_index import TreeIndex, scan_tree

logger = logging.getLogger(__name__)


class TreeIndexMissing(Exception):
    """No index of the tree is stored yet (a worker is building it)."""


class TreeIndexStore:
    """Stores and serves the :class:`TreeIndex` of ``POSIX_PATH``.

    Each process keeps the decoded index and re-reads Redis at most every ``reload_seconds``;
    with no Redis the index lives in this process and is rebuilt when older than ``max_age``.
    When Redis holds no index yet (a fresh deployment), ``request_build`` asks a worker for one
    and the caller waits up to ``wait_seconds`` for it to appear before :class:`TreeIndexMissing`.
    """

    def __init__(self, root: str, redis_client: redis.Redis | None = None, *, max_age: float = 600,
                 reload_seconds: float = 30, key: str = "scitoken-issuer:tree-index",
                 request_build: Callable[[], None] | None = None, wait_seconds: float = 0,
                 poll_seconds: float = 0.1):
        self.root = root
        self.redis = redis_client
        self.max_age = max_age
        self.reload_seconds = reload_seconds
        self.key = key
        self.request_build = request_build
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._index: TreeIndex | None = None
        self._loaded_at = 0.0

    def rebuild(self) -> TreeIndex:
        """Scan the tree now and store the index (Celery task, CLI, or in-process on demand)."""
        index = scan_tree(self.root)
        if self.redis is not None:
            self.redis.set(self.key, index.to_json())
        with self._lock:
            self._index, self._loaded_at = index, time.monotonic()
        metrics.permission_index_loaded(index.scanned_at, len(index))
        logger.info("tree index of %s: %d directories, %d files, %d boundaries", self.root, index.directories,
                    index.files, len(index))
        return index

    def get(self) -> TreeIndex:
        with self._lock:
            index, loaded_at = self._index, self._loaded_at
        if index is not None and time.monotonic() - loaded_at < self.reload_seconds:
            return index
        if self.redis is None:
            if index is None or time.time() - index.scanned_at > self.max_age:
                return self.rebuild()
            return index
        raw = self.redis.get(self.key)
        try:
            if raw is None:
                raise TreeIndexMissing(f"the permission index of {self.root} has not been built yet")
            index = TreeIndex.from_json(raw)
        except ValueError as exc:  # an older format left by a previous version: build it again
            logger.warning("stored tree index of %s is not usable (%s); it must be rebuilt", self.root, exc)
            index = self._wait_for_build(TreeIndexMissing(f"the permission index of {self.root} must be rebuilt"),
                                         stale=raw)
        except TreeIndexMissing as missing:
            index = self._wait_for_build(missing, stale=None)
        with self._lock:
            self._index, self._loaded_at = index, time.monotonic()
        metrics.permission_index_loaded(index.scanned_at, len(index))
        return index

    def _wait_for_build(self, missing: TreeIndexMissing, stale: bytes | None) -> TreeIndex:
        """Ask a worker for the index, then wait a few seconds for a usable one to be stored."""
        if self.request_build is not None:
            self.request_build()
        deadline = time.monotonic() + self.wait_seconds
        while time.monotonic() < deadline:
            time.sleep(self.poll_seconds)
            raw = self.redis.get(self.key)
            if raw is not None and raw != stale:
                try:
                    return TreeIndex.from_json(raw)
                except ValueError:
                    stale = raw
        raise missing
