"""The verb table (docs/scopes.md): every verb a verifier reads as an authorization is decided —
a storage verb by the POSIX rule, an administrator-only verb by an administrator's client policy —
and never passed through as an opaque scope."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.services.policy import check_client_scopes, policy_allows
from scitoken_issuer.services.scope_verbs import VERBS
from scitoken_issuer.services.scopes import ScopeError, parse_scope, parse_scopes, render_scopes

from .conftest import ADMIN_TOKEN, basic_auth

DOCS = Path(__file__).resolve().parent.parent / "docs" / "scopes.md"
REG = "/auth/client/registration"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
ADMIN_ONLY = ["compute.read", "compute.create", "compute.modify", "compute.cancel", "condor:/ADMINISTRATOR",
              "condor:/WRITE", "condor", "queue", "queue:/jobs", "execute", "execute:/x"]

# What the verifiers' sources read as an authorization, written down from them independently of
# the table: scitokens-cpp (src/scitokens_internal.cpp, Enforcer::scope_validator), the Python
# ``scitokens.Enforcer``, XRootD (XrdSciTokensAccess.cc), dCache (WlcgProfileScope,
# SciTokenScope) and HTCondor (condor:/<LEVEL>, compute.*).
VERIFIER_VERBS = ["read", "write", "create", "modify", "stage", "execute", "queue", "condor",
                  "storage.read", "storage.create", "storage.modify", "storage.stage", "storage.poll",
                  "compute.read", "compute.create", "compute.modify", "compute.cancel"]

# The WLCG permissions each verifier reads into a verb written in a token of each profile (the
# union over verifiers): scitokens-cpp turns storage.create/modify into write as well in WLCG
# tokens; XRootD's write and modify both overwrite and delete; dCache's storage.stage downloads.
READ_AS = {
    "wlcg": {"storage.read": {"read"}, "storage.create": {"create", "modify"},
             "storage.modify": {"create", "modify"}, "storage.stage": {"read", "stage"},
             "storage.poll": {"stage"}},
    "scitokens": {"read": {"read"}, "write": {"create", "modify"}, "create": {"create"},
                  "modify": {"create", "modify"}, "stage": {"stage"}, "storage.stage": {"stage"},
                  "storage.poll": {"stage"}},
}


def test_docs_table_is_the_code_table():
    """docs/scopes.md lists exactly the verbs of ``VERBS``, each row as the code renders it."""
    text = DOCS.read_text()
    rows = [line for line in text.splitlines() if re.match(r"^\| `[^`]+` \| (WLCG|SciTokens) \|", line)]
    assert rows == [verb.markdown_row() for verb in VERBS.values()]


@pytest.mark.parametrize("verb", VERIFIER_VERBS)
def test_every_verb_a_verifier_reads_is_decided(verb):
    """docs/scopes.md: ``verb:/p`` and bare ``verb`` (read by verifiers as ``verb:/``) are a
    storage or admin-only scope, or refused; never an opaque scope that only has to match."""
    for text in (f"{verb}:/data/x", verb):
        try:
            scope = parse_scope(text)
        except ScopeError:
            continue
        assert scope.kind in ("storage", "admin"), text
        assert scope.verb is VERBS[verb]


@given(st.from_regex(r"[A-Za-z][A-Za-z0-9._-]{0,12}(:[!-~]{0,12})?", fullmatch=True))
def test_nothing_with_a_verb_shape_is_opaque(text):
    """docs/scopes.md "Refused shapes": whatever parses as an opaque scope has no ``:`` and is no
    verifier verb in any letter case."""
    try:
        scope = parse_scope(text)
    except ScopeError:
        return
    if scope.kind == "other":
        assert ":" not in text
        assert text.lower() not in VERIFIER_VERBS and not text.lower().startswith(("storage.", "compute.", "wlcg."))


@pytest.mark.parametrize("name", [name for name, verb in VERBS.items() if verb.kind == "storage"])
@pytest.mark.parametrize("profile", ["wlcg", "scitokens"])
def test_rendered_scopes_read_no_more_than_the_posix_rule_checked(name, profile):
    """docs/scopes.md "Tokens": whatever a verifier reads into the rendered scopes is within the
    permissions the POSIX rule checked for the verb (``storage.create`` never becomes ``write``)."""
    scope = parse_scope(f"{name}:/data/x")
    read = set()
    for text in render_scopes([scope], profile):
        verb, _, path = text.partition(":")
        assert path == "/data/x"
        read |= READ_AS[profile][verb]
    assert read <= set(VERBS[name].checks(profile)), (profile, render_scopes([scope], profile))


def test_scitokens_profile_never_says_write_for_create():
    """docs/scopes.md "Tokens": XRootD and dCache read ``write`` as overwrite and delete."""
    assert render_scopes(parse_scopes("storage.create:/d create:/e"), "scitokens") == ["create:/d", "create:/e"]


@pytest.mark.parametrize(("policy", "requested", "allowed"), [
    ("storage.modify:/data", "modify:/data/x", True),
    ("storage.modify:/data", "create:/data/x", True),
    ("storage.modify:/data", "write:/data/x", True),
    ("storage.create:/data", "create:/data/x", True),
    ("storage.create:/data", "modify:/data/x", False),
    ("storage.create:/data", "write:/data/x", False),
    ("storage.read:/data", "stage:/data/x", False),
    ("storage.stage:/data", "read:/data/x", True),
    ("storage.read:/data", "modify:/data", False),
    ("read:/data write:/data", "storage.modify:/data/x", True),
    ("storage.modify:/data", "modify:/other", False),
    ("condor:/READ", "condor:/WRITE", False),
    ("condor:/READ", "condor:/READ", True),
])
def test_client_policy_covers_storage_verbs_by_permission(policy, requested, allowed):
    """docs/scopes.md "How a storage scope is decided" step 2: a policy covers the permissions a
    verb stands for, in either spelling; admin-only scopes are matched exactly."""
    assert policy_allows(parse_scopes(policy), parse_scope(requested)) is allowed


# -- registration (RFC 7591 / RFC 7592) ------------------------------------------------------------

def register(client, body: dict, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(REG, json=body, headers=headers)


DEVICE_CLIENT = {"client_name": "attacker", "grant_types": [DEVICE_GRANT, "refresh_token"],
                 "token_endpoint_auth_method": "none", "token_profile": "scitokens"}


@pytest.mark.parametrize("scope", ADMIN_ONLY)
def test_dynamic_registration_refuses_admin_only_scopes(client, scope):
    """RFC 7591 §3.2.2 ``invalid_client_metadata``: anonymous registration cannot hold compute or
    HTCondor scopes (docs/scopes.md "Administrator-only scopes")."""
    response = register(client, {**DEVICE_CLIENT, "scope": f"openid {scope}"})
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["error"] == "invalid_client_metadata"
    assert f"scope {scope} is administrator-only" in body["error_description"]


def test_dynamic_registration_of_storage_verbs_is_left_to_the_posix_rule(client):
    """docs/scopes.md: SciTokens-spelled storage verbs may be registered by anyone; they are storage
    scopes now, decided per user by the POSIX rule (test_verifier_scopes.py shows the refusal)."""
    response = register(client, {**DEVICE_CLIENT, "scope": "modify:/data/ana create:/data/ana"})
    assert response.status_code == 201, response.get_json()


@pytest.mark.parametrize("how", ["admin token", "static", "cli"])
def test_administrators_may_set_admin_only_scopes(app, client, how):
    """docs/scopes.md: the CLI, ``ADMIN_TOKEN`` registration and ``STATIC_CLIENTS`` set them."""
    scope = "compute.create condor:/WRITE queue"
    body = {"grant_types": ["client_credentials"], "scope": scope}
    if how == "admin token":
        response = register(client, body, ADMIN_TOKEN)
        assert response.status_code == 201 and response.get_json()["scope"] == scope
    elif how == "static":
        runtime().clients.load_static([{**body, "client_id": "site-service", "client_secret": "s" * 40}])
        assert runtime().clients.get("site-service").scope == scope
    else:
        result = app.test_cli_runner().invoke(args=["client", "add", "--grant", "client_credentials",
                                                    "--scope", scope])
        assert result.exit_code == 0, result.output


def test_rfc7592_update_cannot_add_admin_only_scopes(client):
    """RFC 7592 §2.2 with RFC 7591 §3.2.2: the registration access token holder may keep the
    admin-only scopes an administrator set, but not add one; a dynamic client cannot add one."""
    created = register(client, {"grant_types": ["client_credentials"], "scope": "condor:/READ",
                                "client_name": "site"}, ADMIN_TOKEN).get_json()
    uri = f"{REG}/{created['client_id']}"
    auth = {"Authorization": f"Bearer {created['registration_access_token']}"}
    base = {"client_id": created["client_id"], "grant_types": ["client_credentials"], "client_name": "site"}
    kept = client.put(uri, json={**base, "scope": "condor:/READ"}, headers=auth)
    assert kept.status_code == 200, kept.get_json()
    added = client.put(uri, json={**base, "scope": "condor:/READ condor:/ADMINISTRATOR"}, headers=auth)
    assert added.status_code == 400
    assert added.get_json()["error"] == "invalid_client_metadata"
    assert "administrator" in added.get_json()["error_description"]

    dynamic = register(client, {**DEVICE_CLIENT, "scope": "openid"}).get_json()
    put = client.put(f"{REG}/{dynamic['client_id']}", json={
        "client_id": dynamic["client_id"], **DEVICE_CLIENT, "scope": "openid compute.create"},
        headers={"Authorization": f"Bearer {dynamic['registration_access_token']}"})
    assert put.status_code == 400 and put.get_json()["error"] == "invalid_client_metadata"


# -- grants -----------------------------------------------------------------------------------------

def test_admin_only_scope_needs_an_administrators_client(make_client):
    """docs/scopes.md: a policy holding an admin-only scope counts only if an administrator set it
    (a client stored as dynamically registered, e.g. before this rule, gets none)."""
    legacy, _ = make_client(grant_types=[DEVICE_GRANT], scope="openid compute.create")
    legacy.source = "dynamic"
    refusal = check_client_scopes(legacy, parse_scopes("compute.create"), for_user=True)
    assert refusal is not None and "administrator-only" in refusal.reason
    admin_client, _ = make_client(grant_types=[DEVICE_GRANT], scope="openid compute.create")
    assert check_client_scopes(admin_client, parse_scopes("compute.create"), for_user=True) is None
    assert check_client_scopes(admin_client, parse_scopes("compute.cancel"), for_user=True) is not None


def test_device_code_refuses_admin_only_scope_of_a_dynamic_client(client, make_client):
    """RFC 6749 §5.2 ``invalid_scope`` at RFC 8628 §3.1: not from a client no administrator set."""
    legacy, _ = make_client(grant_types=[DEVICE_GRANT], scope="openid compute.create",
                            token_endpoint_auth_method="none")
    legacy.source = "dynamic"
    db.session.commit()
    response = client.post("/auth/device/code", data={"client_id": legacy.client_id, "scope": "compute.create"})
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_scope"
    assert "administrator-only" in response.get_json()["error_description"]


def test_device_code_for_default_policy_client_refuses_admin_only_scope(client):
    """docs/scopes.md: a user-facing client that registered no scope gets no admin-only scope."""
    created = register(client, {**DEVICE_CLIENT}).get_json()
    response = client.post("/auth/device/code", data={"client_id": created["client_id"], "scope": "condor:/WRITE"})
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_scope"


@pytest.mark.parametrize(("policy", "requested", "granted"), [
    ("storage.modify:/data", "modify:/data/x", "modify:/data/x"),
    ("storage.modify:/data", "create:/data/x", "create:/data/x"),
    ("read:/data", "storage.read:/data/x", "read:/data/x"),
])
def test_client_credentials_match_scitokens_verbs_by_permission(client, make_client, policy, requested, granted):
    """docs/scopes.md: client credentials take scopes from the administrator's policy, matched by
    permission in either spelling (``modify:/p`` under ``storage.modify:/``), not by raw string."""
    registered, secret = make_client(scope=policy, token_profile="scitokens")
    response = client.post("/auth/token", data={"grant_type": "client_credentials", "scope": requested},
                           headers=basic_auth(registered.client_id, secret))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["scope"] == granted


@pytest.mark.parametrize("requested", ["write:/data/x", "modify:/data/x", "storage.modify:/data/x"])
def test_client_credentials_refuse_wider_verbs(client, make_client, requested):
    """RFC 6749 §5.2 ``invalid_scope``: ``storage.create`` does not cover overwrite or delete."""
    registered, secret = make_client(scope="storage.create:/data")
    response = client.post("/auth/token", data={"grant_type": "client_credentials", "scope": requested},
                           headers=basic_auth(registered.client_id, secret))
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_scope"
