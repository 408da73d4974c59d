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
import time

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
NAMESPACE = "scitoken-issuer"


def parse_limit(text: str) -> RateLimitItem | None:
    """``"20/minute"``, ``"100 per hour"`` (the ``limits`` notation), or ``off`` (None)."""
    if text.strip().lower() in ("off", "0", "none"):
        return None
    return parse(text)


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


def client_key(client_id: str) -> str:
    """A short fixed-size key for any presented client id (attackers choose its length)."""
    return hashlib.sha256(client_id.encode("utf-8", "replace")).hexdigest()[:32]


class FailureLimits:
    """Per-key failure counters with a moving window; answers how long a key must wait."""

    def __init__(self, storage_uri: str, rules: dict[str, str]):
        options = {"socket_timeout": 3, "socket_connect_timeout": 3} if storage_uri.startswith("redis") else {}
        self.storage = storage_from_string(storage_uri, **options)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.rules = {name: parse_limit(text) for name, text in rules.items()}

    def retry_after(self, rule: str, key: str) -> int | None:
        """Seconds until ``key`` may try again under ``rule``, or None when it is not over the limit.

        Counters that cannot be read (Redis down) do not block: the limits guard against guessing,
        and a cache outage must not stop token issuance."""
        item = self.rules.get(rule)
        if item is None:
            return None
        try:
            if self.limiter.test(item, NAMESPACE, rule, key):
                return None
            reset = self.limiter.get_window_stats(item, NAMESPACE, rule, key).reset_time
        except Exception as exc:  # noqa: BLE001 - any storage error: fail open, say so
            logger.warning("failure counters unavailable (%s); not limiting", type(exc).__name__)
            return None
        return max(1, math.ceil(reset - time.time()))

    def failed(self, rule: str, key: str) -> None:
        """Count one failure of ``key`` under ``rule``."""
        item = self.rules.get(rule)
        if item is None:
            return
        try:
            self.limiter.hit(item, NAMESPACE, rule, key)
        except Exception as exc:  # noqa: BLE001
            logger.warning("failure counters unavailable (%s); failure not counted", type(exc).__name__)

    def remember_client_address(self, client: str, address: str) -> None:
        """``address`` authenticated as ``client``: a lock on that client does not apply to it."""
        try:
            self.storage.incr(self._known(client, address), KNOWN_ADDRESS_SECONDS)
        except Exception as exc:  # noqa: BLE001
            logger.warning("failure counters unavailable (%s)", type(exc).__name__)

    def known_client_address(self, client: str, address: str) -> bool:
        try:
            return bool(self.storage.get(self._known(client, address)))
        except Exception:  # noqa: BLE001 - unknown, then: the lock applies
            return False

    @staticmethod
    def _known(client: str, address: str) -> str:
        return f"{NAMESPACE}/known-client-address/{client}/{address}"
