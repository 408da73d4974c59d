"""Count failures, not work: wrong user codes and failed client authentications (docs/security-web.md).

Successful requests never touch a failure counter, so a NAT full of researchers or a service
fetching tokens from one host is never throttled for succeeding. Counters live in the ``limits``
library's storage: Redis when ``REDIS_URL`` is set (shared by every web process), else in this
process; each app builds its own :class:`FailureLimits`, so apps never share in-memory counters.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import redis

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

logger = logging.getLogger(__name__)

#: Rule names: what is counted, and by which key.
WRONG_USER_CODE = "wrong-user-code"                # per client address (RFC 8628 §5.1)
CLIENT_AUTH_BY_ADDRESS = "client-auth-by-address"  # per client address
CLIENT_AUTH_BY_CLIENT = "client-auth-by-client"    # per client id, from any address
#: How long an address that authenticated as a client stays exempt from locks on that client.
KNOWN_ADDRESS_SECONDS = 86400
#: How long a process trusts what it read from the Redis flags (seconds).
TRUST_SECONDS = 1.0
#: Flags remembered per process before the expired ones are dropped.
MAX_REMEMBERED = 10000
NAMESPACE = "scitoken-issuer"


def parse_limit(text: str) -> RateLimitItem | None:
    """``"20/minute"``, ``"100 per hour"`` (the ``limits`` notation), or ``off`` (None)."""
    if text.strip().lower() in ("off", "0", "none"):
        return None
    return parse(text)


@lru_cache(maxsize=4096)
def address_key(address: str | None) -> str:
    """The counting key of a client address: IPv4 as is, IPv6 by its /64 (one host's usual share)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@lru_cache(maxsize=4096)
def client_key(client_id: str) -> str:
    """A short fixed-size key for any presented client id (attackers choose its length)."""
    return hashlib.sha256(client_id.encode("utf-8", "replace")).hexdigest()[:32]


@dataclass(frozen=True)
class Standing:
    """What one read of the flags says: seconds to wait per locked rule, and whether the address is
    known to the presented client."""

    waits: dict[str, int]
    known: bool


class FailureLimits:
    """Per-key failure counters with a moving window; answers how long a key must wait.

    Only failures touch the counters. When a failure fills a window, a *lock flag* is set for
    the key, expiring when the window has room again; a request that succeeds reads the flags of
    its keys (and whether its address is known to its client) in one read: one Redis MGET, whose
    answer the process trusts for a second (:class:`RedisFlags`).
    Counters and flags live in Redis when it is configured (``redis_client``), else in this process.
    """

    def __init__(self, storage_uri: str, rules: dict[str, str], redis_client: redis.Redis | None = None):
        options = {"socket_timeout": 3, "socket_connect_timeout": 3} if storage_uri.startswith("redis") else {}
        self.storage = storage_from_string(storage_uri, **options)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.rules = {name: parse_limit(text) for name, text in rules.items()}
        self.flags: Flags = RedisFlags(redis_client) if redis_client is not None else MemoryFlags()

    def standing(self, keys: dict[str, str], known: tuple[str, str] | None = None) -> Standing:
        """For each ``rule: key``, whether it is locked and for how long; whether ``known`` =
        (client, address) authenticated lately. Flags that cannot be read (Redis down) do not block:
        the limits guard against guessing, and a cache outage must not stop token issuance."""
        ruled = [(rule, key) for rule, key in keys.items() if self.rules.get(rule) is not None]
        names = [self._lock(rule, key) for rule, key in ruled] + ([self._known(*known)] if known else [])
        if not names:
            return Standing({}, False)
        try:
            values = self.flags.read(names)
        except Exception as exc:  # noqa: BLE001 - any storage error: fail open, say so
            logger.warning("failure counters unavailable (%s); not limiting", type(exc).__name__)
            return Standing({}, False)
        now = time.time()
        waits = {rule: max(1, math.ceil(float(value) - now))
                 for (rule, _key), value in zip(ruled, values) if value is not None and float(value) > now}
        return Standing(waits, bool(known and values[-1] is not None))

    def retry_after(self, rule: str, key: str) -> int | None:
        """Seconds until ``key`` may try again under ``rule``, or None when it is not locked."""
        return self.standing({rule: key}).waits.get(rule)

    def failed(self, rule: str, key: str) -> None:
        """Count one failure of ``key`` under ``rule``; lock the key when its window is full."""
        item = self.rules.get(rule)
        if item is None:
            return
        try:
            self.limiter.hit(item, NAMESPACE, rule, key)
            if not self.limiter.test(item, NAMESPACE, rule, key):
                reset = self.limiter.get_window_stats(item, NAMESPACE, rule, key).reset_time
                self.flags.set(self._lock(rule, key), f"{reset:.3f}", max(1, math.ceil(reset - time.time())))
        except Exception as exc:  # noqa: BLE001
            logger.warning("failure counters unavailable (%s); failure not counted", type(exc).__name__)

    def remember_client_address(self, client: str, address: str) -> None:
        """``address`` authenticated as ``client``: a lock on that client does not apply to it."""
        try:
            self.flags.set(self._known(client, address), "1", KNOWN_ADDRESS_SECONDS)
        except Exception as exc:  # noqa: BLE001
            logger.warning("failure counters unavailable (%s)", type(exc).__name__)

    def known_client_address(self, client: str, address: str) -> bool:
        return self.standing({}, known=(client, address)).known

    @staticmethod
    def _lock(rule: str, key: str) -> str:
        return f"{NAMESPACE}/locked/{rule}/{key}"

    @staticmethod
    def _known(client: str, address: str) -> str:
        return f"{NAMESPACE}/known-client-address/{client}/{address}"


class Flags(Protocol):
    """Short-lived named values: ``read`` many at once, ``set`` one with a lifetime."""

    def read(self, names: list[str]) -> list[str | None]: ...

    def set(self, name: str, value: str, seconds: int) -> None: ...


class RedisFlags:
    """Flags in Redis, each answer trusted by this process for :data:`TRUST_SECONDS`.

    A service asking for tokens from one address costs one MGET per second per process, not one
    per request. A lock set by another process reaches this process's *successful* requests
    within that second; its failures are counted in Redis at once (``failed``), and the failure
    that fills a window sets the flag here too, so guessing gains nothing from the delay."""

    def __init__(self, client: redis.Redis):
        self.client = client
        self._seen: dict[str, tuple[float, str | None]] = {}  # name -> (trusted until (monotonic), value)

    def read(self, names: list[str]) -> list[str | None]:
        now = time.monotonic()
        values: list[str | None] = []
        unknown: list[int] = []
        for name in names:
            entry = self._seen.get(name)
            if entry is not None and entry[0] > now:
                values.append(entry[1])
            else:
                unknown.append(len(values))
                values.append(None)
        if unknown:
            for index, raw in zip(unknown, self.client.mget([names[i] for i in unknown])):
                values[index] = None if raw is None else raw.decode()
                self._remember(names[index], values[index], now)
        return values

    def set(self, name: str, value: str, seconds: int) -> None:
        self.client.set(name, value, ex=seconds)
        self._remember(name, value, time.monotonic())

    def _remember(self, name: str, value: str | None, now: float) -> None:
        if len(self._seen) > MAX_REMEMBERED:  # forget what expired (attackers choose the keys)
            self._seen = {k: v for k, v in self._seen.items() if v[0] > now}
        self._seen[name] = (now + TRUST_SECONDS, value)


class MemoryFlags:
    def __init__(self):
        self._values: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def read(self, names: list[str]) -> list[str | None]:
        now = time.monotonic()
        found = [self._values.get(name) for name in names]
        return [entry[1] if entry is not None and entry[0] > now else None for entry in found]

    def set(self, name: str, value: str, seconds: int) -> None:
        with self._lock:
            now = time.monotonic()
            if len(self._values) > MAX_REMEMBERED:  # forget what expired (attackers choose the keys)
                self._values = {k: v for k, v in self._values.items() if v[0] > now}
            self._values[name] = (now + seconds, value)
