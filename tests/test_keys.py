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
    new_key = keys.rotate()
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
    new = keys.rotate(immediately=True)
    assert {k["kid"] for k in jwks()} == {old.kid, new.kid}
    clock.now += keys.retire_seconds + 1
    assert {k["kid"] for k in jwks()} == {new.kid}
    assert keys.purge() == 1
    db.session.commit()
    assert db.session.execute(select(SigningKey.kid)).scalars().all() == [new.kid]


def test_es256_keys(tmp_path):
    app = make_app(tmp_path, KEY_TYPE="ES256")
    with app.app_context():
        token = mint()
        assert pyjwt.get_unverified_header(token)["alg"] == "ES256"
        assert jwks()[0]["crv"] == "P-256"
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
