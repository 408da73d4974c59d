"""RFC 8693 token exchange at ``/auth/token`` (docs/token-exchange.md): attenuation only (scopes,
paths, verbs, audience, lifetime), delegation (``act``), the subject token fully verified, errors
per RFC 8693 §2.2.2, and the administrator's per-client switch.

Needs root (the POSIX tree is built with chown), like tests/test_token_scopes_http.py.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from urllib.parse import urlencode

import jwt as pyjwt
import pytest
import requests
from joserfc import jwt as jose_jwt
from sqlalchemy import update

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.models import RefreshFamily
from scitoken_issuer.services.tokens import TokenRequest
from tests.conftest import ADMIN_TOKEN, basic_auth, make_app
from tests.support.processes import wait_until
from tests.support.user_flows import REDIRECT_URI, code_tokens, sign_in
from tests.test_policy import ANA, build_tree, write_users
from tests.test_verifiers import AUDIENCE, _cpp_tool, https_issuer, run_cpp, trust  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds a tree with chown: needs root")

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
REFRESH = "urn:ietf:params:oauth:token-type:refresh_token"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
PORTAL_POLICY = "openid offline_access wlcg.groups storage.read:/data storage.create:/data storage.modify:/data"
USER_SCOPE = "openid offline_access storage.read:/data/ana/out storage.create:/data/ana/out"
MANAGER_POLICY = "openid wlcg.groups storage.read:/data storage.create:/data storage.modify:/data compute.read"


@pytest.fixture
def app(tmp_path, request):
    """The issuer over a real tree (alice in group ana may write /data/ana/out), development users."""
    root = Path(build_tree(tmp_path))
    run1 = root / "data" / "ana" / "out" / "run1"
    run1.mkdir()
    os.chown(run1, 0, ANA)
    run1.chmod(0o775)
    overrides = getattr(request, "param", {})
    app = make_app(tmp_path, POSIX_PATH=str(root), DEV_USERS_FILE=write_users(tmp_path / "users.json"), **overrides)
    app.posix_root = root
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def register(app, **metadata) -> tuple[str, str | None]:
    """An administrator's client: (client_id, secret)."""
    with app.app_context():
        registration = runtime().clients.register(metadata, admin=True, source="admin")
        db.session.commit()
        return registration.client.client_id, registration.client_secret


@pytest.fixture
def portal(app):
    """A confidential user-facing client (code flow, refresh) whose tokens are the subjects."""
    return register(app, client_name="portal", grant_types=["authorization_code", "refresh_token"],
                    redirect_uris=[REDIRECT_URI], scope=PORTAL_POLICY)


@pytest.fixture
def manager(app):
    """A workflow manager an administrator allowed to exchange tokens (WLCG profile)."""
    return register(app, client_name="workflow manager", grant_types=[EXCHANGE], scope=MANAGER_POLICY)


@pytest.fixture
def user_tokens(client, portal):
    """alice's tokens from the portal (code flow): access, refresh and ID token."""
    sign_in(client, "alice", "pw")
    return code_tokens(client, portal[0], USER_SCOPE, auth=basic_auth(*portal))


def exchange(client, actor, subject_token, token_type=ACCESS, **form):
    data = {"grant_type": EXCHANGE, "subject_token": subject_token, "subject_token_type": token_type, **form}
    return client.post("/auth/token", data={k: v for k, v in data.items() if v is not None},
                       headers=basic_auth(*actor))


def claims_of(token: str) -> dict:
    return pyjwt.decode(token, options={"verify_signature": False})


def error_of(response, status: int = 400) -> tuple[str, str]:
    body = response.get_json()
    assert response.status_code == status, body
    assert response.headers["Cache-Control"] == "no-store"  # RFC 6749 §5.2
    assert body["error_description"]
    return body["error"], body["error_description"]


def introspect(client, actor, token: str) -> dict:
    response = client.post("/auth/introspect", data={"token": token}, headers=basic_auth(*actor))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# -- attenuation: scopes and paths (RFC 8693 §2.1 "scope"; docs/token-exchange.md) ----------------

def test_narrowing_by_path(client, manager, user_tokens):
    """RFC 8693 §2.1/§2.2.1: a narrower path is a subset; the answer is an access token with
    ``issued_token_type``, for the same ``sub``, issued to the exchanging client."""
    response = exchange(client, manager, user_tokens["access_token"], scope="storage.read:/data/ana/out/run1")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["issued_token_type"] == ACCESS and body["token_type"] == "Bearer"
    assert body["scope"] == "storage.read:/data/ana/out/run1" and "refresh_token" not in body
    claims = claims_of(body["access_token"])
    subject = claims_of(user_tokens["access_token"])
    assert claims["sub"] == subject["sub"] == "alice"
    assert claims["client_id"] == manager[0] and claims["act"] == {"sub": manager[0]}
    assert claims["scope"] == body["scope"] and claims["exp"] <= subject["exp"]


def test_narrowing_by_scope(client, manager, user_tokens):
    """RFC 8693 §2.1: a subset of the subject's scopes; without ``scope`` the subject's own
    (without ``offline_access``), re-decided for the exchanging client."""
    one = exchange(client, manager, user_tokens["access_token"], scope="storage.read:/data/ana/out")
    assert one.status_code == 200 and one.get_json()["scope"] == "storage.read:/data/ana/out"
    whole = exchange(client, manager, user_tokens["access_token"]).get_json()
    assert whole["scope"].split() == ["openid", "storage.read:/data/ana/out", "storage.create:/data/ana/out"]


@pytest.mark.parametrize("scope", [
    "storage.read:/data/ana",  # a wider path
    "storage.read:/data/ana/outside",  # a sibling sharing the prefix
    "storage.modify:/data/ana/out",  # a stronger verb (create held, modify asked)
    "storage.stage:/data/ana/out",  # another verb
    "write:/data/ana/out",  # SciTokens write = create and modify
    "wlcg.groups",  # a scope the subject does not hold
    "compute.read",
])
def test_widening_is_refused(client, manager, user_tokens, scope):
    """docs/token-exchange.md "Attenuation": any scope giving more than the subject token is
    ``invalid_scope`` naming it (RFC 6749 §5.2), even when the exchanging client's policy has it."""
    error, description = error_of(exchange(client, manager, user_tokens["access_token"], scope=scope))
    assert error == "invalid_scope" and scope in description


def test_offline_access_and_refresh_tokens_are_refused(client, app, portal, user_tokens):
    """docs/token-exchange.md "No lifetime extension": a same-client exchange asking
    ``offline_access`` or ``requested_token_type`` refresh_token is refused; no refresh token is
    ever issued by an exchange (the hole INDIGO IAM had to close)."""
    with app.app_context():  # the portal itself may exchange: a same-client exchange
        client_row = runtime().clients.get(portal[0])
        runtime().clients.set_grant(client_row, EXCHANGE, True)
        db.session.commit()
    subject = user_tokens["access_token"]
    error, description = error_of(exchange(client, portal, subject, scope="offline_access storage.read:/data/ana/out"))
    assert error == "invalid_scope" and "offline_access" in description
    error, description = error_of(exchange(client, portal, subject, requested_token_type=REFRESH))
    assert error == "invalid_request" and "refresh_token" in description
    body = exchange(client, portal, subject).get_json()
    assert "refresh_token" not in body and "offline_access" not in body["scope"].split()
    refreshed = exchange(client, portal, user_tokens["refresh_token"], REFRESH).get_json()
    assert "refresh_token" not in refreshed, refreshed


def test_verbs_compare_by_permission_across_profiles(client, app, user_tokens):
    """docs/scopes.md verb table: a SciTokens ``write`` is within a WLCG ``storage.modify``; a WLCG
    ``storage.create`` is not within a SciTokens ``create`` (scitokens-cpp reads it as write)."""
    sci_manager = register(app, grant_types=[EXCHANGE], scope=MANAGER_POLICY, token_profile="scitokens")
    with app.app_context():
        subject = runtime().tokens.mint(TokenRequest(
            subject="alice", client_id="someone", scopes=["storage.modify:/data/ana/out"], grant_type="test")).token
        sci_subject = runtime().tokens.mint(TokenRequest(
            subject="alice", client_id="someone", scopes=["create:/data/ana/out"], grant_type="test",
            profile="scitokens")).token
    ok = exchange(client, sci_manager, subject, scope="write:/data/ana/out/run1")
    assert ok.status_code == 200, ok.get_json()
    assert claims_of(ok.get_json()["access_token"])["scope"] == "write:/data/ana/out/run1"
    assert claims_of(ok.get_json()["access_token"])["ver"] == "scitoken:2.0"  # the exchanging client's profile
    wlcg_manager = register(app, grant_types=[EXCHANGE], scope=MANAGER_POLICY)
    error, _ = error_of(exchange(client, wlcg_manager, sci_subject, scope="storage.create:/data/ana/out"))
    assert error == "invalid_scope"
    assert exchange(client, sci_manager, sci_subject, scope="create:/data/ana/out/run1").status_code == 200


def test_posix_policy_is_decided_again(client, app, manager, user_tokens):
    """docs/authorization.md: the exchange goes through ``grant_scopes`` like every grant, so a
    scope the filesystem no longer allows the user is refused although the subject token has it."""
    before = exchange(client, manager, user_tokens["access_token"], scope="storage.create:/data/ana/out")
    assert before.status_code == 200
    (app.posix_root / "data" / "ana" / "out").chmod(0o755)  # the group may no longer write
    wait_until(lambda: exchange(client, manager, user_tokens["access_token"],
                                scope="storage.create:/data/ana/out").status_code == 400,
               timeout=10, what="the POSIX change to be seen")
    error, description = error_of(exchange(client, manager, user_tokens["access_token"],
                                           scope="storage.create:/data/ana/out"))
    assert error == "invalid_scope" and "storage.create:/data/ana/out refused" in description


def test_exchanging_clients_policy_bounds_the_token(client, app, user_tokens):
    """docs/authorization.md "Client policy": the exchanging client's registered scope bounds
    the new token, whatever the subject token holds."""
    reader = register(app, grant_types=[EXCHANGE], scope="storage.read:/data")
    assert exchange(client, reader, user_tokens["access_token"], scope="storage.read:/data/ana/out").status_code == 200
    error, description = error_of(exchange(client, reader, user_tokens["access_token"],
                                           scope="storage.create:/data/ana/out"))
    assert error == "invalid_scope" and "not allowed for client" in description


def test_client_credentials_subject(client, app, manager):
    """docs/token-exchange.md: a client's own token (no user) is bounded by the subset rule and
    the exchanging client's policy; no POSIX user is involved."""
    service = register(app, grant_types=["client_credentials"], scope="storage.read:/data compute.read")
    subject = client.post("/auth/token", data={"grant_type": "client_credentials"},
                          headers=basic_auth(*service)).get_json()["access_token"]
    body = exchange(client, manager, subject, scope="storage.read:/data/run1 compute.read").get_json()
    assert body["scope"] == "storage.read:/data/run1 compute.read", body
    assert claims_of(body["access_token"])["sub"] == service[0]
    error, _ = error_of(exchange(client, manager, subject, scope="storage.create:/data/run1"))
    assert error == "invalid_scope"


# -- the subject token (RFC 8693 §2.1 "subject_token", §2.2.2) ------------------------------------

def test_revoked_access_token_is_refused(client, portal, manager, user_tokens):
    """RFC 7009 then RFC 8693 §2.2.2: a subject token revoked at /auth/revoke is ``invalid_request``."""
    done = client.post("/auth/revoke", data={"token": user_tokens["access_token"]}, headers=basic_auth(*portal))
    assert done.status_code == 200
    error, description = error_of(exchange(client, manager, user_tokens["access_token"]))
    assert error == "invalid_request" and "revoked" in description


def test_revoking_the_family_deactivates_every_exchanged_token(client, portal, manager, user_tokens):
    """docs/revocation.md: exchanged tokens carry the subject's family ``sid`` (from an access
    token of the family, from the refresh token, and from an exchanged token again), so revoking
    the refresh family makes them all inactive at introspection (RFC 7662) and refuses the subjects."""
    from_access = exchange(client, manager, user_tokens["access_token"]).get_json()["access_token"]
    from_refresh = exchange(client, manager, user_tokens["refresh_token"], REFRESH).get_json()["access_token"]
    again = register_second_manager(client, manager, from_access)
    sid = claims_of(user_tokens["access_token"])["sid"]
    assert claims_of(from_access)["sid"] == claims_of(from_refresh)["sid"] == claims_of(again[1])["sid"] == sid
    for token in (from_access, from_refresh):
        assert introspect(client, manager, token)["active"] is True
    done = client.post("/auth/revoke", data={"token": user_tokens["refresh_token"],
                                             "token_type_hint": "refresh_token"}, headers=basic_auth(*portal))
    assert done.status_code == 200
    for token in (from_access, from_refresh):
        assert introspect(client, manager, token) == {"active": False}
    assert introspect(client, again[0], again[1]) == {"active": False}
    for token, kind in ((user_tokens["access_token"], ACCESS), (user_tokens["refresh_token"], REFRESH)):
        error, _ = error_of(exchange(client, manager, token, kind))
        assert error == "invalid_request"


def register_second_manager(client, manager, token: str) -> tuple[tuple[str, str], str]:
    """A second manager exchanges ``token`` again: ((its id, secret), the new token)."""
    app = client.application
    second = register(app, grant_types=[EXCHANGE], scope=MANAGER_POLICY)
    body = exchange(client, second, token, scope="storage.read:/data/ana/out").get_json()
    return second, body["access_token"]


def test_rotated_refresh_token_is_refused(client, portal, manager, user_tokens):
    """docs/tokens.md "Refresh families": only the family's live refresh token is a subject."""
    refreshed = client.post("/auth/token", data={"grant_type": "refresh_token",
                                                 "refresh_token": user_tokens["refresh_token"]},
                            headers=basic_auth(*portal))
    assert refreshed.status_code == 200, refreshed.get_json()
    error, description = error_of(exchange(client, manager, user_tokens["refresh_token"], REFRESH))
    assert error == "invalid_request" and "already used" in description
    live = refreshed.get_json()["refresh_token"]
    assert exchange(client, manager, live, REFRESH).status_code == 200


def test_expired_subject_is_refused(client, app, manager):
    """RFC 7519 §4.1.4: a subject token past its ``exp`` is ``invalid_request``."""
    with app.app_context():
        rt = runtime()
        claims = rt.tokens.claims_for(TokenRequest(subject="alice", client_id="x", scopes=["storage.read:/data"],
                                                   grant_type="test"), now=int(time.time()) - 7200)
        key = rt.keys.signing_key()
        expired = jose_jwt.encode({"alg": key.alg, "kid": key.kid, "typ": "JWT"}, claims, key.private)
    error, _ = error_of(exchange(client, manager, expired))
    assert error == "invalid_request"


def test_token_signed_by_another_key_is_refused(client, app, manager, tmp_path):
    """RFC 7515 §5.2: a token with this issuer's claims but another key (another issuer's
    ``SECRET_KEY``, same ``ISSUER_ADDRESS``) is not a subject token."""
    other = make_app(tmp_path / "other", SECRET_KEY="another-secret-key-0123456789abcdef-0123456789")
    with other.app_context():
        forged = runtime().tokens.mint(TokenRequest(subject="alice", client_id="x", scopes=["storage.read:/data"],
                                                    grant_type="test")).token
        db.engine.dispose()
    error, _ = error_of(exchange(client, manager, forged))
    assert error == "invalid_request"


def test_alg_none_is_refused(client, manager, user_tokens):
    """RFC 7519 §6 / RFC 8725 §3.1: an unsecured JWT (``alg: none``) copying a real token's claims
    is refused."""
    claims = claims_of(user_tokens["access_token"])

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    unsigned = f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."
    error, _ = error_of(exchange(client, manager, unsigned))
    assert error == "invalid_request"


def test_id_token_is_not_a_subject_token(client, manager, user_tokens):
    """RFC 8693 §2.1: the subject token must be an access or refresh token of this issuer; an ID
    token (signed by the same issuer) is refused, whatever type it is sent as."""
    for kind in (ACCESS, ID_TOKEN):
        error, _ = error_of(exchange(client, manager, user_tokens["id_token"], kind))
        assert error == "invalid_request"


@pytest.mark.parametrize("form, words", [
    ({"subject_token": None}, "subject_token is required"),
    ({"subject_token_type": None}, "subject_token_type is required"),
    ({"actor_token": "x", "actor_token_type": ACCESS}, "actor_token is not supported"),
    ({"requested_token_type": "urn:ietf:params:oauth:token-type:saml2"}, "requested_token_type"),
    ({"subject_token": "not-a-token"}, "not a valid access token"),
])
def test_malformed_requests(client, manager, user_tokens, form, words):
    """RFC 8693 §2.2.2: a request that is not valid is ``invalid_request`` with a description."""
    error, description = error_of(exchange(client, manager, **{"subject_token": user_tokens["access_token"], **form}))
    assert error == "invalid_request" and words in description


# -- audience (RFC 8693 §2.1 "audience"/"resource"; docs/tokens.md "Audience") ---------------------

def test_audience_narrows_an_any_audience_subject(client, manager, user_tokens):
    """docs/tokens.md "Audience": a subject for any audience may be narrowed to named services
    (``audience`` and RFC 8707 ``resource`` together); without one the profile's default stays."""
    body = exchange(client, manager, user_tokens["access_token"], audience="https://se1.example.org",
                    resource="https://se2.example.org/").get_json()
    assert claims_of(body["access_token"])["aud"] == ["https://se1.example.org", "https://se2.example.org/"]
    plain = exchange(client, manager, user_tokens["access_token"]).get_json()
    assert claims_of(plain["access_token"])["aud"] == "https://wlcg.cern.ch/jwt/v1/any"


def test_audience_and_resource_may_repeat(client, manager, user_tokens):
    """RFC 8693 §2.1: ``audience`` and ``resource`` may each be sent more than once (the token
    endpoint refuses every other repeated parameter, RFC 6749 §3.2)."""
    form = [("grant_type", EXCHANGE), ("subject_token", user_tokens["access_token"]), ("subject_token_type", ACCESS),
            ("audience", "https://se1.example.org"), ("audience", "https://se2.example.org"),
            ("resource", "https://se3.example.org/"), ("resource", "https://se4.example.org/")]
    response = client.post("/auth/token", data=urlencode(form), content_type="application/x-www-form-urlencoded",
                           headers=basic_auth(*manager))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert claims_of(response.get_json()["access_token"])["aud"] == [
        "https://se1.example.org", "https://se2.example.org", "https://se3.example.org/", "https://se4.example.org/"]
    twice = client.post("/auth/token", data=urlencode([*form, ("subject_token_type", ACCESS)]),
                        content_type="application/x-www-form-urlencoded", headers=basic_auth(*manager))
    error, description = error_of(twice)
    assert error == "invalid_request" and "subject_token_type" in description


def test_audience_cannot_leave_a_narrowed_subject(client, manager, user_tokens):
    """RFC 8693 §2.2.2: an audience outside the subject token's is ``invalid_target``; inside it
    (or unasked) the subject's audience is kept; a malformed ``resource`` is ``invalid_target``."""
    narrowed = exchange(client, manager, user_tokens["access_token"],
                        audience="https://se1.example.org https://se2.example.org").get_json()["access_token"]
    error, description = error_of(exchange(client, manager, narrowed, audience="https://elsewhere.example.org"))
    assert error == "invalid_target" and "elsewhere" in description
    kept = exchange(client, manager, narrowed).get_json()["access_token"]
    assert claims_of(kept)["aud"] == ["https://se1.example.org", "https://se2.example.org"]
    one = exchange(client, manager, narrowed, audience="https://se2.example.org").get_json()["access_token"]
    assert claims_of(one)["aud"] == "https://se2.example.org"
    error, _ = error_of(exchange(client, manager, narrowed, resource="not a uri"))
    assert error == "invalid_target"


@pytest.mark.parametrize("app", [{"AUDIENCE": "https://site.example.org"}], indirect=True)
def test_site_audience_is_the_only_target(client, manager, user_tokens):
    """docs/tokens.md "Audience": with ``AUDIENCE`` set only that may be asked (``invalid_target``)."""
    error, _ = error_of(exchange(client, manager, user_tokens["access_token"], audience="https://other.example.org"))
    assert error == "invalid_target"
    body = exchange(client, manager, user_tokens["access_token"], audience="https://site.example.org").get_json()
    assert claims_of(body["access_token"])["aud"] == "https://site.example.org"


# -- delegation and lifetime (RFC 8693 §4.1; docs/token-exchange.md) -------------------------------

def test_act_claim_nests_earlier_actors(client, manager, user_tokens):
    """RFC 8693 §4.1: ``act`` names the current actor; an earlier actor nests inside it; the
    ``sub`` stays the user's and introspection shows ``act``."""
    first = exchange(client, manager, user_tokens["access_token"]).get_json()["access_token"]
    second, token = register_second_manager(client, manager, first)
    claims = claims_of(token)
    assert claims["sub"] == "alice" and claims["client_id"] == second[0]
    assert claims["act"] == {"sub": second[0], "act": {"sub": manager[0]}}
    assert introspect(client, second, token)["act"] == claims["act"]


def test_lifetime_never_passes_the_subject(client, app, manager, user_tokens):
    """docs/token-exchange.md "No lifetime extension": the new token ends no later than the
    subject access token, or than the subject refresh token's family."""
    with app.app_context():
        short = runtime().tokens.mint(TokenRequest(subject="alice", client_id="x", grant_type="test",
                                                   scopes=["storage.read:/data/ana/out"], lifetime=120))
    body = exchange(client, manager, short.token).get_json()
    assert body["expires_in"] <= 120 and claims_of(body["access_token"])["exp"] <= short.claims["exp"]
    ends = int(time.time()) + 90
    with app.app_context():
        db.session.execute(update(RefreshFamily).values(expires_at=ends))
        db.session.commit()
    body = exchange(client, manager, user_tokens["refresh_token"], REFRESH).get_json()
    assert claims_of(body["access_token"])["exp"] <= ends


def test_lifetime_never_passes_the_subject_across_a_second_boundary(client, app, manager, monkeypatch):
    """docs/token-exchange.md "No lifetime extension": the rule holds when the clock ticks between
    the exchange's decision and the signature (the exchange's time is set one second earlier here;
    the new token outlived its subject by that second)."""
    import types

    from scitoken_issuer.services import exchange as exchange_module

    with app.app_context():
        short = runtime().tokens.mint(TokenRequest(subject="alice", client_id="x", grant_type="test",
                                                   scopes=["storage.read:/data/ana/out"], lifetime=120))
    monkeypatch.setattr(exchange_module, "time", types.SimpleNamespace(time=lambda: time.time() - 1))
    body = exchange(client, manager, short.token).get_json()
    assert claims_of(body["access_token"])["exp"] <= short.claims["exp"], body


# -- who may exchange (RFC 6749 §5.2; docs/registration.md) ----------------------------------------

def test_clients_not_allowed(client, app, portal, user_tokens):
    """RFC 6749 §5.2: a confidential client without the grant is ``unauthorized_client``; a public
    client cannot authenticate for it (``invalid_client``) and cannot be given it."""
    error, _ = error_of(exchange(client, portal, user_tokens["access_token"]))
    assert error == "unauthorized_client"
    public = register(app, grant_types=["authorization_code"], redirect_uris=[REDIRECT_URI],
                      token_endpoint_auth_method="none")
    response = client.post("/auth/token", data={"grant_type": EXCHANGE, "client_id": public[0],
                                                "subject_token": user_tokens["access_token"],
                                                "subject_token_type": ACCESS})
    assert error_of(response, 401)[0] == "invalid_client"
    with app.app_context():
        with pytest.raises(Exception, match="public client"):
            runtime().clients.set_grant(runtime().clients.get(public[0]), EXCHANGE, True)


def test_cli_allows_and_forbids_exchange(client, app, portal, user_tokens):
    """docs/token-exchange.md "Who may exchange": ``client add --grant …token-exchange`` and
    ``client update --allow-exchange/--forbid-exchange`` are the administrator's switch."""
    runner = app.test_cli_runner()
    added = runner.invoke(args=["client", "add", "--grant", "client_credentials", "--grant", EXCHANGE,
                                "--scope", MANAGER_POLICY])
    assert added.exit_code == 0, added.output
    info = json.loads(added.output)
    assert exchange(client, (info["client_id"], info["client_secret"]), user_tokens["access_token"]).status_code == 200
    forbid = runner.invoke(args=["client", "update", info["client_id"], "--forbid-exchange"])
    assert forbid.exit_code == 0, forbid.output
    assert error_of(exchange(client, (info["client_id"], info["client_secret"]),
                             user_tokens["access_token"]))[0] == "unauthorized_client"
    allow = runner.invoke(args=["client", "update", portal[0], "--allow-exchange"])
    assert allow.exit_code == 0 and EXCHANGE in json.loads(allow.output)["grant_types"]
    assert exchange(client, portal, user_tokens["access_token"]).status_code == 200


def test_discovery_and_audit(client, manager, user_tokens, caplog):
    """RFC 8414 §2: ``grant_types_supported`` lists the exchange grant; the audit line names the
    subject, the actor, the scopes and the ``jti``, never a token."""
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert EXCHANGE in meta["grant_types_supported"]
    with caplog.at_level("INFO", logger="scitoken_issuer.audit"):
        body = exchange(client, manager, user_tokens["access_token"], scope="storage.read:/data/ana/out").get_json()
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "scitoken_issuer.audit"]
    granted = [line for line in lines if line["event"] == "exchange"]
    assert granted and granted[0]["sub"] == "alice" and granted[0]["actor"] == {"sub": manager[0]}
    assert granted[0]["jti"] == claims_of(body["access_token"])["jti"]
    assert granted[0]["scope"] == "storage.read:/data/ana/out"
    text = caplog.text
    assert body["access_token"] not in text and user_tokens["access_token"] not in text


# -- independent verifiers (docs/tokens.md): scitokens-cpp and the Python Enforcer -----------------


def https_manager(issuer, profile: str) -> tuple[str, str]:
    """An exchange client registered over HTTPS with the administrator's token (RFC 7591)."""
    response = requests.post(f"{issuer.url}/auth/client/registration", timeout=30, verify=str(issuer.ca),
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                             json={"grant_types": [EXCHANGE], "token_profile": profile,
                                   "scope": "storage.read:/data storage.modify:/data/out"})
    assert response.status_code == 201, response.text
    return response.json()["client_id"], response.json()["client_secret"]


def https_exchange(issuer, actor, subject: str, **form) -> str:
    response = requests.post(f"{issuer.url}/auth/token", auth=actor, verify=str(issuer.ca), timeout=30, data={
        "grant_type": EXCHANGE, "subject_token": subject, "subject_token_type": ACCESS, **form})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def test_exchanged_token_passes_the_python_enforcer(https_issuer, trust):
    """RFC 8693 §2.2.1 and docs/tokens.md: a SciTokens-profile token exchanged from a broad token
    (with ``act``) is accepted by ``scitokens.Enforcer`` for exactly the narrowed paths."""
    import scitokens

    broad = https_issuer.token("wlcg")
    narrow = https_exchange(https_issuer, https_manager(https_issuer, "scitokens"), broad,
                            scope="storage.read:/data/run1 storage.modify:/data/out/job7", audience=AUDIENCE)
    token = scitokens.SciToken.deserialize(narrow, audience=AUDIENCE)
    assert token["act"]["sub"] and token["scope"] == "read:/data/run1 write:/data/out/job7"
    enforcer = scitokens.Enforcer(https_issuer.url, audience=AUDIENCE)
    assert enforcer.test(token, "read", "/data/run1/f"), enforcer.last_failure
    assert enforcer.test(token, "write", "/data/out/job7/f"), enforcer.last_failure
    assert not enforcer.test(token, "read", "/data/run2/f")
    assert not enforcer.test(token, "write", "/data/out/job8/f")


@pytest.mark.parametrize("profile", ["wlcg", "scitokens"])
def test_exchanged_token_passes_scitokens_cpp(https_issuer, trust, tmp_path, profile):
    """RFC 8693 §2.2.1 and docs/tokens.md: ``scitokens-test-access`` (scitokens-cpp, as XRootD
    uses it) accepts the exchanged token of either profile for the narrowed path only."""
    tool = _cpp_tool("scitokens-test-access")
    narrow = https_exchange(https_issuer, https_manager(https_issuer, profile), https_issuer.token("wlcg"),
                            scope="storage.read:/data/run1", audience=AUDIENCE)
    allowed = run_cpp([tool, narrow, https_issuer.url, AUDIENCE, "read", "/data/run1/x"], trust, tmp_path)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    refused = run_cpp([tool, narrow, https_issuer.url, AUDIENCE, "read", "/data/run2/x"], trust, tmp_path)
    assert refused.returncode != 0, refused.stdout + refused.stderr


@pytest.mark.parametrize("form", [
    {"subject_token": "é" * 50},
    {"subject_token": "a.b.c"},
    {"subject_token": "x" * 20000},
    {"subject_token_type": "urn:\"bad\\type"},
    {"scope": "storage.read:/data/ana/out/é"},
    {"scope": "storage.read:/data/../etc"},
    {"audience": "https://a.example/\x01"},
    {"audience": " ".join(f"https://s{i}.example" for i in range(6))},
    {"resource": "https://s.example/#frag"},
    {"resource": "é://x"},
])
def test_bad_input_is_answered_not_crashed(client, manager, user_tokens, form):
    """RFC 6749 §5.2: malformed exchange parameters get a 400 JSON error with a description."""
    response = exchange(client, manager, **{"subject_token": user_tokens["access_token"], **form})
    error, _ = error_of(response)
    assert error in ("invalid_request", "invalid_scope", "invalid_target")
