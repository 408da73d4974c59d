"""Signing keys: encryption at rest, rotation with the next key published first, retirement, races."""

from __future__ import annotations

import threading
import time

import jwt as pyjwt
import pytest
from sqlalchemy import select

from scitoken_issuer.extensions import db, runtime
from scitoken_issuer.models import SigningKey
from scitoken_issuer.services.tokens import TokenRequest

from .conftest import make_app


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(app):
    keys = runtime().keys
    clock = Clock(time.time())
    keys.clock = clock
    runtime().tokens.keys.clock = clock
    return clock


def mint(subject="svc"):
    minted = runtime().tokens.mint(TokenRequest(subject=subject, client_id="c", scopes=["compute.read"],
                                                grant_type="client_credentials"))
    db.session.commit()
    return minted.token


def jwks():
    return runtime().keys.jwks()["keys"]


def verify_with_published(token: str) -> dict:
    """Verify as a storage service would: pick the published key by ``kid`` (PyJWT)."""
    kid = pyjwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks() if k["kid"] == kid)
    key = pyjwt.PyJWK(jwk).key
    return pyjwt.decode(token, key, algorithms=[jwk["alg"]], audience="https://wlcg.cern.ch/jwt/v1/any")


def test_private_key_is_encrypted_at_rest(app):
    runtime().keys.signing_key()
    row = db.session.execute(select(SigningKey)).scalar_one()
    assert b"PRIVATE KEY" not in row.private_key
    assert b"PRIVATE KEY" in runtime().secrets.decrypt(row.private_key)


def test_next_key_is_published_before_it_signs(app, clock):
    keys = runtime().keys
    first = keys.signing_key()
    # just before rotation is due nothing changes
    clock.now += keys.rotation_seconds - keys.publish_seconds - 10
    assert keys.signing_key().kid == first.kid and len(jwks()) == 1
    # rotation due: the next key is created and published, the current key still signs
    clock.now += 20
    assert keys.signing_key().kid == first.kid
    published = {k["kid"] for k in jwks()}
    assert len(published) == 2 and first.kid in published
    upcoming = keys.view().upcoming[0]
    assert upcoming.activates_at - clock.now >= keys.publish_seconds - 20
    # once the publish period is over the next key signs
    clock.now = upcoming.activates_at
    assert keys.signing_key().kid == upcoming.kid


def test_token_signed_by_previous_key_still_verifies_after_rotation(app, clock):
    keys = runtime().keys
    keys.signing_key()
    old_token = mint()
    [new_key] = keys.rotate()
    clock.now = new_key.activates_at + 1
    new_token = mint()
    assert pyjwt.get_unverified_header(new_token)["kid"] == new_key.kid
    assert pyjwt.get_unverified_header(old_token)["kid"] != new_key.kid
    # the old token is still valid for its lifetime, and its key is still published
    assert verify_with_published(new_token)["sub"] == "svc"
    assert verify_with_published(old_token)["sub"] == "svc"
    assert runtime().tokens.verify(old_token)["sub"] == "svc"


def test_retired_key_is_dropped_after_its_tokens_expired(app, clock):
    keys = runtime().keys
    old = keys.signing_key()
    [new] = keys.rotate(immediately=True)
    assert {k["kid"] for k in jwks()} == {old.kid, new.kid}
    clock.now += keys.retire_seconds + 1
    assert {k["kid"] for k in jwks()} == {new.kid}
    assert keys.purge() == 1
    db.session.commit()
    assert db.session.execute(select(SigningKey.kid)).scalars().all() == [new.kid]


def test_compromised_rotation_withdraws_the_old_keys_at_once(app, clock):
    """docs/tokens.md: ``keys rotate --compromised`` signs with a new key at once and withdraws
    every other key of the chain: none is published any more and what they signed no longer
    verifies here (``--immediately`` alone keeps the old key published until its tokens expire)."""
    keys = runtime().keys
    old = keys.signing_key()
    [upcoming] = keys.rotate()  # a next key published before the compromise goes too
    old_token = mint()
    [new] = keys.rotate(withdraw=True)
    db.session.commit()
    assert {k["kid"] for k in jwks()} == {new.kid}
    assert keys.signing_key().kid == new.kid and old.kid != new.kid != upcoming.kid
    assert pyjwt.get_unverified_header(mint())["kid"] == new.kid
    assert runtime().tokens.verify(old_token) is None


def test_es256_keys(tmp_path):
    app = make_app(tmp_path, KEY_TYPE="ES256")
    with app.app_context():
        token = mint()
        assert pyjwt.get_unverified_header(token)["alg"] == "ES256"
        assert jwks()[0]["crv"] == "P-256" and jwks()[0]["alg"] == "ES256"
        assert verify_with_published(token)["sub"] == "svc"


def test_two_processes_creating_the_first_key_agree(tmp_path):
    """Two apps on one database race to create the first key; exactly one key results."""
    apps = [make_app(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/shared.db") for _ in range(2)]
    kids, barrier = [], threading.Barrier(2)

    def work(app):
        with app.app_context():
            barrier.wait()
            kids.append(runtime().keys.signing_key().kid)
            db.session.commit()
            db.session.remove()

    threads = [threading.Thread(target=work, args=(a,)) for a in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(kids) == 2 and kids[0] == kids[1]
    with apps[0].app_context():
        assert db.session.execute(select(SigningKey)).scalars().all().__len__() == 1


def test_es256_issuer_keeps_an_rs256_chain_for_id_tokens(tmp_path):
    """OIDC Core §15.1: with KEY_TYPE=ES256 an RS256 key signs ID tokens; both chains are published
    with ``kid``/``alg``/``use`` and both rotate, the next key published before it signs."""
    app = make_app(tmp_path, KEY_TYPE="ES256")
    with app.app_context():
        keys = runtime().keys
        clock = keys.clock = runtime().tokens.keys.clock = Clock(time.time())
        access, id_key = keys.signing_key(), keys.id_token_key()
        assert (access.alg, id_key.alg) == ("ES256", "RS256")
        published = {k["kid"]: k for k in jwks()}
        assert set(published) == {access.kid, id_key.kid}
        assert all(k["use"] == "sig" for k in published.values())
        assert published[id_key.kid]["alg"] == "RS256" and published[id_key.kid]["kty"] == "RSA"
        # rotation becomes due in both chains at once: each publishes its next key first
        clock.now += keys.rotation_seconds - keys.publish_seconds + 1
        assert (keys.signing_key().kid, keys.id_token_key().kid) == (access.kid, id_key.kid)
        upcoming = {alg: keys.view(alg).upcoming for alg in ("ES256", "RS256")}
        assert [len(v) for v in upcoming.values()] == [1, 1]
        assert {k.kid for v in upcoming.values() for k in v} <= {k["kid"] for k in jwks()}
        clock.now = max(v[0].activates_at for v in upcoming.values())
        assert keys.signing_key().kid == upcoming["ES256"][0].kid
        assert keys.id_token_key().kid == upcoming["RS256"][0].kid
        # an operator rotation touches every chain, or the one asked for
        assert sorted(k.alg for k in keys.rotate()) == ["ES256", "RS256"]
        assert [k.alg for k in keys.rotate(alg="RS256")] == ["RS256"]
        db.session.commit()


def test_chain_no_longer_in_use_is_retired_then_purged(tmp_path):
    """Switching KEY_TYPE: the old chain's last key stays published while its tokens may be valid
    (it signed at most until its rotation was due), then is purged."""
    database = f"sqlite:///{tmp_path}/switch.db"
    first = make_app(tmp_path, DATABASE_URL=database, KEY_TYPE="ES256")
    with first.app_context():
        old = runtime().keys.signing_key()
        db.session.commit()
        db.session.remove()
    second = make_app(tmp_path, DATABASE_URL=database, KEY_TYPE="RS256")
    with second.app_context():
        keys = runtime().keys
        clock = keys.clock = Clock(time.time())
        assert keys.signing_key().alg == "RS256"
        assert old.kid in {k["kid"] for k in jwks()} and keys.view("ES256").current is None
        clock.now = old.activates_at + keys.rotation_seconds + keys.publish_seconds + keys.retire_seconds + 1
        keys.signing_keys()
        assert old.kid not in {k.kid for k in keys.published(fresh=True)}
        assert keys.purge() >= 1
        db.session.commit()
        assert old.kid not in db.session.execute(select(SigningKey.kid)).scalars().all()


def test_two_processes_creating_both_chains_agree(tmp_path):
    """Two ES256 apps on one database race to create the first keys: one key per chain results."""
    apps = [make_app(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/shared.db", KEY_TYPE="ES256") for _ in range(2)]
    seen, barrier = [], threading.Barrier(2)

    def work(app):
        with app.app_context():
            barrier.wait()
            keys = runtime().keys.signing_keys()
            db.session.commit()
            seen.append({alg: k.kid for alg, k in keys.items()})
            db.session.remove()

    threads = [threading.Thread(target=work, args=(a,)) for a in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 2 and seen[0] == seen[1] and set(seen[0]) == {"ES256", "RS256"}
    with apps[0].app_context():
        assert sorted(db.session.execute(select(SigningKey.alg)).scalars().all()) == ["ES256", "RS256"]


def test_rotate_on_a_fresh_install_gives_a_key_that_signs(app, client, make_client):
    """docs/tokens.md, "Keys": ``keys rotate`` before anything was signed (an operator's first
    step on a new database) makes the first key, which signs at once: there is no earlier key
    set a verifier could have cached. It made a key for tomorrow, and every token request
    failed until then (no current key, none created)."""
    from .conftest import basic_auth

    done = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert done.exit_code == 0, done.output
    listed = app.test_cli_runner().invoke(args=["keys", "list"])
    assert listed.output.startswith("current "), listed.output
    registered, secret = make_client()
    answer = client.post("/auth/token", data={"grant_type": "client_credentials"},
                         headers=basic_auth(registered.client_id, secret))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    kid = pyjwt.get_unverified_header(answer.json["access_token"])["kid"]
    assert kid in listed.output


def test_chain_with_only_a_future_key_gets_one_that_signs_now(app, clock):
    """docs/tokens.md, "Keys": a chain whose only key signs later (left by an earlier release's
    ``keys rotate`` on a fresh database) is given a key that signs now instead of refusing to
    sign until then."""
    keys = runtime().keys
    future = keys._create("RS256", activates_at=int(clock.now) + 86400)
    db.session.commit()
    assert keys.view(fresh=True).current is None
    token = mint()
    current = keys.view(fresh=True).current
    assert current is not None and current.kid != future.kid
    assert pyjwt.get_unverified_header(token)["kid"] == current.kid
