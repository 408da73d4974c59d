"""Where users and their groups come from, chosen from the settings (docs/authorization.md)."""

from __future__ import annotations

from pathlib import Path

from ..settings import Settings
from .groups import GroupSource, NssGroupSource, StaticGroupSource
from .ldap_groups import LdapGroupSource

#: The development users shipped in a checkout (``config/dev-users.json``).
DEFAULT_DEV_USERS = Path(__file__).resolve().parents[2] / "config" / "dev-users.json"


def dev_users_path(settings: Settings) -> Path:
    return Path(settings.dev_users_file) if settings.dev_users_file else DEFAULT_DEV_USERS


def build_group_source(settings: Settings) -> GroupSource:
    """LDAP with ``USE_LDAP``; the development users file with the development login; else NSS."""
    if settings.use_ldap:
        return LdapGroupSource(settings.ldap_url, settings.ldap_user_base, settings.ldap_group_base,
                               bind_dn=settings.ldap_bind_dn, bind_password=settings.ldap_bind_password,
                               ca_file=settings.ldap_ca_file)
    if settings.dev_login:
        return StaticGroupSource(dev_users_path(settings))
    return NssGroupSource()


def group_source_summary(settings: Settings) -> str:
    """Where :func:`build_group_source` takes users and groups from, for the start-up summary."""
    if settings.use_ldap:
        return f"LDAP {settings.ldap_url}"
    if settings.dev_login:
        return f"development users file {dev_users_path(settings)}"
    return "system (NSS)"
