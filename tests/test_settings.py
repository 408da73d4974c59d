"""Settings (``scitoken-issuer settings``): defaults, validation with one clear line, production safety."""

from __future__ import annotations

import pytest

from scitoken_issuer.app import create_app
from scitoken_issuer.settings import SETTINGS, ConfigError, Settings


def test_defaults_match_the_spec():
    s = Settings.load({}, environ={})
    assert s.key_type == "RS256" and s.key_rotation_days == 90
    assert s.token_profile == "wlcg" and s.access_token_lifetime == 3600
    assert s.refresh_token_lifetime == 2592000
    assert (s.device_code_lifetime, s.device_poll_interval, s.auth_code_lifetime) == (600, 5, 60)
    assert s.idp_username_claim == "preferred_username" and s.group_cache_ttl == 300
    assert (s.host, s.port) == ("127.0.0.1", 8080) and s.issuer_address == "http://127.0.0.1:8080"
    assert s.posix_strict is True and s.audience is None  # per profile (docs/tokens.md, "Audience")
    assert s.static_clients == [] and s.dev_login


def test_every_setting_has_a_doc():
    assert all(doc for _parse, _default, doc in SETTINGS.values())


@pytest.mark.parametrize("name,value,fragment", [
    ("KEY_TYPE", "HS256", "KEY_TYPE: must be one of RS256, ES256"),
    ("PORT", "eighty", "PORT: expected an integer"),
    ("PORT", "70000", "PORT: must be between"),
    ("ACCESS_TOKEN_LIFETIME", "-5", "ACCESS_TOKEN_LIFETIME"),
    ("POSIX_STRICT", "maybe", "POSIX_STRICT: expected true or false"),
    ("ISSUER_ADDRESS", "ftp://x", "ISSUER_ADDRESS: expected a http/https URL"),
    ("ISSUER_ADDRESS", "https://tokens.example.org/?x=1", "ISSUER_ADDRESS: an issuer address has no query or fragment"),
    ("IDP_ADDRESS", "https://idp.example.org/realms/x#top", "IDP_ADDRESS: an issuer address has no query or fragment"),
    ("STATIC_CLIENTS", "[{", "STATIC_CLIENTS: not valid JSON"),
    ("STATIC_CLIENTS", '{"a": 1}', "STATIC_CLIENTS: expected a JSON list"),
    ("KEY_SIZE", "1024", "KEY_SIZE: must be between 2048"),
    ("SECRET_KEY", "short", "SECRET_KEY: must be at least 32"),
    ("DATABASE_URL", "foo://bar", "DATABASE_URL: no database driver for 'foo'"),
    ("DATABASE_URL", "not a url", "DATABASE_URL: not a database URL"),
    ("DATABASE_URL", "mysql://user:pw@db/issuer", "DATABASE_URL: the driver for 'mysql' is not installed"),
    # docs/tokens.md "Audience": one aud value; "a b" made every token's aud match no verifier
    ("AUDIENCE", "https://se1.example.org https://se2.example.org", "AUDIENCE: must be one URI or name"),
    ("AUDIENCE", "https://sé.example.org", "AUDIENCE: must be one URI or name"),
])
def test_bad_value_names_the_variable(name, value, fragment):
    with pytest.raises(ConfigError) as info:
        Settings.load({}, environ={name: value})
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_log_level_in_any_case():
    assert Settings.load({}, environ={"LOG_LEVEL": "debug"}).log_level == "DEBUG"
    with pytest.raises(ConfigError, match="^LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR"):
        Settings.load({}, environ={"LOG_LEVEL": "verbose"})


def test_database_urls_the_issuer_runs_on():
    """docs/configuration.md DATABASE_URL: PostgreSQL (psycopg 3) and SQLite are accepted as given."""
    for url in ("postgresql://issuer@db/issuer", "postgresql+psycopg://issuer:pw@db:5432/issuer",
                "sqlite:////var/lib/scitoken-issuer/issuer.db"):
        assert Settings.load({}, environ={"DATABASE_URL": url}).database_url == url


def test_storage_root_must_be_a_directory_to_serve(tmp_path):
    """docs/configuration.md POSIX_PATH: the serving processes ask that it is a directory; loading the
    settings alone (the CLI, ``db upgrade`` where the storage is not mounted) does not."""
    settings = Settings.load({}, environ={"POSIX_PATH": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="^POSIX_PATH: .*missing is not a directory"):
        settings.check_storage_root()
    Settings.load({}, environ={"POSIX_PATH": str(tmp_path)}).check_storage_root()
    Settings.load({}, environ={}).check_storage_root()


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="^IDP_CLIENT_ID"):
        Settings.load({}, environ={"IDP_ADDRESS": "https://idp.example.org"})
    with pytest.raises(ConfigError, match="^LDAP_URL: required when USE_LDAP"):
        Settings.load({}, environ={"USE_LDAP": "true"})
    with pytest.raises(ConfigError, match="^POSIX_PATH: must be an absolute path"):
        Settings.load({}, environ={"POSIX_PATH": "data"})


def test_production_refuses_development_shortcuts():
    with pytest.raises(ConfigError, match="^SECRET_KEY: required"):
        Settings.load({}, environ={"ISSUER_ENV": "production"})
    env = {"ISSUER_ENV": "production", "SECRET_KEY": "s" * 40}
    with pytest.raises(ConfigError, match="development login is refused in production"):
        Settings.load({}, environ=env)
    env.update(IDP_ADDRESS="https://idp.example.org", IDP_CLIENT_ID="a", IDP_CLIENT_SECRET="b")
    with pytest.raises(ConfigError, match="^ISSUER_ADDRESS: must be https"):
        Settings.load({}, environ=env)
    env["ISSUER_ADDRESS"] = "https://tokens.example.org"
    assert Settings.load({}, environ=env).production


def test_overrides_beat_the_environment():
    s = Settings.load({"KEY_TYPE": "ES256", "PORT": 9000}, environ={"KEY_TYPE": "RS256"})
    assert s.key_type == "ES256" and s.port == 9000


def test_create_app_without_overrides_is_not_testing(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    app = create_app()
    assert not app.testing
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert create_app().config["SECRET_KEY"] == app.config["SECRET_KEY"]  # kept, not regenerated


def test_bad_static_client_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="^STATIC_CLIENTS: entry 0"):
        create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "s" * 40,
                    "STATIC_CLIENTS": [{"client_id": "x", "grant_types": ["password"]}]})


def test_example_env_loads_and_keeps_each_profiles_any_audience():
    """docs/tokens.md "Audience": the production example must load, and must not pin AUDIENCE to
    the WLCG "any" URI (it did): SciTokens-profile tokens would carry a value their verifiers
    refuse, and no client could narrow its audience."""
    from pathlib import Path

    from scitoken_issuer.services.tokens import ANY_AUDIENCE_BY_PROFILE

    example = Path(__file__).resolve().parents[1] / "config" / "example.env"
    environ = dict(line.split("=", 1) for line in example.read_text().splitlines()
                   if line.strip() and not line.lstrip().startswith("#"))
    settings = Settings.load({}, environ=environ)
    assert settings.issuer_env == "production"
    assert settings.audience not in ANY_AUDIENCE_BY_PROFILE.values()
