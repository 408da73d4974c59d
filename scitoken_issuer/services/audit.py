"""One structured audit line per issuance, refusal and revocation; never the token itself."""

from __future__ import annotations

import json
import logging
import time

audit_logger = logging.getLogger("scitoken_issuer.audit")


def audit(event: str, outcome: str, *, subject: str | None = None, client_id: str | None = None,
          scope: str | None = None, jti: str | None = None, reason: str | None = None, **extra) -> None:
    """Log one JSON line: ``event`` (issue, refuse, revoke, ...), ``outcome`` and who/what."""
    record = {"ts": round(time.time(), 3), "event": event, "outcome": outcome, "sub": subject,
              "client_id": client_id, "scope": scope, "jti": jti, "reason": reason}
    record.update(extra)
    audit_logger.info(json.dumps({k: v for k, v in record.items() if v is not None}, sort_keys=True))
