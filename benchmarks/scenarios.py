"""What each scenario sends, which answer counts as success, and which floor it is held against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote

from .inputs import DEVICE_GRANT, REDIRECT_URI, SERVICE_SCOPE, Prepared
from .load import Load

#: the client-credentials request both the issuer and the peer answer
CLIENT_CREDENTIALS_BODY = f"grant_type=client_credentials&scope={quote(SERVICE_SCOPE, safe='')}"


@dataclass(frozen=True)
class Scenario:
    name: str
    floor: str  # "L2" (a freshly signed JWT) or "L3" (a JSON document)
    load: Callable[[Prepared], Load]
    consumes: str | None = None  # the kind of input each request uses up
    protocol: bool = False  # also sent to P, authlib's grant alone (``floors.protocol_app``)


SCENARIOS = [
    Scenario("client_credentials", "L2", lambda p: Load(
        "/auth/token", "POST", CLIENT_CREDENTIALS_BODY, auth=p.service_auth), protocol=True),
    Scenario("refresh_token", "L2", lambda p: Load(
        "/auth/token", "POST", "grant_type=refresh_token&refresh_token={1}", auth=p.user_auth,
        inputs=p.files["refresh"]), consumes="refresh", protocol=True),
    Scenario("authorization_code", "L2", lambda p: Load(
        "/auth/token", "POST",
        f"grant_type=authorization_code&code={{1}}&code_verifier={{2}}&redirect_uri={quote(REDIRECT_URI, safe='')}",
        auth=p.user_auth, inputs=p.files["code"]), consumes="code"),
    Scenario("device_poll_pending", "L3", lambda p: Load(
        "/auth/token", "POST", f"grant_type={quote(DEVICE_GRANT, safe='')}&device_code={{1}}", auth=p.user_auth,
        inputs=p.files["device"], status=400, expect=("authorization_pending", "slow_down")), protocol=True),
    Scenario("introspection", "L3", lambda p: Load(
        "/auth/introspect", "POST", "token={1}&token_type_hint=access_token", auth=p.service_auth,
        inputs=p.files["access"], expect=('"active": true', '"active":true'))),
    Scenario("jwks", "L3", lambda p: Load("/auth/certs")),
    Scenario("discovery", "L3", lambda p: Load("/.well-known/openid-configuration")),
]

BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}

FLOOR_LOADS = {
    "L2": Load("/token", "POST", CLIENT_CREDENTIALS_BODY),
    "L3": Load("/json"),
}
