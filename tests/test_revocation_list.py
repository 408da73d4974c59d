"""The revocation list (docs/revocation.md) behind RFC 7662 introspection and RFC 7009 revocation:
access tokens are not stored, yet revoking a token, a refresh family, a client or a user makes
every token it covers inactive, and nothing else."""

from __future__ import annotations

import time

import pytest
from joserfc import jwt

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.models import AuthorizationCode

from .conftest import basic_auth, make_app
from .support.processes import wait_until

USER_SCOPE = "openid offline_access"


def cc_token(client, registered, secret) -> str:
    response = client.post("/auth/token", data={"grant_type": "client_credentials"},
                           headers=basic_auth(registered.client_id, secret))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


def login(client, registered, secret, subject: str) -> dict:
    """A user's first tokens, as a fresh authorization gives them: a refresh family, then a refresh."""
    rt = runtime()
    family = rt.refresh.new_family(registered.client_id, subject, USER_SCOPE, None)
    first = rt.refresh.issue(family)
    db.session.commit()
    response = client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": first},
                           headers=basic_auth(registered.client_id, secret))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def active(client, registered, secret, token: str) -> bool:
    response = client.post("/auth/introspect", data={"token": token}, headers=basic_auth(registered.client_id, secret))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["active"]


@pytest.fixture
def user_client(make_client):
    return make_client(grant_types=["refresh_token"], scope=USER_SCOPE)


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=list(args))


def test_issuing_stores_nothing(client, make_client):
    """docs/revocation.md: an access token is a self-contained JWT; issuing one adds no row."""
    registered, secret = make_client()
    tables = [table.name for table in db.metadata.sorted_tables]

    def rows() -> dict:
        return {name: db.session.execute(db.text(f"select count(*) from {name}")).scalar() for name in tables}

    cc_token(client, registered, secret)  # the first token creates the first signing key
    before = rows()
    for _ in range(3):
        cc_token(client, registered, secret)
    assert rows() == before


def test_family_revocation_reaches_its_access_tokens_only(client, user_client):
    """RFC 7009 §2.1: revoking a refresh token revokes the whole authorization (its family) with
    every access token it gave; another family of the same user and client stays active."""
    registered, secret = user_client
    mine, other = login(client, registered, secret, "alice"), login(client, registered, secret, "alice")
    assert runtime().tokens.verify(mine["access_token"])["sid"] != runtime().tokens.verify(other["access_token"])["sid"]
    assert active(client, registered, secret, mine["access_token"])
    response = client.post("/auth/revoke", data={"token": mine["refresh_token"]},
                           headers=basic_auth(registered.client_id, secret))
    assert response.status_code == 200
    assert not active(client, registered, secret, mine["access_token"])
    assert not active(client, registered, secret, mine["refresh_token"])
    assert active(client, registered, secret, other["access_token"])


def test_user_revocation_ends_every_token_of_the_user(client, cli, user_client):
    """docs/revocation.md: ``tokens revoke --user`` makes every token of the user issued until then
    inactive, ends the user's refresh families and unused codes; other users keep theirs, and
    the user may sign in again."""
    registered, secret = user_client
    alice, bob = login(client, registered, secret, "alice"), login(client, registered, secret, "bob")
    code = AuthorizationCode(code_hash="h" * 64, client_id=registered.client_id, redirect_uri="https://x/cb",
                             scope=USER_SCOPE, subject="alice", auth_time=int(time.time()),
                             expires_at=int(time.time()) + 60, claims={})
    db.session.add(code)
    db.session.commit()
    result = cli("tokens", "revoke", "--user", "alice")
    assert result.exit_code == 0, result.output
    assert "1 refresh families and 1 pending codes" in result.output
    assert not active(client, registered, secret, alice["access_token"])
    assert not active(client, registered, secret, alice["refresh_token"])
    assert db.session.get(AuthorizationCode, "h" * 64).used_at is not None
    assert active(client, registered, secret, bob["access_token"])
    cut_off = runtime().tokens.verify(alice["access_token"])["iat"]
    wait_until(lambda: time.time() >= cut_off + 2, 5, "the next second")  # same-second tokens count as revoked
    again = login(client, registered, secret, "alice")
    assert active(client, registered, secret, again["access_token"])


def test_client_revocation_ends_the_client_tokens(client, cli, make_client):
    """docs/revocation.md: ``tokens revoke --client`` makes every token the client holds inactive;
    another client's stay active."""
    registered, secret = make_client()
    other, other_secret = make_client()
    token, kept = cc_token(client, registered, secret), cc_token(client, other, other_secret)
    result = cli("tokens", "revoke", "--client", registered.client_id)
    assert result.exit_code == 0, result.output
    assert not active(client, registered, secret, token)
    assert active(client, other, other_secret, kept)


def test_one_token_revoked_by_jti_through_the_top_level_command(client, cli, make_client):
    """docs/revocation.md: ``revoke --jti`` (the operator's short form of ``tokens revoke``) ends
    exactly one access token, named by the jti of its audit line; the client's others stay active."""
    registered, secret = make_client()
    token, kept = cc_token(client, registered, secret), cc_token(client, registered, secret)
    jti = runtime().tokens.verify(token)["jti"]
    result = cli("revoke", "--jti", jti)
    assert result.exit_code == 0, result.output
    assert not active(client, registered, secret, token)
    assert active(client, registered, secret, kept)


@pytest.mark.parametrize("args", [(), ("--jti", "x", "--user", "alice"), ("--jti", " ")])
def test_revoke_needs_exactly_one_target(cli, args):
    """The command refuses an ambiguous or empty target with a usage error (exit 2), revoking nothing."""
    result = cli("revoke", *args)
    assert result.exit_code == 2 and "Error" in result.output


def test_deleted_client_id_registered_again_inherits_no_token(client, cli, make_client):
    """RFC 7592 §2.3 / ``client delete``: a deleted client's tokens stay inactive, even for a new
    client an administrator registers under the same client_id."""
    registered, secret = make_client()
    token = cc_token(client, registered, secret)
    assert cli("client", "delete", "--", registered.client_id).exit_code == 0
    again = runtime().clients.register({"grant_types": ["client_credentials"], "scope": "compute.read"}, admin=True,
                                       source="admin", client_id=registered.client_id)
    db.session.commit()
    assert not active(client, again.client, again.client_secret, token)


def test_id_token_is_not_an_access_token(client, make_client):
    """RFC 7662 §2.2 / OpenID Connect Core §2: a JWT this issuer signed that is not an access
    token (an ID token: no client_id, no scope) is not active."""
    registered, secret = make_client()
    key = runtime().keys.signing_key()
    now = int(time.time())
    id_token = jwt.encode({"alg": key.alg, "kid": key.kid, "typ": "JWT"},
                          {"iss": "http://issuer.test", "sub": registered.client_id, "aud": [registered.client_id],
                           "iat": now, "exp": now + 600, "jti": "id-token-1", "auth_time": now}, key.private)
    assert not active(client, registered, secret, id_token)


def test_without_redis_other_processes_see_a_revocation_within_the_bound(tmp_path, make_client, client):
    """docs/revocation.md: with no Redis, a revocation committed by another process (here another
    app on the same database) is seen within SHARED_STATE_MAX_AGE seconds."""
    registered, secret = make_client()
    token = cc_token(client, registered, secret)
    assert active(client, registered, secret, token)  # this process now holds a fresh copy
    database = client.application.config["SQLALCHEMY_DATABASE_URI"]
    other = make_app(tmp_path / "other", DATABASE_URL=database)
    with other.app_context():
        claims = runtime().tokens.verify(token)
        runtime().revocations.revoke_token(claims["jti"], claims["exp"])
        db.session.commit()
        db.engine.dispose()
    bound = runtime().version.max_age
    wait_until(lambda: not active(client, registered, secret, token), bound + 1, "the revocation")
