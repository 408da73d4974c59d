"""Getting a usable access token: the stored one while it has ``minsecs`` left, else a silent
renewal with the refresh token (rotated, stored atomically), else a device login.

A refresh token the issuer no longer honours (revoked, expired, its client deleted) ends the
silent path with one line saying so, then a device login — or, with ``--no-device``, the exit
code for "a new login is needed" (docs/researchers.md, as htgettoken behaves).
"""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass, replace
from typing import TextIO

from .bearer import expiry
from .device_flow import DeviceLogin
from .errors import EXIT_CLIENT, EXIT_ISSUER_ERROR, EXIT_LOGIN_NEEDED, CliError, OAuthError
from .issuer import Client, Issuer
from .store import TokenRecord, TokenStore, record_key

#: Always asked for: without a refresh token nothing can be renewed silently.
BASE_SCOPES = ("openid", "offline_access")
#: The WLCG storage scopes a self-registered client asks to cover, when the issuer advertises
#: them in ``scopes_supported``; the issuer still decides each scope per user at every request.
STORAGE_SCOPES = ("wlcg.groups", "storage.read:/", "storage.create:/", "storage.modify:/", "storage.stage:/")
#: Refresh errors that mean "this refresh token (or its client) is gone; log in again".
REFRESH_GONE = ("invalid_grant", "invalid_client", "unauthorized_client")


@dataclass(frozen=True)
class TokenRequest:
    """What the user asked for (``scopes`` already include :data:`BASE_SCOPES`)."""

    issuer: str
    scopes: tuple[str, ...]
    audience: str | None = None
    minsecs: int = 60
    client_id: str | None = None
    client_secret: str | None = None
    public: bool = False
    device: bool = True

    @property
    def scope(self) -> str:
        return " ".join(self.scopes)

    @property
    def key(self) -> str:
        return record_key(self.issuer, list(self.scopes), self.audience)


@dataclass(frozen=True)
class Outcome:
    record: TokenRecord
    how: str  #: "stored" (still valid), "renewed" (refresh token) or "login" (device flow)


def with_base_scopes(scopes: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*BASE_SCOPES, *scopes]))


def covers(registered: str | None, wanted: tuple[str, ...]) -> bool:
    """Whether a registration's ``scope`` covers every wanted scope: exactly, or as a WLCG
    scope on a parent path (``storage.read:/`` covers ``storage.read:/data``), or ``wlcg.groups``
    covering ``wlcg.groups:/g``."""
    held = (registered or "").split()
    for scope in wanted:
        verb, sep, path = scope.partition(":")
        if scope in held or (verb == "wlcg.groups" and "wlcg.groups" in held):
            continue
        if sep and path.startswith("/") and any(
                h.partition(":")[0] == verb and _under(path, h.partition(":")[2]) for h in held if ":" in h):
            continue
        return False
    return True


def _under(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix.rstrip("/") + "/")


class Acquirer:
    """Runs one :class:`TokenRequest` against the store and, when needed, the issuer."""

    def __init__(self, store: TokenStore, out: TextIO = sys.stderr):
        self.store = store
        self.out = out

    def say(self, line: str) -> None:
        print(f"scitoken-token: {line}", file=self.out, flush=True)

    def acquire(self, request: TokenRequest) -> Outcome:
        with self.store.locked(request.key):  # one renewal at a time per record (store.py)
            record = self.store.record(request.key)
            if record is not None and record.seconds_left() >= request.minsecs:
                return Outcome(record, "stored")
            issuer = Issuer(request.issuer)
            if record is not None and record.refresh_token:
                try:
                    return Outcome(self.renew(issuer, request, record), "renewed")
                except OAuthError as exc:
                    if exc.error not in REFRESH_GONE:
                        raise
                    self.store.forget(request.key)
                    why = "was revoked or has expired" if exc.error == "invalid_grant" else \
                        f"belongs to a client the issuer no longer accepts ({exc.error})"
                    if exc.error != "invalid_grant" and not request.client_id:
                        self.store.forget_client(request.issuer)
                    if not request.device:
                        raise CliError(EXIT_LOGIN_NEEDED, f"the stored refresh token {why}; a new login is "
                                       "needed and --no-device forbids it") from None
                    self.say(f"the stored refresh token {why}; starting a new login")
            elif not request.device:
                raise CliError(EXIT_LOGIN_NEEDED, "no stored token for this issuer, scope set and audience, "
                               "and --no-device forbids a login")
            return Outcome(self.login(issuer, request), "login")

    def renew(self, issuer: Issuer, request: TokenRequest, record: TokenRecord) -> TokenRecord:
        """The refresh grant (RFC 6749 §6); the rotated refresh token is stored before use."""
        body = issuer.post_form(issuer.endpoint("token_endpoint", "issue tokens"),
                                {"grant_type": "refresh_token", "refresh_token": record.refresh_token},
                                record.client(), "refresh request")
        renewed = self._record(request, body, record.client(), previous=record)
        self.store.save(request.key, renewed)
        return renewed

    def login(self, issuer: Issuer, request: TokenRequest) -> TokenRecord:
        client = self.client(issuer, request)
        flow = DeviceLogin(issuer, client, self.out)
        try:
            code = flow.start(request.scope, request.audience)
        except OAuthError as exc:
            if exc.error != "invalid_client" or not client.registered:
                raise
            self.say("the issuer no longer knows the client this tool registered; registering again")
            self.store.forget_client(request.issuer)
            client = self.client(issuer, request)
            flow = DeviceLogin(issuer, client, self.out)
            code = flow.start(request.scope, request.audience)
        flow.show(code)
        record = self._record(request, flow.poll(code), client)
        self.store.save(request.key, record)
        return record

    def client(self, issuer: Issuer, request: TokenRequest) -> Client:
        """``--client-id``, else this tool's registration at the issuer, registered (again, wider)
        when it does not cover the scopes asked for."""
        if request.client_id:
            return Client(request.client_id, request.client_secret)
        stored = self.store.client(request.issuer)
        if stored is not None and covers(stored.scope, request.scopes):
            return stored
        wanted = list(dict.fromkeys([*(stored.scope.split() if stored and stored.scope else []), *request.scopes]))
        supported = issuer.metadata().get("scopes_supported") or []
        wide = list(dict.fromkeys([*wanted, *(s for s in STORAGE_SCOPES if s in supported)]))
        name = f"scitoken-token on {socket.gethostname()}"[:200]
        try:
            client = issuer.register(" ".join(wide), request.public, name)
        except CliError:
            if wide == wanted:
                raise
            client = issuer.register(" ".join(wanted), request.public, name)  # the issuer refused the wide set
        self.store.save_client(request.issuer, client)
        self.say(f"registered this tool at {request.issuer} as client {client.client_id}")
        return client

    def _record(self, request: TokenRequest, body: dict, client: Client,
                previous: TokenRecord | None = None) -> TokenRecord:
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise CliError(EXIT_ISSUER_ERROR, f"the issuer at {request.issuer} answered without an access_token")
        if str(body.get("token_type", "bearer")).lower() != "bearer":
            raise CliError(EXIT_CLIENT, f"the issuer at {request.issuer} issued a {body.get('token_type')} "
                           "token, not a bearer token")
        now = time.time()
        expires_at = expiry(access)
        if expires_at is None and isinstance(body.get("expires_in"), (int, float)):
            expires_at = now + float(body["expires_in"])
        refresh = body.get("refresh_token") if isinstance(body.get("refresh_token"), str) else None
        if previous is not None:  # an issuer that does not rotate keeps the old refresh token valid
            return replace(previous, access_token=access, expires_at=expires_at, obtained_at=now,
                           refresh_token=refresh or previous.refresh_token)
        return TokenRecord(issuer=request.issuer, scope=request.scope, audience=request.audience,
                           client_id=client.client_id, client_secret=client.client_secret, refresh_token=refresh,
                           access_token=access, expires_at=expires_at, obtained_at=now)
