"""What a refresh and a code exchange cost the database (docs/tokens.md, "Cost of a refresh"), on
SQLite and PostgreSQL: a refresh (RFC 6749 §6) is the lookup, the claim and the successor's
INSERT (claim and INSERT are one statement on PostgreSQL), committed once on SQLite and each
committing on its own on PostgreSQL (its round trips: tests/test_refresh_round_trips.py); a code exchange
(RFC 6749 §4.1.3) is a read, both signatures, then the claim and the new family's two INSERTs
(written by the commit), and one commit. No second transaction, no ping before the work; a
PostgreSQL restart costs no failed request."""

from __future__ import annotations

import contextlib

import pytest
from sqlalchemy import event, func, select, text, update

from scitoken_issuer.extensions import AUTOCOMMIT_ENGINE, db, runtime, separate_transaction
from scitoken_issuer.models import AuthorizationCode, RefreshFamily, RefreshToken
from scitoken_issuer.oauth2.oidc import DeviceIDToken, OpenIDCode
from scitoken_issuer.services.tokens import TokenService
from tests.conftest import make_app
from tests.support.user_flows import (DEVICE_GRANT, REDIRECT_URI, approve_code, authorize_query, device_approved,
                                      device_tokens, pkce, refresh, sign_in)

SCOPE = "openid offline_access"


def engine_of(app):
    with app.app_context():
        return db.engine


def engines_of(app) -> list:
    """The app's engine and, on PostgreSQL, its autocommit twin (``database.autocommit_twin``)."""
    twin = app.extensions.get(AUTOCOMMIT_ENGINE)
    return [engine_of(app), *([twin] if twin is not None else [])]


@contextlib.contextmanager
def database_work(app):
    """The statements (their first word) and commits of the app's engines inside the block, and
    the separate sessions opened (``separate_transaction``)."""
    seen: dict[str, list] = {"statements": [], "commits": []}

    def statement(conn, cursor, text, *args):
        seen["statements"].append(text.split(None, 1)[0].upper())

    def commit(conn):
        seen["commits"].append(conn)

    engines = engines_of(app)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", statement)
        event.listen(engine, "commit", commit)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", statement)
            event.remove(engine, "commit", commit)


@pytest.fixture(params=["sqlite", "postgresql"])
def issuer(request, tmp_path):
    """An app on SQLite or on a PostgreSQL database of its own, with a public client for user flows."""
    overrides = {} if request.param == "sqlite" else {"DATABASE_URL": request.getfixturevalue("pg_url")}
    app = make_app(tmp_path, **overrides)
    client_id = public_client(app)
    with app.app_context():
        runtime().version.max_age = 600  # the client and keys stay fresh: what is left is the grant's work
    client = app.test_client()
    sign_in(client)
    yield request.param, app, client, client_id
    engine_of(app).dispose()


def public_client(app) -> str:
    """A public client for the code flow with refresh tokens (its id)."""
    with app.app_context():
        registered = runtime().clients.register(
            {"token_endpoint_auth_method": "none", "scope": SCOPE, "redirect_uris": [REDIRECT_URI],
             "grant_types": ["authorization_code", "refresh_token"]}, admin=True, source="admin")
        db.session.commit()
        return registered.client.client_id


def exchange(client, client_id: str):
    """A fresh code for the signed-in user, exchanged (inside the caller's block only the exchange)."""
    verifier, challenge = pkce()
    code = approve_code(client, authorize_query(client_id, SCOPE, challenge))["code"]
    return lambda: client.post("/auth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier, "client_id": client_id})


def test_refresh_is_lookup_claim_successor_and_one_commit(issuer):
    """RFC 6749 §6 with rotation: the success path of a refresh runs the lookup, one conditional
    claim and the successor's INSERT (one WITH statement on PostgreSQL); on SQLite the claim and
    the INSERT are committed together, once (on PostgreSQL each statement commits on its own)."""
    dialect, app, client, client_id = issuer
    first = exchange(client, client_id)().get_json()
    warm = refresh(client, client_id, first["refresh_token"])  # keys and client are loaded now
    assert warm.status_code == 200, warm.get_json()
    with database_work(app) as seen:
        answer = refresh(client, client_id, warm.get_json()["refresh_token"])
    assert answer.status_code == 200, answer.get_json()
    expected = ["SELECT", "WITH"] if dialect == "postgresql" else ["SELECT", "UPDATE", "INSERT"]
    assert seen["statements"] == expected
    if dialect == "sqlite":
        assert len(seen["commits"]) == 1


def test_retry_within_grace_reads_the_successor_after_the_lost_claim(issuer):
    """docs/tokens.md "Refresh families": a retry within the grace window loses the claim and gets
    the stored successor from one more read (on SQLite in the same transaction)."""
    dialect, app, client, client_id = issuer
    first = exchange(client, client_id)().get_json()
    winner = refresh(client, client_id, first["refresh_token"])
    with database_work(app) as seen:
        retry = refresh(client, client_id, first["refresh_token"])
    assert retry.status_code == 200 and retry.get_json()["refresh_token"] == winner.get_json()["refresh_token"]
    assert seen["statements"] == ["SELECT", "WITH" if dialect == "postgresql" else "UPDATE", "SELECT"]
    if dialect == "sqlite":
        assert len(seen["commits"]) == 1


def test_code_exchange_is_read_claim_family_token_and_one_commit(issuer):
    """RFC 6749 §4.1.3: the exchange reads the code, signs both tokens, then writes: the
    conditional claim of the code, and at the commit the new family and its first refresh token."""
    _dialect, app, client, client_id = issuer
    exchange(client, client_id)()  # keys and client are loaded now
    send = exchange(client, client_id)
    with database_work(app) as seen:
        answer = send()
    assert answer.status_code == 200, answer.get_json()
    assert "id_token" in answer.get_json() and "refresh_token" in answer.get_json()
    assert seen["statements"] == ["SELECT", "UPDATE", "INSERT", "INSERT"]
    assert len(seen["commits"]) == 1


@contextlib.contextmanager
def signatures_among_statements(app, monkeypatch, id_token=OpenIDCode):
    """:func:`database_work`, with a mark in the statement list once the access token and once
    the ID token is signed (by the grant's ``id_token`` extension: the code's or the device's)."""
    with database_work(app) as seen:
        def marking(mark, sign):
            def signed(*args, **kwargs):
                result = sign(*args, **kwargs)
                seen["statements"].append(mark)
                return result
            return signed

        monkeypatch.setattr(TokenService, "mint", marking("access token signed", TokenService.mint))
        monkeypatch.setattr(id_token, "encode_id_token", marking("ID token signed", id_token.encode_id_token))
        yield seen


def test_no_write_before_both_tokens_are_signed(issuer, monkeypatch):
    """docs/tokens.md "Cost of a refresh": a code exchange (RFC 6749 §4.1.3, OIDC Core §3.1.3.3)
    signs the access token and the ID token before its first write, so on SQLite the write lock
    (and on PostgreSQL the code's row lock) is held from the claim to the commit only, never
    across a signature."""
    _dialect, app, client, client_id = issuer
    exchange(client, client_id)()  # keys and client are loaded now
    send = exchange(client, client_id)
    with signatures_among_statements(app, monkeypatch) as seen:
        answer = send()
    assert answer.status_code == 200, answer.get_json()
    assert seen["statements"] == ["SELECT", "access token signed", "ID token signed", "UPDATE", "INSERT", "INSERT"]
    assert len(seen["commits"]) == 1


def stored_rows(app) -> tuple[int, int]:
    """How many refresh families and refresh tokens are stored."""
    with app.app_context():
        return (db.session.scalar(select(func.count()).select_from(RefreshFamily)),
                db.session.scalar(select(func.count()).select_from(RefreshToken)))


def test_lost_claim_stores_nothing_and_a_won_exchange_refreshes(issuer, monkeypatch):
    """RFC 6749 §4.1.2 and docs/tokens.md "Cost of a refresh": an exchange whose code is claimed
    by a concurrent exchange while it signs (after its family and refresh token were generated)
    is ``invalid_grant`` and stores no family and no refresh token; the refresh token of an
    exchange that won is stored by its commit and refreshes right away (RFC 6749 §6)."""
    _dialect, app, client, client_id = issuer
    exchange(client, client_id)()  # keys and client are loaded now
    send = exchange(client, client_id)
    before = stored_rows(app)

    def claimed_meanwhile(self, token, request):
        """A concurrent exchange claims the code (and commits) while this one signs its ID token
        (had this one written before, the other would wait for its lock: an error, not a hang)."""
        with separate_transaction() as session:
            if session.bind.dialect.name == "postgresql":
                session.execute(text("SET LOCAL lock_timeout = '5s'"))
            session.execute(update(AuthorizationCode).where(AuthorizationCode.used_at.is_(None))
                            .values(used_at=1))
        return original(self, token, request)

    original = OpenIDCode.encode_id_token
    monkeypatch.setattr(OpenIDCode, "encode_id_token", claimed_meanwhile)
    with database_work(app) as seen:
        lost = send()
    assert lost.status_code == 400 and lost.get_json()["error"] == "invalid_grant", lost.get_json()
    claims = [word for word in seen["statements"] if word != "SET"]  # the read, the other's claim, the lost claim
    assert claims == ["SELECT", "UPDATE", "UPDATE"]
    assert len(seen["commits"]) == 1  # the other exchange's
    assert stored_rows(app) == before
    monkeypatch.undo()

    won = exchange(client, client_id)()
    assert won.status_code == 200, won.get_json()
    assert stored_rows(app) == (before[0] + 1, before[1] + 1)
    refreshed = refresh(client, client_id, won.get_json()["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_json()
    assert refreshed.get_json()["refresh_token"] != won.get_json()["refresh_token"]


def test_device_grant_family_is_stored_at_its_commit(issuer):
    """RFC 8628 §3.5 with ``offline_access``: the device grant's new family and refresh token are
    written by the commit too, and the refresh token works right away (RFC 6749 §6)."""
    _dialect, app, client, _client_id = issuer
    with app.app_context():
        device_client = runtime().clients.register(
            {"token_endpoint_auth_method": "none", "scope": SCOPE,
             "grant_types": [DEVICE_GRANT, "refresh_token"]}, admin=True, source="admin").client.client_id
        db.session.commit()
    before = stored_rows(app)
    body = device_tokens(client, device_client, SCOPE)
    assert stored_rows(app) == (before[0] + 1, before[1] + 1)
    refreshed = refresh(client, device_client, body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_json()


def device_client_of(app, grant_types: list[str]) -> str:
    with app.app_context():
        client_id = runtime().clients.register(
            {"token_endpoint_auth_method": "none", "scope": SCOPE, "grant_types": grant_types},
            admin=True, source="admin").client.client_id
        db.session.commit()
    return client_id


def test_approved_device_poll_writes_only_after_both_tokens_are_signed(issuer, monkeypatch):
    """RFC 8628 §3.5 and docs/tokens.md "Cost of a refresh": the poll that collects an approved
    authorization signs the access token and the ID token before its first write (consuming the
    authorization), so on SQLite the write lock is never held across a signature; the new family
    and its refresh token follow at the commit."""
    _dialect, app, client, _client_id = issuer
    device_client = device_client_of(app, [DEVICE_GRANT, "refresh_token"])
    device_tokens(client, device_client, SCOPE)  # keys and client are loaded now
    start = device_approved(client, device_client, SCOPE)
    with signatures_among_statements(app, monkeypatch, id_token=DeviceIDToken) as seen:
        answer = client.post("/auth/token", data={"grant_type": DEVICE_GRANT, "device_code": start["device_code"],
                                                  "client_id": device_client})
    assert answer.status_code == 200, answer.get_json()
    assert "id_token" in answer.get_json() and "refresh_token" in answer.get_json()
    # the poll's row, its pace (a short transaction of its own, committed at once), the decision,
    # both signatures, and only then the request's writes: the consumption, the family, its token
    assert seen["statements"] == ["SELECT", "UPDATE", "SELECT", "access token signed", "ID token signed",
                                  "UPDATE", "INSERT", "INSERT"]
    assert len(seen["commits"]) == 2


def test_a_device_authorization_consumed_meanwhile_is_refused_and_stores_nothing(issuer, monkeypatch):
    """RFC 8628 §3.5 (tokens once): a poll whose approved authorization is consumed by a concurrent
    poll while it signs is ``invalid_grant`` and stores no family and no refresh token."""
    from scitoken_issuer.models import DeviceCode

    _dialect, app, client, _client_id = issuer
    device_client = device_client_of(app, [DEVICE_GRANT, "refresh_token"])
    start = device_approved(client, device_client, SCOPE)
    before = stored_rows(app)

    def consumed_meanwhile(self, *args, **kwargs):
        """A concurrent poll consumes it (and commits) while this one signs its ID token (had
        this one written before, the other would wait for its lock: an error, not a hang)."""
        with separate_transaction() as session:
            if session.bind.dialect.name == "postgresql":
                session.execute(text("SET LOCAL lock_timeout = '5s'"))
            session.execute(update(DeviceCode).where(DeviceCode.status == "approved").values(status="consumed"))
        return original(self, *args, **kwargs)

    original = DeviceIDToken.encode_id_token
    monkeypatch.setattr(DeviceIDToken, "encode_id_token", consumed_meanwhile)
    lost = client.post("/auth/token", data={"grant_type": DEVICE_GRANT, "device_code": start["device_code"],
                                            "client_id": device_client})
    assert lost.status_code == 400 and lost.get_json()["error"] == "invalid_grant", lost.get_json()
    assert stored_rows(app) == before


def test_replayed_code_is_refused_and_only_its_revocation_is_committed(issuer):
    """RFC 6749 §4.1.2: a code is used once; the replay commits only the revocation of what the
    first exchange gave (a transaction of its own), and a further replay commits nothing."""
    _dialect, app, client, client_id = issuer
    send = exchange(client, client_id)
    assert send().status_code == 200
    for commits in (1, 0):
        with database_work(app) as seen:
            replay = send()
        assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"
        assert "already used" in replay.get_json()["error_description"]
        assert len(seen["commits"]) == commits


def test_concurrent_exchanges_of_one_code_give_one_answer(issuer):
    """RFC 6749 §4.1.2 ("MUST NOT use the authorization code more than once") under concurrency:
    eight exchanges of one code at once; the claim lets exactly one through, and only its family
    and refresh token are stored (the others' are never written)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    _dialect, app, client, client_id = issuer
    verifier, challenge = pkce()
    code = approve_code(client, authorize_query(client_id, SCOPE, challenge))["code"]
    families_before, tokens_before = stored_rows(app)
    start = threading.Barrier(8)

    def exchange_once(_):
        start.wait()
        return app.test_client().post("/auth/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier, "client_id": client_id})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(exchange_once, range(8)))
    assert sorted(a.status_code for a in answers) == [200] + [400] * 7
    assert all(a.get_json()["error"] == "invalid_grant" for a in answers if a.status_code == 400)
    assert stored_rows(app) == (families_before + 1, tokens_before + 1)


def test_no_ping_before_the_work(issuer):
    """docs/configuration.md "Database": taking a connection from the pool costs no round trip."""
    assert engine_of(issuer[1]).pool._pre_ping is False


def test_first_requests_after_a_postgres_restart_succeed(tmp_path, own_postgres):
    """docs/configuration.md "Database": every pooled connection died with the server (in the
    session's pool and in the autocommit twin's); each pool replaces them on checkout, so no
    request after the restart fails."""
    app = make_app(tmp_path, DATABASE_URL=own_postgres.url)
    client_id = public_client(app)
    client = app.test_client()
    sign_in(client)
    first = exchange(client, client_id)().get_json()["refresh_token"]
    token = refresh(client, client_id, first).get_json()["refresh_token"]
    engine, twin = engines_of(app)
    pooled = engine.pool.checkedin() + twin.pool.checkedin()
    assert engine.pool.checkedin() >= 1 and twin.pool.checkedin() >= 1  # the session's and the autocommit twin's
    own_postgres.restart()
    try:
        for _ in range(pooled + 2):  # more requests than pooled connections: each one is replaced
            answer = refresh(client, client_id, token)
            assert answer.status_code == 200, answer.get_data(as_text=True)
            token = answer.get_json()["refresh_token"]
    finally:
        engine.dispose()


def test_pending_device_poll_without_redis_is_one_read_and_one_pace_update(issuer):
    """RFC 8628 §3.5 without Redis (docs/architecture.md, "What a token request costs"): a pending
    poll reads its row, then records its pace in one UPDATE committed on its own; the poll that
    comes too soon is ``slow_down`` from that same UPDATE."""
    _dialect, app, client, _client_id = issuer
    with app.app_context():
        device_client = runtime().clients.register(
            {"token_endpoint_auth_method": "none", "scope": "openid", "grant_types": [DEVICE_GRANT]},
            admin=True, source="admin").client.client_id
        db.session.commit()
    code = client.post("/auth/device/code", data={"client_id": device_client, "scope": "openid"}).get_json()
    poll = {"grant_type": DEVICE_GRANT, "device_code": code["device_code"], "client_id": device_client}
    with database_work(app) as seen:
        first = client.post("/auth/token", data=poll)
    assert first.status_code == 400 and first.get_json()["error"] == "authorization_pending"
    assert seen["statements"] == ["SELECT", "UPDATE"] and len(seen["commits"]) == 1
    too_soon = client.post("/auth/token", data=poll)
    assert too_soon.status_code == 400 and too_soon.get_json()["error"] == "slow_down"
