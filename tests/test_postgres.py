"""The issuer core against a real PostgreSQL (the production database; issue 2 "PostgreSQL as
well as SQLite"): migrations, RFC 7591 registration, RFC 6749 §4.4 client credentials, RFC 7662
introspection, RFC 7009 revocation and the first-key race between processes."""

from __future__ import annotations

import threading

import jwt as pyjwt
import pytest
import sqlalchemy as sa

from scitoken_issuer.extensions import db, runtime

from .conftest import ADMIN_TOKEN, basic_auth, make_app


@pytest.fixture
def pg_app(tmp_path, pg_url):
    app = make_app(tmp_path, DATABASE_URL=pg_url)  # make_app runs flask_migrate.upgrade
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def test_migrations_apply(pg_app):
    """Schema through Alembic migrations (issue 2 §3): every model table exists, at head."""
    inspector = sa.inspect(db.engine)
    tables = set(inspector.get_table_names())
    assert {table.name for table in db.metadata.sorted_tables} <= tables
    assert "alembic_version" in tables
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("select version_num from alembic_version")).scalar()


def test_migrations_are_idempotent(pg_app):
    """Running ``db upgrade`` again on a current database is a no-op."""
    from flask_migrate import upgrade

    upgrade(directory=pg_app.extensions["migrate"].directory)


def test_register_issue_introspect_revoke(pg_app):
    """RFC 7591 §3 registration (admin), RFC 6749 §4.4 token, RFC 7662 active, RFC 7009 revoke → inactive."""
    client = pg_app.test_client()
    registered = client.post("/auth/client/registration", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                             json={"grant_types": ["client_credentials"], "scope": "storage.read:/data",
                                   "token_profile": "scitokens"})
    assert registered.status_code == 201, registered.get_json()
    meta = registered.get_json()
    auth = basic_auth(meta["client_id"], meta["client_secret"])

    read = client.get(meta["registration_client_uri"].replace("http://issuer.test", ""),
                      headers={"Authorization": f"Bearer {meta['registration_access_token']}"})
    assert read.status_code == 200 and read.get_json()["client_id"] == meta["client_id"]

    response = client.post("/auth/token", data={"grant_type": "client_credentials"}, headers=auth)
    assert response.status_code == 200, response.get_json()
    token = response.get_json()["access_token"]
    jwks = client.get("/auth/certs").get_json()
    key = pyjwt.PyJWKSet.from_dict(jwks)[pyjwt.get_unverified_header(token)["kid"]].key
    claims = pyjwt.decode(token, key, algorithms=["RS256"], audience="ANY")  # docs/tokens.md "Audience"
    assert claims["scope"] == "read:/data" and claims["ver"] == "scitoken:2.0"

    assert client.post("/auth/token", data={"grant_type": "client_credentials", "scope": "storage.read:/etc"},
                       headers=auth).get_json()["error"] == "invalid_scope"

    assert client.post("/auth/introspect", data={"token": token}, headers=auth).get_json()["active"] is True
    assert client.post("/auth/revoke", data={"token": token}, headers=auth).status_code == 200
    assert client.post("/auth/introspect", data={"token": token}, headers=auth).get_json() == {"active": False}


def test_unknown_client_is_invalid_client(pg_app):
    """RFC 6749 §5.2 on PostgreSQL too: an unknown or oversized client id is 401, never 500."""
    client = pg_app.test_client()
    for client_id in ("nobody", "x" * 500):
        response = client.post("/auth/token", data={"grant_type": "client_credentials"},
                               headers=basic_auth(client_id, "secret"))
        assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"


def test_first_key_race_yields_one_key(tmp_path, pg_url):
    """Issue 2 §4: several processes starting at once create exactly one first signing key."""
    apps = [make_app(tmp_path / str(i), DATABASE_URL=pg_url) for i in range(2)]
    barrier = threading.Barrier(len(apps))
    kids: list[str] = []
    errors: list[BaseException] = []

    def work(app):
        try:
            with app.app_context():
                barrier.wait(timeout=30)
                kids.append(runtime().keys.signing_key().kid)
                db.session.commit()
                db.session.remove()
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(kids) == 2 and len(set(kids)) == 1
    with apps[0].app_context():
        from scitoken_issuer.models import SigningKey

        assert db.session.execute(sa.select(sa.func.count()).select_from(SigningKey)).scalar() == 1
        jwks = apps[0].test_client().get("/auth/certs").get_json()
        assert [k["kid"] for k in jwks["keys"]] == kids[:1]
    for app in apps:
        with app.app_context():
            db.engine.dispose()


@pytest.mark.parametrize("where", ["basic", "body", "authorize", "device", "configuration"])
def test_client_id_with_a_nul_is_an_unknown_client(pg_app, where):
    """docs/errors.md on PostgreSQL, which cannot hold NUL in text and raises where SQLite finds
    nothing: a client id with a NUL character is an unknown client (RFC 6749 §5.2
    ``invalid_client``, or the authorization endpoint's page), never a 503 that says the database
    is down."""
    client, odd = pg_app.test_client(), "a\x00b"
    cc = {"grant_type": "client_credentials"}
    response = {
        "basic": lambda: client.post("/auth/token", data=cc, headers=basic_auth(odd, "secret")),
        "body": lambda: client.post("/auth/token", data={**cc, "client_id": odd, "client_secret": "s"}),
        "authorize": lambda: client.get("/auth/authorize", query_string={
            "response_type": "code", "client_id": odd, "redirect_uri": "https://app.example/cb"}),
        "device": lambda: client.post("/auth/device/code", data={"client_id": odd}),
        "configuration": lambda: client.get("/auth/client/registration/a%00b",
                                            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}),
    }[where]()
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data(as_text=True)[:300])


@pytest.mark.parametrize("nonce", ["n" * 256, "a\x00b"])
def test_nonce_the_code_cannot_hold_is_invalid_request(pg_app, nonce):
    """OIDC Core §3.1.2.1 / RFC 6749 §4.1.2.1 on PostgreSQL: a nonce longer than a code can carry
    (255 characters) or with a NUL character is ``invalid_request`` sent back to the client; the
    user approved and got a 503 (the longer one) or the page did (the NUL)."""
    from urllib.parse import urlencode

    from .support.dev_login import authorize_url, pkce, redirect_params, sign_in

    redirect_uri = "https://app.example.org/cb"
    registration = runtime().clients.register(
        {"client_name": "portal", "scope": "openid", "redirect_uris": [redirect_uri],
         "token_endpoint_auth_method": "none"}, admin=True, source="admin")
    db.session.commit()
    client = pg_app.test_client()
    sign_in(client)
    _verifier, challenge = pkce()
    url = authorize_url(client_id=registration.client.client_id, redirect_uri=redirect_uri, scope="openid",
                        code_challenge=challenge, code_challenge_method="S256", nonce=nonce)
    response = client.get(url)
    params = redirect_params(response, redirect_uri)
    assert params["error"] == "invalid_request" and "nonce" in params["error_description"], params
    longest = url.replace(urlencode({"nonce": nonce}), urlencode({"nonce": "n" * 255}))
    assert longest != url and client.get(longest).status_code == 200  # the consent page
