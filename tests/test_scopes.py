"""Scope grammar for both token profiles, with the verb table (docs/scopes.md; RFC 6749 §3.3)."""

import pytest

from scitoken_issuer.services.scopes import (
    MAX_PATH_LENGTH,
    MAX_SCOPES,
    Scope,
    ScopeError,
    parse_scope,
    parse_scopes,
    render_scopes,
    storage_permissions,
    validate_path,
)


@pytest.mark.parametrize(
    ("text", "kind", "permission", "path"),
    [
        ("storage.read:/data/ana", "storage", "read", "/data/ana"),
        ("storage.create:/data", "storage", "create", "/data"),
        ("storage.modify:/a/b-c_d.e~f+g,h=i@j:k", "storage", "modify", "/a/b-c_d.e~f+g,h=i@j:k"),
        ("storage.stage:/", "storage", "stage", "/"),
        ("storage.poll:/tape", "storage", "poll", "/tape"),
        ("read:/data", "storage", "read", "/data"),
        ("write:/data/x", "storage", "write", "/data/x"),
        ("create:/data/x", "storage", "create", "/data/x"),
        ("modify:/data/x", "storage", "modify", "/data/x"),
        ("stage:/tape/x", "storage", "stage", "/tape/x"),
        ("wlcg.groups", "groups", None, None),
        ("wlcg.groups:/cms/production", "groups", None, "/cms/production"),
        ("compute.read", "admin", None, None),
        ("compute.cancel", "admin", None, None),
        ("condor:/ADMINISTRATOR", "admin", None, "/ADMINISTRATOR"),
        ("condor", "admin", None, None),
        ("queue", "admin", None, None),
        ("execute:/jobs", "admin", None, "/jobs"),
        ("openid", "openid", None, None),
        ("offline_access", "offline_access", None, None),
        ("profile", "other", None, None),
        ("email", "other", None, None),
        ("/data/.hidden/.x.y", "other", None, None),
    ],
)
def test_valid_scopes_parse(text, kind, permission, path):
    """docs/scopes.md: the WLCG 1.0 and SciTokens 2.0 verbs, admin-only verbs, and OIDC scopes."""
    scope = parse_scope(text)
    assert scope == Scope(text, kind, permission, path)
    assert str(scope) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("storage.read", "storage scope needs an absolute path: storage.read"),
        ("read", "storage scope needs an absolute path: read"),
        ("write", "storage scope needs an absolute path"),
        ("storage.read:", "is empty"),
        ("storage.read:data", "must be absolute"),
        ("storage.read:/data//ana", "empty segment"),
        ("storage.read:/data/", "must not end with '/'"),
        ("storage.read:/data/..", "'..' segment"),
        ("storage.read:/data/../etc", "'..' segment"),
        ("storage.read:/./data", "'.' segment"),
        ("storage.read:/data/...", "ending with '.'"),
        ("storage.read:/data/ana.", "ending with '.'"),
        ("storage.read:/data/%2e%2e/etc", "forbidden character '%'"),
        ("storage.read:/data\\x", "forbidden character"),
        ("storage.read:/da\x00ta", "forbidden character '\\x00'"),
        ("storage.read:/da\nta", "forbidden character"),
        ("storage.read:/dat\u00e9", "forbidden character"),
        ("storage.write:/data", "unknown storage permission 'write'"),
        ("storage.delete:/data", "unknown storage permission"),
        ("storage.:/data", "unknown storage permission"),
        ("Storage.Read:/data", "lower case"),
        ("READ:/data", "lower case"),
        ("storage", "lower case"),
        ("wlcg.ver", "lower case"),
        ("wlcg.groups:", "group path is empty"),
        ("wlcg.groups:cms", "must be absolute"),
        ("wlcg.groups:/cms/../atlas", "'..' segment"),
        ("compute.read:/x", "compute scopes take no path"),
        ("compute.delete", "unknown compute scope"),
        ("create", "storage scope needs an absolute path: create"),
        ("modify", "storage scope needs an absolute path"),
        ("stage", "storage scope needs an absolute path"),
        ("storage.poll", "storage scope needs an absolute path"),
        ("create:data", "must be absolute"),
        ("modify:/data/../etc", "'..' segment"),
        ("condor:/../ADMINISTRATOR", "'..' segment"),
        ("Create:/data", "lower case"),
        ("MODIFY:/data", "lower case"),
        ("Condor:/READ", "lower case"),
        ("QUEUE", "lower case"),
        ("Compute.Read", "lower case"),
        ("delete:/data", "unknown scope verb 'delete'"),
        ("foo:/data", "unknown scope verb 'foo'"),
        ("foo:bar", "unknown scope verb 'foo'"),
        ("https://scitokens.org/v1/authz/read:/data", "unknown scope verb 'https'"),
        ("urn:example:scope", "unknown scope verb 'urn'"),
        ("profile:/x", "unknown scope verb 'profile'"),
        ("", "empty scope"),
        ('"openid"', "forbidden character"),
        ("storage.read:/" + "a" * 256, "longer than 255"),
        ("storage.read:/" + "a/" * (MAX_PATH_LENGTH // 2) + "a", "longer than"),
    ],
)
def test_malformed_scopes_refused_with_reason(text, reason):
    """docs/scopes.md: refuse rather than fix or pass through; the reason names what is wrong."""
    with pytest.raises(ScopeError) as excinfo:
        parse_scope(text)
    assert reason in str(excinfo.value)


def test_parse_scopes_splits_dedupes_and_keeps_order():
    """RFC 6749 §3.3: space-delimited, order irrelevant to the server but kept for display."""
    scopes = parse_scopes("openid  storage.read:/a write:/b storage.read:/a offline_access")
    assert [s.raw for s in scopes] == ["openid", "storage.read:/a", "write:/b", "offline_access"]
    assert parse_scopes("") == [] and parse_scopes(None) == []
    assert [s.raw for s in parse_scopes(["read:/a", "read:/a"])] == ["read:/a"]


def test_parse_scopes_names_first_bad_scope():
    with pytest.raises(ScopeError, match="storage scope needs an absolute path: storage.read$"):
        parse_scopes("openid storage.read storage.modify")
    with pytest.raises(ScopeError, match="forbidden character"):
        parse_scopes("openid\tstorage.read:/a")
    with pytest.raises(ScopeError, match=f"more than {MAX_SCOPES}"):
        parse_scopes(" ".join(f"read:/d{i}" for i in range(MAX_SCOPES + 1)))


def test_storage_permissions():
    """docs/scopes.md: the POSIX rule checks every permission a verifier reads into the verb as
    written in the token's profile (``write`` = create + modify; a create verb in a WLCG token is
    also modify, because scitokens-cpp reads ``storage.create`` there as ``write``; stage includes
    read); without a profile, the union of both."""
    assert storage_permissions(parse_scope("read:/a")) == ("read",)
    assert storage_permissions(parse_scope("write:/a"), "scitokens") == ("create", "modify")
    for text in ("storage.create:/a", "create:/a"):
        assert storage_permissions(parse_scope(text), "wlcg") == ("create", "modify")
        assert storage_permissions(parse_scope(text), "scitokens") == ("create",)
        assert storage_permissions(parse_scope(text)) == ("create", "modify")
    assert storage_permissions(parse_scope("modify:/a"), "scitokens") == ("create", "modify")
    assert storage_permissions(parse_scope("storage.stage:/a"), "wlcg") == ("read", "stage")
    assert storage_permissions(parse_scope("openid")) == ()
    assert storage_permissions(parse_scope("wlcg.groups:/g")) == ()
    assert storage_permissions(parse_scope("condor:/WRITE")) == ()


def test_render_scopes_for_each_profile():
    """docs/scopes.md "Tokens": verbatim in the verb's own profile, translated in the other; in
    SciTokens tokens ``storage.create`` is ``create`` (not ``write``, which XRootD and dCache read as
    overwrite and delete) and ``storage.stage`` keeps its stage right next to ``read``."""
    granted = parse_scopes(
        "openid storage.read:/a storage.create:/b storage.modify:/b storage.stage:/c write:/d "
        "read:/a wlcg.groups compute.read create:/e modify:/f stage:/g condor:/READ"
    )
    assert render_scopes(granted, "wlcg") == [
        "openid", "storage.read:/a", "storage.create:/b", "storage.modify:/b", "storage.stage:/c",
        "storage.create:/d", "storage.modify:/d", "wlcg.groups", "compute.read", "storage.create:/e",
        "storage.modify:/f", "storage.stage:/g", "condor:/READ",
    ]
    assert render_scopes(granted, "scitokens") == [
        "openid", "read:/a", "create:/b", "write:/b", "read:/c", "storage.stage:/c", "write:/d",
        "wlcg.groups", "compute.read", "create:/e", "modify:/f", "stage:/g", "condor:/READ",
    ]
    with pytest.raises(ValueError):
        render_scopes(granted, "jwt")  # type: ignore[arg-type]


def test_rendered_scopes_parse_back():
    granted = parse_scopes("storage.read:/a write:/b/c storage.stage:/")
    for profile in ("wlcg", "scitokens"):
        for text in render_scopes(granted, profile):
            assert parse_scope(text).path in ("/a", "/b/c", "/")


def test_validate_path_accepts_root_and_rejects_non_strings():
    assert validate_path("/") == "/"
    with pytest.raises(ScopeError):
        validate_path(None)  # type: ignore[arg-type]
    with pytest.raises(ScopeError):
        parse_scope(b"read:/a")  # type: ignore[arg-type]
