"""RFC 8628 §3.4 device access token requests: pending, slow_down, denied, refused (``invalid_scope``),
expired, or tokens once."""

from __future__ import annotations

import time

from authlib.oauth2.rfc6749 import (AccessDeniedError, InvalidGrantError, InvalidRequestError, InvalidScopeError,
                                    UnauthorizedClientError)
from authlib.oauth2.rfc8628 import DeviceCodeGrant as _DeviceCodeGrant
from authlib.oauth2.rfc8628.errors import AuthorizationPendingError, ExpiredTokenError, SlowDownError

from workers import tasks

from ...background import TaskQueueUnavailable, dispatch
from ...extensions import runtime
from ...services.audit import audit
from ...services.authorization import Grant, UserAuthorization
from ...services.device import PollState
from ...services.scopes import parse_scopes
from ..audience import from_text
from ..server import error_description
from .hooks import OrderedHooks


class DeviceCredential:
    def __init__(self, state: PollState):
        self.state = state
        self.row = None

    def get_client_id(self) -> str:
        return self.state.client_id

    def get_scope(self) -> str:
        return self.row.granted_scope if self.row is not None else ""

    def is_expired(self) -> bool:
        return self.state.expires_at <= time.time()


class DeviceCodeGrant(OrderedHooks, _DeviceCodeGrant):
    """Polls are answered from :class:`~scitoken_issuer.services.device.DeviceFlow` state; the
    whole check is one override of ``validate_device_credential`` (authlib's ``query_user_grant``
    and ``should_slow_down`` hooks are folded into it, so the decision row is read only once).
    An approved authorization is consumed after its tokens are signed, as a code is
    (docs/tokens.md, "Cost of a refresh")."""

    def create_token_response(self):
        """authlib's token response, the access token and (with ``openid``) the ID token signed,
        then the authorization consumed: the poll's first write, so on SQLite no other request
        waits on this one's signatures. A concurrent poll that consumed it first makes this one
        ``invalid_grant``, and the error answer drops its queued refresh family."""
        answer = super().create_token_response()
        row = self.request.credential.row
        if not runtime().device.consume(row.device_code_hash):
            raise InvalidGrantError("the device code was already used")
        audit("device", "consumed", subject=row.subject, client_id=row.client_id, scope=row.granted_scope)
        return answer

    def validate_token_request(self) -> None:
        """authlib's checks, with RFC 6749 §5.2's error for a device code that is unknown or was
        issued to another client: ``invalid_grant`` (authlib answers ``invalid_request`` and
        ``unauthorized_client``, which tells a client to fix its request or its registration)."""
        device_code = self.request.payload.data.get("device_code")
        if not device_code:
            raise InvalidRequestError("device_code is required (RFC 8628 section 3.4)")
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(f"the client is not registered for grant_type {self.GRANT_TYPE}")
        credential = self.query_device_credential(device_code)
        if credential is None or credential.get_client_id() != client.get_client_id():
            raise InvalidGrantError("unknown device_code, or one issued to another client")
        self.request.user = self.validate_device_credential(credential)
        self.request.client = client
        self.request.credential = credential

    def query_device_credential(self, device_code: str) -> DeviceCredential | None:
        state = runtime().device.poll_state(device_code)
        return DeviceCredential(state) if state else None

    @staticmethod
    def resend_decision(state: PollState) -> None:
        """A decision the verification page accepted that no worker recorded in time (its task
        died with a worker, or Redis lost it) goes to a worker again (docs/flows.md, flow 2);
        with the queue down the poll still answers pending, and a later one tries again."""
        request = runtime().device.resume(state)
        if request is None:
            return
        try:
            dispatch(tasks.complete_device_authorization, state.device_code_hash, request["username"],
                     request.get("identity_id"), bool(request["approved"]))
        except TaskQueueUnavailable:
            pass  # logged by dispatch

    def validate_device_credential(self, credential: DeviceCredential) -> UserAuthorization:
        flow = runtime().device
        if credential.is_expired():
            raise ExpiredTokenError()
        if flow.too_fast(credential.state):
            raise SlowDownError()
        if not credential.state.decided:
            self.resend_decision(credential.state)
            raise AuthorizationPendingError()
        row = flow.decision(credential.state.device_code_hash)
        if row.status == "denied":
            raise AccessDeniedError(row.denial_reason or "the user denied the request")
        if row.status == "refused":  # RFC 6749 §5.2, as in the other grants: a scope was not granted
            raise InvalidScopeError(error_description(row.denial_reason or "a requested scope was refused"))
        if row.status == "consumed":
            raise InvalidGrantError("the device code was already used")
        if row.status != "approved":
            raise AuthorizationPendingError()
        credential.row = row  # consumed after the tokens are signed (create_token_response)
        return UserAuthorization(subject=row.subject, identity_id=row.identity_id, auth_time=row.decided_at,
                                 grant=Grant(parse_scopes(row.granted_scope or ""), (row.claims or {}).get("groups", [])),
                                 audience=from_text(row.audience))
