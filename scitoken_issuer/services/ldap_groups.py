"""Users and groups from LDAP (docs/authorization.md): ``posixAccount`` users, ``posixGroup`` (``memberUid``),
``groupOfNames`` / ``groupOfUniqueNames`` (member DNs) groups with a ``gidNumber``.

Filter values are escaped, full passes use simple paged results, an ``ldaps://`` server's
certificate and host name are verified (against ``ca_file`` or the system's trust store), and one
connection is reused (under a lock held for one search page) and reopened once on failure before
the source answers :class:`~scitoken_issuer.services.groups.GroupsUnavailable`.
"""

from __future__ import annotations

import logging
import math
import ssl
import threading
from typing import Any, Iterator

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from scitoken_issuer import metrics
from scitoken_issuer.services.groups import GroupsUnavailable
from scitoken_issuer.services.users import PosixUser

logger = logging.getLogger(__name__)

_PAGED_RESULTS = "1.2.840.113556.1.4.319"
_GROUP_CLASSES = "(|(objectClass=posixGroup)(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))"
_NO_SUCH_OBJECT = 32
_DN_SPECIALS = frozenset(',+"\\<>;=')


class VerifiedTls(ldap3.Tls):
    """TLS for ``ldaps://``, verified during the handshake by Python's own context: the chain
    (against ``ca_file``, else the system's trust store) and the host name (RFC 4513 §3.1.3).

    ldap3's own ``Tls`` verifies nothing by default, so anyone on the path could answer with
    made-up groups, and storage scopes follow groups; asked to verify, it checks the name only
    after the handshake and leaves that socket open when the name does not match."""

    def __init__(self, ca_file: str | None = None):
        super().__init__(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file)
        self._context: ssl.SSLContext | None = None

    def wrap_socket(self, connection, do_handshake: bool = False) -> None:
        if self._context is None:
            self._context = ssl.create_default_context(cafile=self.ca_certs_file)
        connection.socket = self._context.wrap_socket(
            connection.socket, server_hostname=connection.server.host, do_handshake_on_connect=do_handshake)


class LdapGroupSource:
    """Users (``posixAccount``) and groups from LDAP over one reused, thread-safe connection.

    A user is ``(&(objectClass=posixAccount)(uid=U))`` under ``user_base``; its groups are its
    primary ``gidNumber`` plus every entry under ``group_base`` that lists it: ``posixGroup``
    ``memberUid``, ``groupOfNames`` ``member`` DN, ``groupOfUniqueNames`` ``uniqueMember`` DN.
    Only entries with a ``gidNumber`` are POSIX groups (whatever class supplies it, e.g. an
    auxiliary ``posixGroup`` as in rfc2307bis/FreeIPA); a ``groupOfNames`` without one is skipped,
    since a permission check needs a gid. Nested groups are not expanded. A ``uniqueMember``
    carrying the optional ``#'…'B`` UID matches no plain DN (RFC 4517 ``uniqueMemberMatch``), so
    both paths ignore it. Filter values are escaped; the full pass uses simple paged results.
    """

    def __init__(self, url: str, user_base: str, group_base: str, bind_dn: str | None = None,
                 bind_password: str | None = None, timeout: float = 5.0, page_size: int = 500,
                 ca_file: str | None = None):
        self.url, self.user_base, self.group_base = url, user_base, group_base
        self._tls = VerifiedTls(ca_file)
        self.page_size = page_size
        self._bind = (bind_dn, bind_password)
        self._connect_timeout = timeout
        self._receive_timeout = max(1, math.ceil(timeout))  # ldap3 packs it as whole seconds
        self._conn: ldap3.Connection | None = None
        # One connection, one operation at a time: a page of the full pass holds the lock only
        # for that page, so live look-ups interleave. (ldap3's SAFE_SYNC would deep-copy every
        # response, which costs a third of the full pass.)
        self._lock = threading.RLock()

    # -- connection ------------------------------------------------------------------------
    def _connection(self) -> ldap3.Connection:
        """The pooled connection, opened and bound on first use or after a failure (lock held)."""
        if self._conn is None or self._conn.closed:
            # A fresh Server each time: ldap3 remembers a refused address as unusable for a while.
            server = ldap3.Server(self.url, connect_timeout=self._connect_timeout, get_info=ldap3.NONE,
                                  tls=self._tls)
            conn = ldap3.Connection(
                server, user=self._bind[0], password=self._bind[1], read_only=True,
                receive_timeout=self._receive_timeout, raise_exceptions=False, check_names=False)
            try:
                conn.open()
                bound = conn.bind()
            except BaseException:
                _close(conn)
                raise
            if not bound:
                metrics.ldap_error("bind")
                _close(conn)
                raise GroupsUnavailable(f"LDAP bind failed: {conn.result.get('description')}")
            self._conn = conn
        return self._conn

    def _search(self, base: str, search_filter: str, attributes: list[str],
                paged: bool = False) -> list[tuple[str, dict[str, list[Any]]]]:
        """All entries (dn, attributes); one reconnect-and-retry, then GroupsUnavailable."""
        error: Exception | None = None
        for _attempt in range(2):
            try:
                return self._search_pages(base, search_filter, attributes, paged)
            except LDAPException as exc:
                metrics.ldap_error("connection")
                logger.warning("LDAP %s: %s; reconnecting", self.url, exc)
                error = exc
                self.close()
        raise GroupsUnavailable(f"LDAP unavailable: {error}") from error

    def _search_pages(self, base: str, search_filter: str, attributes: list[str],
                      paged: bool) -> list[tuple[str, dict]]:
        entries: list[tuple[str, dict]] = []
        cookie: bytes | None = None
        while True:
            with self._lock:
                conn = self._connection()
                conn.search(base, search_filter, attributes=attributes,
                            dereference_aliases=ldap3.DEREF_NEVER,
                            paged_size=self.page_size if paged else None, paged_cookie=cookie)
                result, response = conn.result, conn.response or []
            if result["result"] == _NO_SUCH_OBJECT:
                return entries
            if result["result"] != 0:
                metrics.ldap_error("search")
                raise GroupsUnavailable(f"LDAP search under {base} failed: {result['description']}"
                                        f" {result.get('message', '')}".rstrip())
            entries.extend((r["dn"], r["attributes"]) for r in response
                           if r["type"] == "searchResEntry")
            cookie = (result.get("controls") or {}).get(_PAGED_RESULTS, {}).get("value", {}).get("cookie")
            if not paged or not cookie:
                return entries

    # -- the protocol --------------------------------------------------------------------
    def lookup(self, username: str) -> PosixUser | None:
        if not username or "\0" in username:
            return None
        users = self._search(self.user_base, f"(&(objectClass=posixAccount)(uid={escape_filter_chars(username)}))",
                             ["uid", "uidNumber", "gidNumber"])
        if len(users) != 1:
            if users:
                logger.error("LDAP has %d posixAccounts for uid %r; refusing", len(users), username)
            return None
        dn, attrs = users[0]
        ident = _identity(attrs)
        if ident is None:
            logger.error("LDAP entry %s lacks a usable uidNumber/gidNumber", dn)
            return None
        name, uid, gid = next((u for u in attrs["uid"] if u.lower() == username.lower()), username), *ident
        member, dn_value = escape_filter_chars(name), escape_filter_chars(dn)
        groups = self._search(
            self.group_base,
            f"(&(gidNumber=*){_GROUP_CLASSES}(|(gidNumber={gid})(memberUid={member})"
            f"(member={dn_value})(uniqueMember={dn_value})))", ["cn", "gidNumber"])
        names: dict[int, str] = {}
        for _, gattrs in groups:
            gid_value = _first_int(gattrs.get("gidNumber"))
            if gid_value is not None and gattrs.get("cn"):
                names.setdefault(gid_value, gattrs["cn"][0])
        return PosixUser(name, uid, gid, frozenset(names) | {gid}, names)

    def iter_users(self) -> Iterator[PosixUser]:
        users = self._search(self.user_base, "(objectClass=posixAccount)",
                             ["uid", "uidNumber", "gidNumber"], paged=True)
        ident: dict[str, tuple[int, int]] = {}
        by_dn: dict[str, str] = {}
        for dn, attrs in users:
            found = _identity(attrs)
            if found is None or not attrs.get("uid"):
                continue
            name = attrs["uid"][0]
            if name in ident:  # ambiguous: the live look-up refuses it too
                ident[name] = (-1, -1)
                continue
            ident[name], by_dn[_dn_key(dn)], by_dn[dn] = found, name, name
        del users
        groups = self._search(self.group_base, f"(&(gidNumber=*){_GROUP_CLASSES})",
                              ["cn", "gidNumber", "memberUid", "member", "uniqueMember"], paged=True)
        names: dict[int, str] = {}
        member_of: dict[str, set[int]] = {}
        for _, attrs in groups:
            gid = _first_int(attrs.get("gidNumber"))
            if gid is None:
                continue
            if attrs.get("cn"):
                names.setdefault(gid, attrs["cn"][0])
            members = [m for m in attrs.get("memberUid", ()) if m in ident]
            members += [by_dn.get(dn) or by_dn.get(_dn_key(dn)) for dn in attrs.get("member", ())]
            members += [by_dn.get(dn) or by_dn.get(_dn_key(dn))
                        for dn in attrs.get("uniqueMember", ()) if "#" not in dn]
            for member in members:
                if member is not None:
                    member_of.setdefault(member, set()).add(gid)
        logger.info("LDAP pass: %d users, %d groups", len(ident), len(groups))
        del groups
        for name, (uid, gid) in ident.items():
            if uid < 0:
                continue
            gids = frozenset(member_of.get(name, ())) | {gid}
            yield PosixUser(name, uid, gid, gids, {g: names[g] for g in gids if g in names})

    def close(self) -> None:
        """Drop the pooled connection (it is reopened on next use)."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            _close(conn)


def _close(conn: ldap3.Connection) -> None:
    """Unbind if the server still listens; close the socket in any case."""
    try:
        conn.unbind()
    except (LDAPException, OSError):
        pass
    sock = getattr(conn, "socket", None)
    if sock is not None:
        sock.close()


def _first_int(values: list | None) -> int | None:
    try:
        return int(values[0]) if values else None
    except (TypeError, ValueError):
        return None


def _identity(attrs: dict) -> tuple[int, int] | None:
    uid, gid = _first_int(attrs.get("uidNumber")), _first_int(attrs.get("gidNumber"))
    return None if uid is None or gid is None else (uid, gid)


def _dn_key(dn: str) -> str:
    """A comparable form of a DN: case and outer spaces folded, escapes made canonical."""
    if "\\" in dn or '"' in dn:
        rdns = _unescape_dn(dn)
    else:
        rdns = [(a, v) for a, _, v in (rdn.partition("=") for rdn in dn.split(","))]
    return ",".join(f"{a.strip().lower()}={_escape_value(v.strip().lower())}" for a, v in rdns)


def _escape_value(value: str) -> str:
    if _DN_SPECIALS.isdisjoint(value):
        return value
    return "".join(f"\\{c}" if c in _DN_SPECIALS else c for c in value)


def _unescape_dn(dn: str) -> list[tuple[str, str]]:
    """Split a DN at unescaped ``,`` and ``=``, resolving ``\\XX`` and ``\\c`` escapes (RFC 4514)."""
    rdns: list[tuple[str, str]] = []
    attr: bytes | None = None
    buf, raw, i = bytearray(), dn.encode(), 0
    while i < len(raw):
        byte = raw[i]
        if byte == 0x5C and i + 1 < len(raw):
            pair = raw[i + 1:i + 3]
            if len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair):
                buf.append(int(pair, 16))
                i += 3
            else:
                buf.append(raw[i + 1])
                i += 2
            continue
        if byte == 0x3D and attr is None:
            attr, buf = bytes(buf), bytearray()
        elif byte == 0x2C:
            rdns.append(((attr or b"").decode(), buf.decode("utf-8", "replace")))
            attr, buf = None, bytearray()
        elif byte != 0x22:
            buf.append(byte)
        i += 1
    rdns.append(((attr or b"").decode(), buf.decode("utf-8", "replace")))
    return rdns
