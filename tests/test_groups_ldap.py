"""docs/authorization.md: groups from LDAP — posixAccount user, posixGroup/groupOfNames/
groupOfUniqueNames, primary gid.

Against a real slapd loaded from ``tests/data/ldap/base.ldif`` (see tests/support/slapd.py).
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import ldap3
import pytest

from scitoken_issuer.services.groups import GroupSource, GroupsError, GroupsUnavailable
from scitoken_issuer.services.ldap_groups import LdapGroupSource
from tests.support.slapd import bulk_ldif


@pytest.fixture
def source(slapd):
    src = LdapGroupSource(slapd.url, slapd.user_base, slapd.group_base, timeout=2)
    yield src
    src.close()


def test_posix_group_member_uid_and_primary_gid(source):
    """docs/authorization.md: primary gid plus posixGroup memberUid; no gid-less or out-of-base groups."""
    alice = source.lookup("alice")
    assert isinstance(source, GroupSource)
    assert (alice.name, alice.uid, alice.gid) == ("alice", 10001, 10001)
    assert alice.gids == {10001, 5000, 5001}
    assert alice.group_names == ["alice", "atlas", "physics"]  # not mailing-list, outsider


def test_group_of_names_member_dn(source):
    """docs/authorization.md: groupOfNames member DNs count (with a gidNumber)."""
    assert source.lookup("bob").gids == {10002, 5001, 5002}


def test_group_of_unique_names_and_shared_primary_group(source):
    """docs/authorization.md: uniqueMember DNs count; a DN written in other case/spacing still matches;
    the primary group's name is known though no entry lists the user."""
    carol = source.lookup("carol")
    assert (carol.gid, carol.gids) == (5000, {5000, 5002, 5003})
    assert carol.group_names == ["cms", "lhcb", "physics"]


def test_unique_member_with_uid_bits_is_not_a_plain_dn_match(source):
    """RFC 4517 uniqueMemberMatch: alice's ``#'0101'B`` value does not match her bare DN."""
    assert 5003 not in source.lookup("alice").gids
    assert 5003 not in next(u for u in source.iter_users() if u.name == "alice").gids


def test_filter_values_are_escaped(source):
    """docs/authorization.md: filter values are escaped — a crafted name finds only the exact entry, if any."""
    eve = source.lookup("eve)(uid=*")
    assert (eve.name, eve.uid, eve.gids) == ("eve)(uid=*", 10666, {10666, 5666})
    star = source.lookup("*")
    assert (star.uid, star.gids) == (10667, {10667})
    for name in ("alice)(uid=*", "al*", "*)(|(uid=*", "alice\\2a", "\\*"):
        assert source.lookup(name) is None, name


def test_unknown_user(source):
    assert source.lookup("nobody-here") is None
    assert source.lookup("") is None


def test_full_pass_agrees_with_live_lookups(slapd):
    """docs/authorization.md: one paged pass (here 2 entries a page, bound as admin) equals the live answers."""
    src = LdapGroupSource(slapd.url, slapd.user_base, slapd.group_base, bind_dn=slapd.admin_dn,
                          bind_password=slapd.admin_password, page_size=2)
    users = {u.name: u for u in src.iter_users()}
    assert set(users) == {"alice", "bob", "carol", "eve)(uid=*", "*"}
    for name, user in users.items():
        assert user == src.lookup(name)
        assert user.groups == src.lookup(name).groups
    src.close()


def test_paged_pass_beyond_the_size_limit(slapd_factory):
    """docs/authorization.md: paged searches — 1,200 users pass a server whose size limit is 500."""
    server = slapd_factory("".join(bulk_ldif(1200, 150, groups_per_user=5)))
    conn = ldap3.Connection(server.url, auto_bind=True)
    conn.search(server.user_base, "(objectClass=posixAccount)", attributes=["uid"])
    assert conn.result["result"] == 4  # sizeLimitExceeded without paging
    conn.unbind()
    src = LdapGroupSource(server.url, server.user_base, server.group_base, page_size=300)
    users = {u.name: u for u in src.iter_users()}
    assert len(users) == 1200
    for name in ("user000000", "user000599", "user001199"):
        assert users[name] == src.lookup(name)
        assert 3 <= len(users[name].gids) - 1 <= 7
    src.close()


def test_ldap_stopped_mid_test_then_reconnects(slapd, source):
    """docs/errors.md: LDAP down → GroupsUnavailable (a 503), never an empty grant; back → reconnect."""
    assert source.lookup("alice").gids == {10001, 5000, 5001}
    slapd.stop()
    with pytest.raises(GroupsUnavailable):
        source.lookup("alice")
    with pytest.raises(GroupsUnavailable):
        list(source.iter_users())
    assert issubclass(GroupsUnavailable, GroupsError)
    slapd.start()
    assert source.lookup("alice").gids == {10001, 5000, 5001}


def test_hung_ldap_times_out(slapd):
    """docs/errors.md: a server that accepts but never answers gives GroupsUnavailable within the timeout."""
    src = LdapGroupSource(slapd.url, slapd.user_base, slapd.group_base, timeout=1)
    assert src.lookup("bob") is not None
    os.kill(slapd.process.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(GroupsUnavailable):
            src.lookup("bob")
        assert time.monotonic() - started < 10
    finally:
        os.kill(slapd.process.proc.pid, signal.SIGCONT)
    assert src.lookup("bob") is not None
    src.close()


def test_bad_bind_credentials_are_unavailable_not_anonymous(slapd):
    """docs/errors.md: a failing bind is a dependency error, not a silent fallback."""
    src = LdapGroupSource(slapd.url, slapd.user_base, slapd.group_base,
                          bind_dn=slapd.admin_dn, bind_password="wrong")
    with pytest.raises(GroupsUnavailable):
        src.lookup("alice")


def test_one_connection_shared_by_threads(source):
    """One pooled connection serves concurrent look-ups correctly."""
    names = ["alice", "bob", "carol"] * 30
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(source.lookup, names))
    assert [u.name for u in results] == names
    assert {u.name: u.gids for u in results}["bob"] == {10002, 5001, 5002}
