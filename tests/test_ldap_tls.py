"""docs/configuration.md, "LDAP": an ldaps:// directory's certificate and host name are verified
(RFC 4513 §3.1.3) against LDAP_CA_FILE or the system's trust store; groups decide storage scopes,
so a directory nobody verified could grant them. Against a real slapd listening on ldaps://."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from scitoken_issuer.services.groups import GroupsUnavailable
from scitoken_issuer.services.ldap_groups import LdapGroupSource
from scitoken_issuer.settings import ConfigError, Settings
from tests.support.slapd import Slapd, make_slapd
from tests.support.tls import make_tls


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ldap-tls")


@pytest.fixture(scope="module")
def ldaps(tls_dir) -> Iterator[tuple[Slapd, Path]]:
    """A slapd serving ldaps:// with a certificate for 127.0.0.1 from a private CA; (server, CA file)."""
    ca, cert, key = make_tls(tls_dir)
    server = make_slapd(tls=(cert, key))
    try:
        yield server, ca
    finally:
        server.destroy()


def _source(server: Slapd, ca_file: str | None) -> LdapGroupSource:
    return LdapGroupSource(server.ldaps_url, server.user_base, server.group_base, timeout=2, ca_file=ca_file)


def test_ldaps_with_the_sites_ca_answers(ldaps):
    """RFC 4513 §3.1.3: a certificate that chains to LDAP_CA_FILE and names the host is accepted."""
    server, ca = ldaps
    source = _source(server, str(ca))
    try:
        assert source.lookup("alice").uid == 10001
    finally:
        source.close()


def test_ldaps_certificate_nobody_vouches_for_is_refused(ldaps):
    """RFC 4513 §3.1.3: without the CA (the system's trust store does not hold it) the server is
    not trusted: the look-up is "unavailable", never an answer from an unverified directory."""
    server, _ca = ldaps
    source = _source(server, None)
    try:
        with pytest.raises(GroupsUnavailable, match="CERTIFICATE_VERIFY_FAILED|certificate"):
            source.lookup("alice")
    finally:
        source.close()


def test_ldaps_certificate_of_another_host_is_refused(ldaps, tls_dir):
    """RFC 4513 §3.1.3: a certificate from the right CA for another name is refused."""
    server, ca = ldaps
    source = LdapGroupSource(f"ldaps://localhost:{server.tls_port}", server.user_base, server.group_base,
                             timeout=2, ca_file=str(ca))
    try:
        with pytest.raises(GroupsUnavailable, match="match"):
            source.lookup("alice")
    finally:
        source.close()


def test_ldap_ca_file_setting(ldaps, tls_dir):
    """docs/configuration.md: LDAP_CA_FILE reaches the group source; a file that is missing or
    holds no certificate, or a CA file for an unencrypted ldap:// URL, is one line naming it."""
    server, ca = ldaps
    base = {"USE_LDAP": "true", "LDAP_URL": server.ldaps_url, "LDAP_USER_BASE": server.user_base,
            "LDAP_GROUP_BASE": server.group_base}
    assert Settings.load({**base, "LDAP_CA_FILE": str(ca)}, environ={}).ldap_ca_file == str(ca)
    (tls_dir / "not-a-cert.pem").write_text("hello\n")
    for bad in (str(tls_dir / "missing.pem"), str(tls_dir / "not-a-cert.pem")):
        with pytest.raises(ConfigError, match=r"^LDAP_CA_FILE: cannot load CA certificates from ") as caught:
            Settings.load({**base, "LDAP_CA_FILE": bad}, environ={})
        assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"^LDAP_CA_FILE: set, but LDAP_URL is not ldaps://"):
        Settings.load({**base, "LDAP_URL": server.url, "LDAP_CA_FILE": str(ca)}, environ={})
    from scitoken_issuer.services.directory import build_group_source
    source = build_group_source(Settings.load({**base, "LDAP_CA_FILE": str(ca)}, environ={}))
    try:
        assert source.lookup("bob") is not None
    finally:
        source.close()
