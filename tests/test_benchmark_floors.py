"""The benchmark's reference apps answer what the issuer's scenarios send, as the issuer would
(status and error), so their rates compare with the issuer's."""

from __future__ import annotations

import base64
import json

import pytest

from benchmarks import floors
from benchmarks.inputs import DEVICE_GRANT, basic_auth

ISSUER = "http://127.0.0.1:8080"


@pytest.fixture
def protocol(monkeypatch):
    monkeypatch.setenv("FLOOR_CLIENTS", "service:s3cret,user-flow:pa:ss")
    monkeypatch.setenv("KEY_TYPE", "ES256")
    return floors.protocol_app().test_client()


def post(client, form: dict, auth: str):
    return client.post("/auth/token", data=form, headers={"Authorization": auth}, base_url=ISSUER)


def test_protocol_floor_answers_the_three_grants_as_the_issuer_does(protocol):
    user = basic_auth("user-flow", "pa:ss")  # a secret may hold a colon: only the first splits
    answer = post(protocol, {"grant_type": "client_credentials", "scope": "storage.read:/data"},
                  basic_auth("service", "s3cret"))
    assert answer.status_code == 200
    header = json.loads(base64.urlsafe_b64decode(answer.json["access_token"].split(".")[0] + "=="))
    assert header["alg"] == "ES256"  # signed as L2 signs, with the configured key type

    answer = post(protocol, {"grant_type": "refresh_token", "refresh_token": "anything"}, user)
    assert answer.status_code == 200 and {"access_token", "refresh_token"} <= set(answer.json)

    answer = post(protocol, {"grant_type": DEVICE_GRANT, "device_code": "anything"}, user)
    assert (answer.status_code, answer.json["error"]) == (400, "authorization_pending")


def test_protocol_floor_checks_the_client_secret(protocol):
    answer = post(protocol, {"grant_type": "client_credentials"}, basic_auth("service", "wrong"))
    assert (answer.status_code, answer.json["error"]) == (401, "invalid_client")
    answer = post(protocol, {"grant_type": "client_credentials"}, basic_auth("nobody", "s3cret"))
    assert (answer.status_code, answer.json["error"]) == (401, "invalid_client")
