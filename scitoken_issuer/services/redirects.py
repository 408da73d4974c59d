"""Which redirect URIs a client may be sent back to: exact match, plus RFC 8252 §7.3 loopback ports.

A native app receives the response on a loopback port the operating system picks at run time, so a
registered ``http://127.0.0.1:PORT/path`` (or ``http://[::1]:PORT/path``) matches that URI on
any port. Everything else must still match exactly: scheme, IP literal, path and query, no
user-info or fragment. ``localhost`` gets no port freedom (RFC 8252 §8.3 advises against it: the
name may resolve elsewhere), so a client registering ``http://localhost:PORT/`` must use that
exact port. See docs/conformance.md.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit


def _loopback_literal(parts: SplitResult) -> str | None:
    """The host as written (``127.0.0.1``, ``[::1]``) when ``parts`` is a plain http URL on a
    loopback IP literal, else None."""
    if parts.scheme != "http" or parts.username is not None or parts.password is not None or parts.fragment:
        return None
    host = parts.netloc.rsplit(":", 1)[0] if not parts.netloc.endswith("]") else parts.netloc
    try:
        address = ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    except ValueError:
        return None
    if not address.is_loopback or (address.version == 6) != host.startswith("["):
        return None
    return host


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        return -1


def loopback_match(registered: str, presented: str) -> bool:
    """RFC 8252 §7.3: ``presented`` is ``registered`` on another port of the same loopback IP literal."""
    reg, got = urlsplit(registered), urlsplit(presented)
    host = _loopback_literal(reg)
    if host is None or _loopback_literal(got) != host:
        return False
    port = _port(got)
    if port == -1 or (port is not None and not 0 < port < 65536):
        return False
    expected = f"http://{host}" + (f":{port}" if port is not None else "") + reg.path + (f"?{reg.query}" if reg.query else "")
    return presented == expected


def redirect_uri_allowed(registered: list[str], presented: str) -> bool:
    """Exact match (RFC 9700 §4.1.3), or a loopback redirect on another port (RFC 8252 §7.3)."""
    if not isinstance(presented, str):
        return False
    return presented in registered or any(loopback_match(uri, presented) for uri in registered)
