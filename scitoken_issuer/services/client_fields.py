"""Checks of single client metadata values: redirect URIs, other URIs, human-readable text.

What is stored must be exactly what is later shown or matched: no control, format (bidi
override, zero-width) or other non-printable character in text, only RFC 3986 characters in URIs.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import urlsplit

MAX_URI_LENGTH = 2000
MAX_TEXT_LENGTH = 200
#: RFC 3986 §2: the characters a URI may hold (unreserved, reserved, and '%' of percent-encoding).
_URI_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")


class ClientMetadataError(ValueError):
    """Client metadata is invalid (RFC 7591 ``invalid_client_metadata`` / ``invalid_redirect_uri``)."""

    def __init__(self, description: str, error: str = "invalid_client_metadata"):
        super().__init__(description)
        self.description = description
        self.error = error


class PrivilegeError(ClientMetadataError):
    """A caller without administrator rights asked for what only an administrator gives: a
    privileged grant, or a change of a policy the administrator set (docs/registration.md)."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_text(name: str, value: object) -> str:
    """A short human-readable string without control, format (bidi overrides, zero-width),
    private-use, unassigned or line/paragraph-separator characters: what is stored is what is shown."""
    if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH:
        raise ClientMetadataError(f"{name} must be a string of at most {MAX_TEXT_LENGTH} characters")
    for ch in value:
        if unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp"):
            raise ClientMetadataError(f"{name} contains the non-printable character U+{ord(ch):04X}")
    return value


def check_uri_characters(name: str, uri: object, error: str = "invalid_client_metadata") -> str:
    """A string of at most ``MAX_URI_LENGTH`` RFC 3986 characters: no space, control or non-ASCII
    character that a browser or library would drop or encode, so the stored URI is the one used."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI_LENGTH:
        raise ClientMetadataError(f"each {name} must be a string of at most {MAX_URI_LENGTH} characters", error)
    if not _URI_CHARACTERS.fullmatch(uri):
        bad = next(ch for ch in uri if not _URI_CHARACTERS.fullmatch(ch))
        raise ClientMetadataError(f"{name} contains U+{ord(bad):04X}, which a URI may not hold "
                                  f"(RFC 3986 section 2; percent-encode it)", error)
    return uri


def check_redirect_uri(uri: object) -> str:
    """https anywhere, http only on loopback, or a private-use scheme with a dot (RFC 8252 §7);
    RFC 3986 characters only, no fragment and no user information before the host."""
    uri = check_uri_characters("redirect_uri", uri, "invalid_redirect_uri")
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise ClientMetadataError(f"redirect_uri must not have a fragment: {uri}", "invalid_redirect_uri")
    if "@" in parts.netloc:  # "https://good.example@evil.example/" goes to evil.example
        raise ClientMetadataError(f"redirect_uri must not have user information: {uri}", "invalid_redirect_uri")
    if parts.scheme == "https" and parts.hostname:
        return uri
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return uri
    if parts.scheme not in ("http", "https", "") and "." in parts.scheme:
        return uri
    raise ClientMetadataError(f"redirect_uri must be https, http on a loopback address, or a "
                              f"private-use scheme: {uri}", "invalid_redirect_uri")
