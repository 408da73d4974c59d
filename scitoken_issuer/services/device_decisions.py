"""The worker side of a device authorization (RFC 8628 §3.3): the user's decision, with the scopes
decided as for any other user flow (docs/flows.md, flow 2)."""

from __future__ import annotations

from ..extensions import after_commit
from .audit import audit
from .authorization import UserScopes
from .clients import ClientRegistry
from .device import DeviceFlow
from .policy import Refusal


class DeviceDecisions:
    """Records approvals, denials and refusals. Flushes; the caller commits, and only then are the
    pollers told through Redis (an after-commit hook), so a poll never reads a decision that a
    rollback took back."""

    def __init__(self, device: DeviceFlow, clients: ClientRegistry, user_scopes: UserScopes):
        self.device = device
        self.clients = clients
        self.user_scopes = user_scopes

    def complete(self, device_code_hash: str, username: str, identity_id: int | None, approved: bool) -> str:
        """Decide the scopes (on approval) and record the outcome: ``approved``, ``denied``,
        ``refused`` or ``not-pending``."""
        row = self.device.decision(device_code_hash)
        if row is None or row.status != "pending":
            return "not-pending"
        if not approved:
            recorded = self.device.record_decision(device_code_hash, approved=False, subject=username,
                                                   identity_id=identity_id, reason="the user denied the request")
            audit("issue", "denied", subject=username, client_id=row.client_id, scope=row.scope,
                  reason="the user denied the request", grant_type="device_code")
            outcome = "denied"
        else:
            client = self.clients.get(row.client_id)
            decision = self.user_scopes.grant_scopes(username, row.scope, client) if client else \
                Refusal(row.scope, "the client no longer exists")
            if isinstance(decision, Refusal):
                recorded = self.device.record_decision(device_code_hash, approved=False, subject=username,
                                                       identity_id=identity_id, reason=decision.reason, refused=True)
                audit("issue", "refused", subject=username, client_id=row.client_id, scope=row.scope,
                      reason=decision.reason, grant_type="device_code")
                outcome = "refused"
            else:
                recorded = self.device.record_decision(device_code_hash, approved=True, subject=username,
                                                       identity_id=identity_id, granted_scope=decision.scope,
                                                       groups=decision.groups)
                outcome = "approved"
        if not recorded:
            return "not-pending"
        after_commit(lambda: self.device.signal(device_code_hash))
        return outcome
