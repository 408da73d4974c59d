"""A refresh on PostgreSQL in two round trips (docs/tokens.md, "Cost of a refresh"; RFC 6749 §6):
the lookup and the claim-and-store each commit on their own, with no BEGIN and no COMMIT, on
connections of the database's autocommit twin; the request session's connections keep their
transactions. Counted on the wire
(tests/support/pg_wire.py), where psycopg's own BEGIN and COMMIT show; what SQLAlchemy runs on
both databases is in tests/test_token_statements.py."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.models import SigningKey
from tests.conftest import make_app
from tests.support.pg_wire import round_trips
from tests.support.user_flows import refresh, sign_in
from tests.test_token_statements import engine_of, engines_of, exchange, public_client


@pytest.fixture
def issuer(tmp_path, pg_url):
    """An app on a PostgreSQL database of its own: (app, signed-in test client, public client id)."""
    app = make_app(tmp_path, DATABASE_URL=pg_url)
    client_id = public_client(app)
    with app.app_context():
        runtime().version.max_age = 600  # the client and keys stay fresh: what is left is the grant's work
    client = app.test_client()
    sign_in(client)
    yield app, client, client_id
    engine_of(app).dispose()


def test_refresh_is_two_round_trips(issuer):
    """A successful refresh is the lookup and the claim-and-store, each committing on its own:
    two round trips, no BEGIN, no COMMIT (four before: BEGIN, lookup, claim-and-store, COMMIT)."""
    app, client, client_id = issuer
    warm = refresh(client, client_id, exchange(client, client_id)().get_json()["refresh_token"])
    assert warm.status_code == 200, warm.get_json()  # keys and client are loaded now
    with round_trips(*engines_of(app)) as wire:
        answer = refresh(client, client_id, warm.get_json()["refresh_token"])
    assert answer.status_code == 200, answer.get_json()
    assert wire.trips == ["SELECT", "WITH"]
    again = refresh(client, client_id, answer.get_json()["refresh_token"])  # the successor was stored
    assert again.status_code == 200, again.get_json()


def test_retry_within_grace_is_three_round_trips(issuer):
    """docs/tokens.md "Refresh families": a retry within the grace window loses the claim and
    reads the stored successor: three round trips, no BEGIN, no COMMIT."""
    app, client, client_id = issuer
    first = exchange(client, client_id)().get_json()["refresh_token"]
    winner = refresh(client, client_id, first)
    with round_trips(*engines_of(app)) as wire:
        retry = refresh(client, client_id, first)
    assert retry.status_code == 200 and retry.get_json()["refresh_token"] == winner.get_json()["refresh_token"]
    assert wire.trips == ["SELECT", "WITH", "SELECT"]


def test_the_refresh_leaves_the_session_pool_alone_and_the_next_request_runs_in_a_transaction(issuer):
    """The refresh's two statements run on the autocommit twin's connections, none from the
    session's pool (so no connection there is switched into autocommit mode and back), and the
    next request (a code exchange, RFC 6749 §4.1.3) is one transaction, BEGIN to COMMIT."""
    app, client, client_id = issuer
    first = exchange(client, client_id)().get_json()["refresh_token"]
    token = refresh(client, client_id, first).get_json()["refresh_token"]
    send = exchange(client, client_id)  # the consent is given before the pools are emptied
    engine, twin = engines_of(app)
    assert twin.pool.checkedin() == 1
    engine.dispose()
    assert twin.pool.checkedin() == 0  # the twin is disposed with the session's engine
    with round_trips(engine) as session_pool, round_trips(twin) as twin_pool:
        assert refresh(client, client_id, token).status_code == 200
    assert session_pool.trips == [] and twin_pool.trips == ["SELECT", "WITH"]
    assert twin.pool.checkedin() == 1 and engine.pool.checkedin() == 0
    with round_trips(engine, twin) as next_request:
        assert send().status_code == 200
    assert not set(next_request.connections) & set(twin_pool.connections)
    trips = next_request.trips
    assert trips[0] == "BEGIN" and trips[-1] == "COMMIT" and "UPDATE" in trips and trips.count("BEGIN") == 1, trips


def test_refresh_joins_a_transaction_the_request_began(issuer):
    """When the request has already read in a transaction (here the process reloads its copy of
    the clients before the grant), the refresh's statements join that transaction, committed
    once at the end, as on SQLite."""
    app, client, client_id = issuer
    token = exchange(client, client_id)().get_json()["refresh_token"]
    with app.app_context():
        runtime().version.max_age = 0  # every copy of shared state is reloaded from the database
    with round_trips(*engines_of(app)) as wire:
        answer = refresh(client, client_id, token)
    assert answer.status_code == 200, answer.get_json()
    assert wire.trips[0] == "BEGIN" and wire.trips[-1] == "COMMIT", wire.trips
    assert wire.trips.count("WITH") == 1 and wire.trips.count("BEGIN") == 1, wire.trips
    assert refresh(client, client_id, answer.get_json()["refresh_token"]).status_code == 200


def test_a_signing_key_created_during_a_refresh_is_committed_with_the_claim(issuer):
    """Key rotation falling due while a refresh signs (docs/conformance.md, "Key chains"): the new
    key is inserted in a savepoint of the request's transaction, which a statement committing on
    its own could not hold (PostgreSQL refuses SAVEPOINT outside a transaction), and the claim
    joins that transaction."""
    app, client, client_id = issuer
    token = exchange(client, client_id)().get_json()["refresh_token"]
    with app.app_context():
        keys = runtime().keys
        before = db.session.scalar(select(func.count()).select_from(SigningKey))
        db.session.commit()
        keys.clock = lambda: time.time() + keys.rotation_seconds  # rotation is due now
    with round_trips(*engines_of(app)) as wire:
        answer = refresh(client, client_id, token)
    assert answer.status_code == 200, answer.get_json()
    trips = wire.trips
    assert trips[-1] == "COMMIT" and trips.index("BEGIN") < trips.index("SAVEPOINT") < trips.index("WITH"), trips
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SigningKey)) > before
    assert refresh(client, client_id, answer.get_json()["refresh_token"]).status_code == 200
