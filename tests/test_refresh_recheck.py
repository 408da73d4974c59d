"""The upstream IdP re-check of a refresh (docs/flows.md, flow 3; docs/tokens.md, "Cost of a
refresh") against a real oidc-provider, on SQLite and PostgreSQL: the re-check runs in a short
transaction of its own, so what the IdP said is kept whatever the refresh then decides (the IdP
rotates its refresh token on every use and forgets the old one), and a refresh refused after
it leaves the presented token unclaimed and usable (RFC 6749 §6)."""

from __future__ import annotations

import threading
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from sqlalchemy import select

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.models import RefreshFamily, RefreshToken, UpstreamIdentity
from tests.conftest import make_app
from tests.support.upstream_idp import IdP, idp_login
from tests.support.user_flows import REDIRECT_URI, refresh

IDP_CLIENT_ID = "scitoken-issuer"
IDP_CLIENT_SECRET = "recheck-client-secret-0123456789abcdef"
CALLBACK = "http://127.0.0.1:9/auth/callback"  # never contacted: idp_login stops before it
ACCOUNTS = [{"login": "carol", "password": "carol-pw"}, {"login": "dave", "password": "dave-pw"},
            {"login": "erin", "password": "erin-pw"}]
#: a user the site has no POSIX account for: the scope decision refuses storage scopes for them
NO_ACCOUNT = "no-such-user-7"
SCOPE = "openid offline_access storage.read:/data"


@pytest.fixture(scope="module")
def idp(oidc_idp) -> IdP:
    return oidc_idp(clients=[{"client_id": IDP_CLIENT_ID, "client_secret": IDP_CLIENT_SECRET,
                              "redirect_uris": [CALLBACK]}], accounts=ACCOUNTS)


@pytest.fixture(params=["sqlite", "postgresql"])
def issuer(request, tmp_path, idp):
    """The issuer with the IdP configured and the user re-checked on every refresh: (app, client id)."""
    overrides = {"IDP_ADDRESS": idp.issuer, "IDP_CLIENT_ID": IDP_CLIENT_ID, "IDP_CLIENT_SECRET": IDP_CLIENT_SECRET,
                 "IDP_RECHECK_INTERVAL": 0}
    if request.param == "postgresql":
        overrides["DATABASE_URL"] = request.getfixturevalue("pg_url")
    app = make_app(tmp_path, **overrides)
    with app.app_context():
        client_id = runtime().clients.register(
            {"token_endpoint_auth_method": "none", "scope": SCOPE, "redirect_uris": [REDIRECT_URI],
             "grant_types": ["authorization_code", "refresh_token"]}, admin=True, source="admin").client.client_id
        db.session.commit()
    yield request.param, app, client_id
    with app.app_context():
        db.engine.dispose()


def family_of(app, client_id: str, login: str, password: str, subject: str = NO_ACCOUNT) -> tuple[int, str]:
    """Log ``login`` in at the IdP (the issuer keeps the IdP's refresh token, as at a real login)
    and start a refresh family for it: (identity id, the family's first refresh token)."""
    with app.app_context():
        rt = runtime()
        url, login_state = rt.idp.begin_login(CALLBACK)
        back = idp_login(requests.Session(), url, login, password)
        assert back.is_redirect and back.headers["Location"].startswith(CALLBACK), back.text[:500]
        upstream = rt.idp.finish_login(dict(parse_qsl(urlsplit(back.headers["Location"]).query)), login_state)
        identity = rt.identities.record_login(rt.idp.metadata()["issuer"], upstream)
        token = rt.refresh.issue(rt.refresh.new_family(client_id, subject, SCOPE, identity.id))
        db.session.commit()
        return identity.id, token


def idp_token(app, identity_id: int) -> str:
    """The IdP refresh token the issuer holds for the identity (decrypted), as committed."""
    with app.app_context():
        stored = db.session.scalar(select(UpstreamIdentity.refresh_token).where(UpstreamIdentity.id == identity_id))
        return runtime().identities.box.decrypt(stored).decode()


def presented_row(app, token: str) -> RefreshToken:
    with app.app_context():
        row = db.session.scalar(select(RefreshToken).where(RefreshToken.token_hash == runtime().refresh.box.hash(token)))
        db.session.expunge(row)
        return row


def test_refused_refresh_keeps_the_idp_token_and_the_presented_token(issuer):
    """RFC 6749 §6: a refresh the scope decision refuses after the IdP re-check leaves the
    presented token unclaimed and usable; the IdP refresh token the re-check received is kept,
    so the next refresh re-checks with it (had it been rolled back with the refusal, the IdP,
    which already rotated it away, would answer ``invalid_grant`` and end the family)."""
    _dialect, app, client_id = issuer
    identity_id, token = family_of(app, client_id, "carol", "carol-pw")
    before = idp_token(app, identity_id)
    client = app.test_client()

    refused = refresh(client, client_id, token)
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_scope", refused.get_json()
    assert "no POSIX account" in refused.get_json()["error_description"]
    assert presented_row(app, token).rotated_at is None
    kept = idp_token(app, identity_id)
    assert kept != before  # the IdP rotated its refresh token and the issuer kept the new one

    narrower = refresh(client, client_id, token, scope="openid offline_access")
    assert narrower.status_code == 200, narrower.get_json()
    assert presented_row(app, token).rotated_at is not None
    assert idp_token(app, identity_id) != kept  # re-checked again, with the kept token


def test_user_disabled_at_the_idp_ends_the_family(issuer, idp):
    """docs/flows.md, flow 3: the IdP refuses the user's refresh token: the refresh is
    ``invalid_grant``, and the family's revocation and the identity's disabling are committed
    although the answer is an error."""
    _dialect, app, client_id = issuer
    identity_id, token = family_of(app, client_id, "dave", "dave-pw")
    client = app.test_client()
    idp.disable("dave")
    try:
        gone = refresh(client, client_id, token, scope="openid offline_access")
    finally:
        idp.enable("dave")
    assert gone.status_code == 400 and gone.get_json()["error"] == "invalid_grant", gone.get_json()
    assert "disabled" in gone.get_json()["error_description"]
    with app.app_context():
        assert db.session.get(UpstreamIdentity, identity_id).disabled_at is not None
        family_id = presented_row(app, token).family_id
        assert db.session.get(RefreshFamily, family_id).revoked_at is not None
    again = refresh(client, client_id, token, scope="openid offline_access")
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize("issuer", ["postgresql"], indirect=True)  # SQLite takes no row lock
def test_concurrent_refreshes_of_one_user_take_turns_at_the_idp(issuer):
    """Two families of one user refreshed at the same moment on PostgreSQL: the re-check locks
    the identity row for the IdP's answer, so the second re-check uses the IdP refresh token the
    first one received instead of spending the same one twice (the IdP would refuse the second
    use and end that family). SQLite takes no row lock (docs/tokens.md, "Cost of a refresh")."""
    _dialect, app, client_id = issuer
    identity_id, first = family_of(app, client_id, "erin", "erin-pw")
    with app.app_context():
        rt = runtime()
        second = rt.refresh.issue(rt.refresh.new_family(client_id, NO_ACCOUNT, SCOPE, identity_id))
        db.session.commit()
    start = threading.Barrier(2)
    answers: dict[str, object] = {}

    def one(token: str) -> None:
        start.wait()
        try:
            answers[token] = refresh(app.test_client(), client_id, token, scope="openid offline_access")
        except BaseException as exc:  # reported below, in the test thread
            answers[token] = exc

    threads = [threading.Thread(target=one, args=(token,)) for token in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for token, answer in answers.items():
        assert not isinstance(answer, BaseException), answer
        assert answer.status_code == 200, answer.get_json()
    assert len(answers) == 2
