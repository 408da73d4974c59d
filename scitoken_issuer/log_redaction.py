"""No secret in any log line: a filter every log handler of every process carries.

Codes, tokens, user codes and secrets travel in query strings (``/auth/callback?code=``,
``/auth/device?user_code=``, ``/auth/login?next=...``), in ``Authorization`` headers and in JSON.
The filter renders each record and masks every query-string value, credentials after
``Bearer``/``Basic``, JWTs, and the value of any secret-named field (docs/security-web.md).
"""

from __future__ import annotations

import logging
import re

MASK = "[redacted]"
#: ``?name=value`` / ``&name=value`` anywhere in a line: the value goes, the name stays.
_QUERY_VALUE = re.compile(r"(?<=[?&;])([\w.\-\[\]%]+=)[^&;\s\"'#<>]+")
_CREDENTIALS = re.compile(r"\b(Bearer|Basic|DPoP)\s+[\w.~+/\-]+=*", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[\w\-]{4,}\.[\w\-]{4,}\.[\w\-]*")
_SECRET_FIELD = re.compile(
    r"""(["']?\b(?:client_secret|password|code|device_code|user_code|code_verifier|access_token|"""
    r"""refresh_token|id_token|subject_token|actor_token|registration_access_token|token|state|nonce)"""
    r"""\b["']?\s*[:=]\s*["']?)[^"'&,;\s}]+""", re.IGNORECASE)
#: every name :data:`_SECRET_FIELD` masks holds one of these words
_SECRET_WORDS = ("secret", "password", "code", "token", "state", "nonce")


def redact(text: str) -> str:
    """``text`` with every secret-shaped value replaced by :data:`MASK`.

    Every line of every process passes here (one access-log line per request), so a pattern runs
    only when the line holds what it cannot match without: ``=`` or ``:`` for a name and its
    value, a scheme word or a secret-field word for the case-blind patterns, ``eyJ`` for a JWT.
    Those words are looked for case-folded (``casefold``, not ``lower``), as the patterns'
    ``IGNORECASE`` matches them (``ſ`` for ``s``, the Kelvin sign for ``k``)."""
    if "=" in text:
        text = _QUERY_VALUE.sub(lambda m: m.group(1) + MASK, text)
    folded = text.casefold()  # the masks below only take words away, so this stays a superset
    if "bearer" in folded or "basic" in folded or "dpop" in folded:
        text = _CREDENTIALS.sub(lambda m: f"{m.group(1)} {MASK}", text)
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    if ("=" in text or ":" in text) and any(word in folded for word in _SECRET_WORDS):
        text = _SECRET_FIELD.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """Replaces a record's message with its redacted rendering (and its traceback text too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format: keep it as logging would show it
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def redact_handlers(logger: logging.Logger) -> None:
    """Give every handler of ``logger`` the filter (once)."""
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def redact_celery_logs() -> None:
    """Celery configures its handlers after the app is built: filter them when it does."""
    from celery import signals

    def on_setup(logger=None, **_kwargs) -> None:
        if logger is not None:
            redact_handlers(logger)

    signals.after_setup_logger.connect(on_setup, weak=False, dispatch_uid="scitoken-issuer-redact")
    signals.after_setup_task_logger.connect(on_setup, weak=False, dispatch_uid="scitoken-issuer-redact-task")
