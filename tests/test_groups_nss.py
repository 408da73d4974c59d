"""docs/authorization.md: a user's groups from the system (NSS) are its primary gid plus every group listing it."""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import subprocess

import pytest

from scitoken_issuer.services.groups import GroupSource, NssGroupSource


def test_root_has_primary_gid_and_listed_groups():
    """docs/authorization.md: root's groups are gid 0 plus every /etc/group entry naming root."""
    user = NssGroupSource().lookup("root")
    assert user is not None
    assert (user.name, user.uid, user.gid) == ("root", 0, 0)
    listed = {g.gr_gid for g in grp.getgrall() if "root" in g.gr_mem}
    assert user.gids == frozenset(os.getgrouplist("root", 0)) == listed | {0}
    assert user.groups[0] == grp.getgrgid(0).gr_name


def test_unknown_and_malformed_names_are_none():
    """docs/authorization.md; docs/errors.md: an unknown user has no groups; odd input is no error."""
    source = NssGroupSource()
    assert source.lookup("no-such-user-" + secrets.token_hex(4)) is None
    assert source.lookup("") is None
    assert source.lookup("root\0") is None


def test_full_pass_covers_every_passwd_entry():
    """docs/authorization.md: the precompute pass yields every user, agreeing with the live look-up."""
    source = NssGroupSource()
    assert isinstance(source, GroupSource)
    users = {u.name: u for u in source.iter_users()}
    assert set(users) == {p.pw_name for p in pwd.getpwall()}
    for name in ("root", "daemon", "nobody"):
        if name in users:
            assert users[name] == source.lookup(name)


@pytest.fixture
def system_user():
    """A real user in two supplementary groups (useradd, root only), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("adding a system user needs root")
    tag = secrets.token_hex(3)
    user, groups = f"stig{tag}", [f"stig{tag}a", f"stig{tag}b"]
    created: list[list[str]] = []
    try:
        for group in groups:
            subprocess.run(["groupadd", group], check=True)
            created.append(["groupdel", group])
        subprocess.run(["useradd", "-M", "-N", "-g", "nogroup", "-G", ",".join(groups), user], check=True)
        created.insert(0, ["userdel", user])
        yield user, groups
    finally:
        for argv in created:
            subprocess.run(argv, check=False)


def test_added_user_groups_live_and_in_pass(system_user):
    """docs/authorization.md: supplementary groups from /etc/group count, live and in the full pass."""
    name, groups = system_user
    source = NssGroupSource()
    user = source.lookup(name)
    assert user is not None
    expected = {grp.getgrnam(g).gr_gid for g in groups} | {grp.getgrnam("nogroup").gr_gid}
    assert user.gids == expected
    assert set(user.group_names) == set(groups) | {"nogroup"}
    assert next(u for u in source.iter_users() if u.name == name) == user
