"""Every setting of the issuer in one typed place: name, default, one-line doc, validation.

Settings come from the environment; ``create_app(config)`` may override any of them with an
explicit mapping (tests). They are validated once at start-up and read-only afterwards. A bad
value raises :class:`ConfigError` whose message is one line naming the variable.
"""

from __future__ import annotations

import json
import os
import re
import ssl
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError


class ConfigError(ValueError):
    """A configuration variable is missing or malformed; the message names it."""


def _bool(name: str, value: str) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _int(low: int, high: int) -> Callable[[str, str], int]:
    def parse(name: str, value: str) -> int:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
        if not low <= number <= high:
            raise ConfigError(f"{name}: must be between {low} and {high}, got {number}")
        return number
    return parse


def _choice(*choices: str, any_case: bool = False) -> Callable[[str, str], str]:
    def parse(name: str, value: str) -> str:
        text = str(value).strip().upper() if any_case else str(value).strip()
        if text not in choices:
            raise ConfigError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
        return text
    return parse


def _url(schemes: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(name: str, value: str) -> str:
        text = str(value).strip().rstrip("/")
        parts = urlsplit(text)
        if parts.scheme not in schemes or not parts.netloc:
            raise ConfigError(f"{name}: expected a {'/'.join(schemes)} URL, got {value!r}")
        return text
    return parse


def _issuer_url(name: str, value: str) -> str:
    """An OAuth issuer identifier (RFC 8414 §2): an http(s) URL without query or fragment."""
    text = _url(("http", "https"))(name, value)
    if "?" in text or "#" in text:  # also an empty query or fragment ("https://host/?")
        raise ConfigError(f"{name}: an issuer address has no query or fragment, got {value!r}")
    return text


def _str(name: str, value: str) -> str:
    return str(value).strip()


def _database_url(name: str, value: str) -> str:
    """A SQLAlchemy URL whose dialect and driver are installed (the password is never echoed)."""
    text = str(value).strip()
    try:
        url = make_url(text)
        url.get_dialect().import_dbapi()
    except NoSuchModuleError:
        raise ConfigError(f"{name}: no database driver for {text.split(':', 1)[0]!r} "
                          "(expected postgresql+psycopg:// or sqlite://)") from None
    except ArgumentError:  # after its subclass NoSuchModuleError
        raise ConfigError(f"{name}: not a database URL (expected postgresql+psycopg://user@host/db "
                          "or sqlite:////path/file.db)") from None
    except ImportError as exc:
        raise ConfigError(f"{name}: the driver for {url.drivername!r} is not installed ({exc.name})") from None
    return text


def _audience(name: str, value: str) -> str:
    """One ``aud`` value (docs/tokens.md, "Audience"): verifiers compare it whole, so a space
    would make every token's audience match no service."""
    text = str(value).strip()
    if not re.fullmatch(r"[\x21-\x7e]{1,255}", text):
        raise ConfigError(f"{name}: must be one URI or name of 1 to 255 printable ASCII characters "
                          f"without spaces, got {value!r}")
    return text


def _ca_file(name: str, value: str) -> str:
    """A PEM file of CA certificates that Python's TLS can load (one line on failure)."""
    text = str(value).strip()
    try:
        ssl.create_default_context(cafile=text)
    except OSError as exc:  # ssl.SSLError too: not PEM, no certificate in it
        raise ConfigError(f"{name}: cannot load CA certificates from {text}: {exc.strerror or exc}") from None
    return text


def _json_list(name: str, value: str) -> list:
    if isinstance(value, list):
        return value
    try:
        data = json.loads(value) if str(value).strip() else []
    except ValueError as exc:
        raise ConfigError(f"{name}: not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ConfigError(f"{name}: expected a JSON list of objects")
    return data


def _rate(name: str, value: str) -> str:
    """A failure limit in the ``limits`` notation (``20/minute``, ``100 per hour``) or ``off``."""
    from .services.failure_limits import parse_limit
    text = str(value).strip()
    try:
        item = parse_limit(text)
    except ValueError:
        raise ConfigError(f"{name}: expected a rate such as 20/minute or off, got {value!r}") from None
    return "off" if item is None else text


_UNSET = object()


def setting(parse: Callable[[str, Any], Any], default: Any, doc: str) -> Any:
    """Declare one setting: its parser, its default (``None``: unset) and a one-line doc. The
    field's name in upper case is the environment variable."""
    return field(metadata={"parse": parse, "default": default, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """The validated settings. Attribute names are the variable names in lower case."""

    issuer_env: str = setting(_choice("development", "production"), "development",
        "development allows the local login and generated secrets; production refuses them")
    host: str = setting(_str, "127.0.0.1",
        "address `python -m scitoken_issuer` listens on")
    port: int = setting(_int(1, 65535), 8080,
        "port `python -m scitoken_issuer` listens on")
    issuer_address: str = setting(_issuer_url, None,
        "public address of this issuer; default http://HOST:PORT")
    audience: str | None = setting(_audience, None,
        "the `aud` of every access token, one URI or name (clients may ask only for it); unset: the "
        "profile's any-audience (WLCG https://wlcg.cern.ch/jwt/v1/any, SciTokens ANY), narrowable")
    idp_address: str | None = setting(_issuer_url, None,
        "upstream OIDC identity provider; unset: development login")
    idp_client_id: str | None = setting(_str, None,
        "this issuer's client id at the upstream IdP")
    idp_client_secret: str | None = setting(_str, None,
        "this issuer's client secret at the upstream IdP")
    idp_username_claim: str = setting(_str, "preferred_username",
        "id-token claim naming the POSIX user")
    idp_recheck_interval: int = setting(_int(0, 86400), 300,
        "seconds between re-checks of a user at the IdP on refresh")
    posix_path: str | None = setting(_str, None,
        "root of the filesystem storage scopes are checked against; unset: no storage scopes")
    posix_strict: bool = setting(_bool, True,
        "refuse recursive scopes when a file or directory below denies the user")
    tree_index_max_age: int = setting(_int(10, 86400 * 7), 600,
        "seconds between rebuilds of the strict-mode permission index")
    tree_index_wait: int = setting(_int(0, 60), 5,
        "seconds a storage request waits for a permission index being built before 503")
    use_ldap: bool = setting(_bool, False,
        "resolve users and groups from LDAP instead of the system (NSS)")
    ldap_url: str | None = setting(_url(("ldap", "ldaps", "ldapi")), None,
        "LDAP server, e.g. ldaps://ldap.example.org")
    ldap_user_base: str | None = setting(_str, None,
        "base DN of posixAccount users")
    ldap_group_base: str | None = setting(_str, None,
        "base DN of posixGroup / groupOfNames groups")
    ldap_bind_dn: str | None = setting(_str, None,
        "optional bind DN; anonymous when unset")
    ldap_bind_password: str | None = setting(_str, None,
        "password of LDAP_BIND_DN")
    ldap_ca_file: str | None = setting(_ca_file, None,
        "PEM file of the CAs the certificate of an ldaps:// LDAP_URL must chain to; unset: the "
        "system's trust store (the certificate and its host name are always verified)")
    group_cache_ttl: int = setting(_int(0, 86400 * 7), 300,
        "seconds a group answer may be served from cache")
    group_cache_max_staleness: int = setting(_int(0, 86400 * 7), 3600,
        "seconds a cached answer may still be served while LDAP is down")
    database_url: str | None = setting(_database_url, None,
        "SQLAlchemy URL; default SQLite in the instance folder")
    redis_url: str | None = setting(_url(("redis", "rediss", "unix")), None,
        "Redis for Celery, caches and rate limits; unset: in process")
    secret_key: str | None = setting(_str, None,
        "signs sessions and derives at-rest encryption keys; generated and kept in development")
    key_type: str = setting(_choice("RS256", "ES256"), "RS256",
        "signing algorithm: RS256 (RSA) or ES256 (P-256)")
    key_size: int = setting(_int(2048, 8192), 2048,
        "RSA modulus size in bits for RS256 keys")
    key_rotation_days: int = setting(_int(1, 3650), 90,
        "days a signing key signs before the next one takes over")
    key_publish_hours: int = setting(_int(1, 24 * 30), 24,
        "hours the next key is published in the JWKS before it signs")
    token_profile: str = setting(_choice("wlcg", "scitokens"), "wlcg",
        "default access-token profile (per-client override)")
    access_token_lifetime: int = setting(_int(60, 86400 * 7), 3600,
        "seconds")
    refresh_token_lifetime: int = setting(_int(60, 86400 * 400), 2592000,
        "seconds")
    refresh_reuse_grace: int = setting(_int(0, 300), 10,
        "seconds a rotated refresh token may be retried by a concurrent request")
    shared_state_max_age: int = setting(_int(0, 3600), 2,
        "seconds a web process may use its copy of clients and revoked tokens "
        "without Redis (with Redis a change is seen at once)")
    device_code_lifetime: int = setting(_int(10, 86400), 600,
        "seconds")
    device_poll_interval: int = setting(_int(1, 60), 5,
        "seconds between device-flow polls")
    scopes_listing_depth: int = setting(_int(0, 6), 2,
        "directory levels below POSIX_PATH (or the asked path) that "
        "GET /auth/scopes lists (docs/researchers.md)")
    scopes_listing_max: int = setting(_int(1, 5000), 200,
        "most directories one GET /auth/scopes answer lists")
    auth_code_lifetime: int = setting(_int(10, 600), 60,
        "seconds")
    registration: str = setting(_choice("open", "admin", "closed"), "open",
        "dynamic registration: open to anyone (never privileged), admin token only, or closed")
    admin_token: str | None = setting(_str, None,
        "bearer token that may register privileged clients; unset: CLI only")
    static_clients: list = setting(_json_list, [],
        "JSON list of operator-registered clients (RFC 7591 metadata + client_id/secret)")
    dev_users_file: str | None = setting(_str, None,
        "development login users; default config/dev-users.json")
    trusted_proxies: int = setting(_int(0, 10), 0,
        "reverse proxies in front whose X-Forwarded-For/-Proto/-Host are trusted; 0: none")
    failed_user_code_limit: str = setting(_rate, "20/minute",
        "wrong user codes per client address at the device page (RFC 8628 §5.1), or off")
    failed_auth_limit_address: str = setting(_rate, "20/minute",
        "failed client authentications per client address, or off")
    failed_auth_limit_client: str = setting(_rate, "100/hour",
        "failed client authentications per client id (spares its known addresses), or off")
    metrics_token: str | None = setting(_str, None,
        "bearer token /metrics (and a worker's metrics port) requires; unset: open to "
        "whoever reaches the listening address")
    worker_metrics_port: int = setting(_int(0, 65535), 0,
        "port a Celery worker serves its Prometheus metrics on; 0: none")
    worker_metrics_host: str = setting(_str, "127.0.0.1",
        "address a Celery worker's metrics port listens on")
    log_level: str = setting(_choice("DEBUG", "INFO", "WARNING", "ERROR", any_case=True), "INFO",
        "log level (any case: info, INFO)")

    @property
    def production(self) -> bool:
        return self.issuer_env == "production"

    @property
    def dev_login(self) -> bool:
        """The local development login replaces the IdP when no IdP is configured."""
        return self.idp_address is None

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> "Settings":
        """Read every setting from ``overrides``, then ``environ``, then its default; validate."""
        environ = os.environ if environ is None else environ
        overrides = overrides or {}
        values: dict[str, Any] = {}
        for name, (parse, default, _doc) in SETTINGS.items():
            raw = overrides.get(name, _UNSET)
            if raw is _UNSET:
                raw = environ.get(name, _UNSET)
            if raw is _UNSET or raw is None or (isinstance(raw, str) and raw.strip() == ""):
                values[name.lower()] = default
            elif isinstance(raw, (bool, int, list)) and not isinstance(raw, str):
                values[name.lower()] = parse(name, raw if not isinstance(raw, bool) else str(raw))
            else:
                values[name.lower()] = parse(name, raw)
        if values["issuer_address"] is None:
            values["issuer_address"] = f"http://{values['host']}:{values['port']}"
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Cross-field checks; each failure is one line naming the variable."""
        if self.idp_address and not (self.idp_client_id and self.idp_client_secret):
            raise ConfigError("IDP_CLIENT_ID: IDP_ADDRESS is set, so IDP_CLIENT_ID and IDP_CLIENT_SECRET are required")
        if self.use_ldap:
            for name in ("ldap_url", "ldap_user_base", "ldap_group_base"):
                if not getattr(self, name):
                    raise ConfigError(f"{name.upper()}: required when USE_LDAP is true")
        if self.ldap_ca_file and not (self.ldap_url or "").startswith("ldaps://"):
            raise ConfigError("LDAP_CA_FILE: set, but LDAP_URL is not ldaps:// (ldap:// is not encrypted)")
        if self.ldap_bind_dn and self.ldap_bind_password is None:
            raise ConfigError("LDAP_BIND_PASSWORD: required when LDAP_BIND_DN is set")
        if self.posix_path is not None and not os.path.isabs(self.posix_path):
            raise ConfigError(f"POSIX_PATH: must be an absolute path, got {self.posix_path!r}")
        if self.production:
            if not self.secret_key:
                raise ConfigError("SECRET_KEY: required when ISSUER_ENV is production")
            if self.dev_login:
                raise ConfigError("IDP_ADDRESS: required when ISSUER_ENV is production "
                                  "(the development login is refused in production)")
            if not self.issuer_address.startswith("https://"):
                raise ConfigError("ISSUER_ADDRESS: must be https when ISSUER_ENV is production")
        if self.secret_key is not None and len(self.secret_key) < 32:
            raise ConfigError("SECRET_KEY: must be at least 32 characters")
        if self.admin_token is not None and len(self.admin_token) < 32:
            raise ConfigError("ADMIN_TOKEN: must be at least 32 characters")
        if self.metrics_token is not None and len(self.metrics_token) < 32:
            raise ConfigError("METRICS_TOKEN: must be at least 32 characters")
        if self.key_publish_hours >= self.key_rotation_days * 24:
            raise ConfigError("KEY_PUBLISH_HOURS: must be shorter than KEY_ROTATION_DAYS")
        for index, client in enumerate(self.static_clients):
            if not isinstance(client.get("client_id"), str) or not client["client_id"]:
                raise ConfigError(f"STATIC_CLIENTS: entry {index} has no client_id")

    def check_storage_root(self) -> None:
        """A process that serves tokens needs to read the tree under POSIX_PATH: a path that is
        not a directory (a typo, a storage mount missing) stops it at start. The CLI and the
        workers do not ask, so ``db upgrade`` runs where the storage is not mounted."""
        if self.posix_path is not None and not os.path.isdir(self.posix_path):
            raise ConfigError(f"POSIX_PATH: {self.posix_path} is not a directory this process can read")

    def as_flask_config(self) -> dict[str, Any]:
        return {f.name.upper(): getattr(self, f.name) for f in fields(self)}


#: name -> (parser, default, doc), read from the declarations above.
SETTINGS: dict[str, tuple[Callable[[str, Any], Any], Any, str]] = {
    f.name.upper(): (f.metadata["parse"], f.metadata["default"], f.metadata["doc"]) for f in fields(Settings)}


def describe() -> str:
    """A table of every setting, its default and doc (for `scitoken-issuer settings`)."""
    lines = []
    for name, (_parse, default, doc) in SETTINGS.items():
        shown = "(unset)" if default in (None, []) else str(default).lower() if isinstance(default, bool) else default
        lines.append(f"{name:28} {shown!s:34} {doc}")
    return "\n".join(lines)
