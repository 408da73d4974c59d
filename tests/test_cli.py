"""The operator CLI (issue 2 §6, docs/errors.md): ``scitoken-issuer client add|list|show|delete``,
``keys list|rotate``, ``settings`` and ``db upgrade``; secrets printed once, never listed."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from scitoken_issuer.extensions import db, runtime

STATIC = [{"client_id": "static-svc", "client_secret": "static-secret-0123456789abcdef0123456789",
           "grant_types": ["client_credentials"], "scope": "storage.read:/data"}]


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()

    def invoke(*args: str):
        return runner.invoke(args=list(args))

    return invoke


def add_client(cli, *extra: str) -> dict:
    result = cli("client", "add", "--name", "svc", "--grant", "client_credentials", "--scope", "storage.read:/data",
                 *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_add_prints_the_secret_once(cli):
    """docs/errors.md: the secret is shown once at creation and stored only as a hash."""
    created = add_client(cli, "--profile", "scitokens")
    secret = created["client_secret"]
    assert len(secret) >= 43 and created["grant_types"] == ["client_credentials"]
    assert created["token_profile"] == "scitokens"
    stored = runtime().clients.get(created["client_id"])
    assert stored.source == "admin" and runtime().clients.check_secret(stored, secret)
    assert secret not in json.dumps(stored.client_metadata) and stored.client_secret_hash != secret

    listed = cli("client", "list")
    shown = cli("client", "show", "--", created["client_id"])
    assert listed.exit_code == 0 and shown.exit_code == 0
    assert created["client_id"] in listed.output
    assert json.loads(shown.output)["client_id"] == created["client_id"]
    for output in (listed.output, shown.output):
        assert secret not in output and '"client_secret":' not in output
        assert created["registration_access_token"] not in output


def test_added_client_gets_tokens(cli, client):
    """The administrator's client may use client credentials (docs/flows.md, flow 4) within its scope."""
    from .conftest import basic_auth

    created = add_client(cli)
    response = client.post("/auth/token", data={"grant_type": "client_credentials"},
                           headers=basic_auth(created["client_id"], created["client_secret"]))
    assert response.status_code == 200 and response.get_json()["scope"] == "storage.read:/data"


def test_public_client_has_no_secret(cli):
    result = cli("client", "add", "--grant", "authorization_code", "--redirect-uri", "http://127.0.0.1:9999/cb",
                 "--public")
    assert result.exit_code == 0, result.output
    assert "client_secret" not in json.loads(result.output)


def test_chosen_client_id_and_duplicate(cli):
    """A chosen client id works once; the second time is one clear error."""
    assert add_client(cli, "--client-id", "my-service")["client_id"] == "my-service"
    again = cli("client", "add", "--grant", "client_credentials", "--client-id", "my-service")
    assert again.exit_code != 0 and "already registered" in again.output
    assert "Traceback" not in again.output


def test_delete(cli):
    """Deletion by id; ``--`` because generated ids are base64url and may start with "-"."""
    created = add_client(cli)
    result = cli("client", "delete", "--", created["client_id"])
    assert result.exit_code == 0 and created["client_id"] in result.output
    assert runtime().clients.get(created["client_id"]) is None
    assert cli("client", "show", "--", created["client_id"]).exit_code != 0


@pytest.mark.parametrize("app_config", [{"STATIC_CLIENTS": STATIC}])
def test_static_client_cannot_be_deleted(cli, app_config):
    """docs/configuration.md STATIC_CLIENTS belong to the operator's configuration, not the database."""
    listed = cli("client", "list")
    assert "static-svc" in listed.output and "static" in listed.output
    assert STATIC[0]["client_secret"] not in listed.output
    shown = cli("client", "show", "static-svc")
    assert shown.exit_code == 0 and STATIC[0]["client_secret"] not in shown.output
    result = cli("client", "delete", "static-svc")
    assert result.exit_code != 0
    assert "STATIC_CLIENTS" in result.output
    assert runtime().clients.get("static-svc") is not None


@pytest.mark.parametrize("args,needle", [
    (("client", "add", "--grant", "password"), "password"),
    (("client", "add", "--grant", "authorization_code", "--redirect-uri", "http://evil.example.org/cb"),
     "redirect_uri"),
    (("client", "add", "--grant", "authorization_code", "--redirect-uri", "https://ok.example.org/cb#x"),
     "fragment"),
    (("client", "add", "--grant", "client_credentials", "--scope", "storage.read:/data/../etc"), "scope"),
    (("client", "add", "--grant", "client_credentials", "--public"), "public"),
    (("client", "add", "--auth-method", "private_key_jwt"), "auth-method"),
    (("client", "show", "no-such-client"), "no-such-client"),
    (("client", "delete", "no-such-client"), "no-such-client"),
])
def test_bad_input_is_one_clear_error(cli, args, needle):
    """Bad input exits non-zero with one clear message, no traceback, nothing created."""
    before = len(runtime().clients.list())
    result = cli(*args)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and needle in errors[0], result.output
    assert len(runtime().clients.list()) == before


def test_keys_list_and_rotate(cli):
    """Issue 2 §4: rotation publishes the next key before it signs; ``--immediately`` signs at once."""
    current = runtime().keys.signing_key().kid
    listed = cli("keys", "list")
    assert listed.exit_code == 0 and f"current  {current}" in listed.output
    rotated = cli("keys", "rotate")
    assert rotated.exit_code == 0, rotated.output
    new_kid = rotated.output.split()[1]
    db.session.remove()  # committed, not just flushed: a new session sees the key
    assert new_kid in {k.kid for k in runtime().keys.view(fresh=True).upcoming}
    listed = cli("keys", "list").output
    assert f"next     {new_kid}" in listed and f"current  {current}" in listed
    urgent = cli("keys", "rotate", "--immediately")
    assert urgent.exit_code == 0
    assert runtime().keys.view(fresh=True).current.kid == urgent.output.split()[1]


def test_keys_rotate_compromised(cli):
    """``--compromised``: the new key signs at once and is the only one published."""
    old = runtime().keys.signing_key().kid
    db.session.commit()
    result = cli("keys", "rotate", "--compromised")
    assert result.exit_code == 0, result.output
    new = result.output.split()[1]
    db.session.remove()
    assert {k.kid for k in runtime().keys.published(fresh=True) if k.alg == "RS256"} == {new} and new != old


@pytest.mark.parametrize("app_config", [{"KEY_TYPE": "ES256"}])
def test_keys_list_and_rotate_both_chains(cli, app_config):
    """OIDC Core §15.1: with KEY_TYPE=ES256 an RS256 chain signs ID tokens; ``keys list`` shows
    both chains and what each signs, ``keys rotate`` rotates both or the one named by ``--alg``."""
    access, id_key = runtime().keys.signing_key(), runtime().keys.id_token_key()
    db.session.commit()
    listed = cli("keys", "list").output
    assert f"current  {access.kid} ES256" in listed and "(access tokens)" in listed
    assert f"current  {id_key.kid} RS256" in listed and "(ID tokens)" in listed
    rotated = cli("keys", "rotate")
    assert rotated.exit_code == 0, rotated.output
    assert sorted(line.split()[2].strip("(,") for line in rotated.output.splitlines()) == ["ES256", "RS256"]
    only = cli("keys", "rotate", "--alg", "RS256", "--immediately")
    assert only.exit_code == 0 and len(only.output.splitlines()) == 1 and "RS256" in only.output
    db.session.remove()
    assert runtime().keys.view("RS256", fresh=True).current.kid == only.output.split()[1]
    assert runtime().keys.view("ES256", fresh=True).current.kid == access.kid


def test_keys_rotate_refuses_a_chain_not_in_use(cli):
    """``--alg ES256`` on an RS256 issuer is one clear error, nothing created."""
    result = cli("keys", "rotate", "--alg", "ES256")
    assert result.exit_code != 0 and "no ES256 chain is in use" in result.output


def test_settings_lists_every_variable(cli):
    """docs/configuration.md: every setting with its default and meaning."""
    from scitoken_issuer.settings import SETTINGS

    result = cli("settings")
    assert result.exit_code == 0
    for name in SETTINGS:
        assert name in result.output
    assert "RS256" in result.output


def console(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "PYENV_VERSION", "PYENV_ROOT",
                                                                  "PYTHONPATH")}
    clean.update({"HOME": str(tmp_path), "INSTANCE_PATH": str(tmp_path / "instance"), **env})
    return subprocess.run(["scitoken-issuer", *args], capture_output=True, text=True, timeout=120, env=clean)


def test_console_script_db_upgrade_then_client_add(tmp_path):
    """The installed ``scitoken-issuer`` script: ``db upgrade`` then ``client add`` on a fresh instance."""
    upgraded = console(tmp_path, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tmp_path / "instance" / "scitoken-issuer.db").exists()
    again = console(tmp_path, "db", "upgrade")
    assert again.returncode == 0, again.stderr
    added = console(tmp_path, "client", "add", "--grant", "client_credentials", "--scope", "compute.read")
    assert added.returncode == 0, added.stderr
    client_id = json.loads(added.stdout)["client_id"]
    assert client_id in console(tmp_path, "client", "list").stdout


def test_console_script_bad_setting_is_one_line(tmp_path):
    """docs/configuration.md: a bad setting is one line naming it, for the CLI too."""
    done = console(tmp_path, "client", "list", KEY_TYPE="HS256")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "KEY_TYPE" in lines[0], done.stdout + done.stderr


def test_console_script_help(tmp_path):
    done = console(tmp_path, "--help")
    assert done.returncode == 0
    for group in ("client", "keys", "settings", "db"):
        assert group in done.stdout


@pytest.mark.parametrize("args", [("db", "upgrade"), ("client", "list"), ("keys", "rotate"),
                                  ("revoke", "--user", "alice")])
def test_console_script_database_down_is_one_line(tmp_path, args):
    """docs/configuration.md, "Command line": a command whose PostgreSQL is down (nothing listens)
    prints the driver's reason in one line and exits 3, never a traceback."""
    from .support.processes import free_port

    done = console(tmp_path, *args, DATABASE_URL=f"postgresql+psycopg://issuer@127.0.0.1:{free_port()}/issuer")
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 3, done.stdout + done.stderr
    assert len(lines) == 1 and lines[0].startswith("scitoken-issuer: database unavailable: "), lines
    assert "refused" in lines[0]


def test_console_script_redis_down_is_one_line(tmp_path):
    """docs/configuration.md, "Command line": Redis down is one line and exit 3 (``cache show``
    reads the precompute's record from Redis)."""
    from .support.processes import free_port

    done = console(tmp_path, "cache", "show", "alice", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 3, done.stdout + done.stderr
    assert lines[-1].startswith("scitoken-issuer: Redis unavailable: ") and "Traceback" not in done.stderr, lines


def test_keys_list_on_a_fresh_database_says_so(cli):
    """docs/tokens.md: before the first key, ``keys list`` says there is none and how one is made
    (it printed nothing)."""
    done = cli("keys", "list")
    assert done.exit_code == 0 and done.output.startswith("no signing keys yet"), done.output
