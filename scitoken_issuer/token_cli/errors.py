"""Exit codes of ``scitoken-token`` and the one exception that carries them (docs/researchers.md).

Every failure ends with one line on stderr and its own exit code, so scripts and batch jobs
can tell "ask the user to log in again" from "the issuer is down, retry later".
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ISSUER_ERROR = 1       #: the issuer answered with an error none of the codes below covers
EXIT_USAGE = 2              #: bad arguments or configuration (no issuer given, bad --minsecs, ...)
EXIT_UNREACHABLE = 3        #: the issuer cannot be reached, answers 5xx, or publishes no usable metadata
EXIT_DENIED = 4             #: the person denied the request in the browser (access_denied)
EXIT_EXPIRED = 5            #: the device code expired before anyone approved it (expired_token)
EXIT_LOGIN_NEEDED = 6       #: the refresh token is revoked or expired and --no-device forbids a new login
EXIT_INVALID_SCOPE = 7      #: the issuer refused a requested scope (invalid_scope), with its reason
EXIT_LOCAL_FILE = 8         #: a local file cannot be written safely (token file, private store)
EXIT_CLIENT = 9             #: the client was refused (registration refused, invalid_client, unauthorized_client)
EXIT_INTERRUPTED = 130      #: Ctrl-C

#: For ``--help`` and docs/researchers.md.
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_ISSUER_ERROR: "the issuer answered with another error",
    EXIT_USAGE: "bad arguments or configuration",
    EXIT_UNREACHABLE: "issuer unreachable, 5xx, or no usable metadata",
    EXIT_DENIED: "the request was denied in the browser (access_denied)",
    EXIT_EXPIRED: "the device code expired before approval (expired_token)",
    EXIT_LOGIN_NEEDED: "the refresh token is revoked or expired and --no-device forbids a new login",
    EXIT_INVALID_SCOPE: "a requested scope was refused (invalid_scope)",
    EXIT_LOCAL_FILE: "a local file cannot be written safely",
    EXIT_CLIENT: "the client was refused (registration or client authentication)",
    EXIT_INTERRUPTED: "interrupted",
}


class CliError(Exception):
    """A failure to report as one line on stderr, ending the program with ``code``."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class OAuthError(CliError):
    """An RFC 6749 §5.2 error answer: ``error`` and ``error_description`` as the issuer sent them."""

    #: error code -> exit code; anything else is EXIT_ISSUER_ERROR
    EXITS = {"access_denied": EXIT_DENIED, "expired_token": EXIT_EXPIRED, "invalid_scope": EXIT_INVALID_SCOPE,
             "invalid_client": EXIT_CLIENT, "unauthorized_client": EXIT_CLIENT,
             "invalid_client_metadata": EXIT_CLIENT, "invalid_redirect_uri": EXIT_CLIENT,
             "temporarily_unavailable": EXIT_UNREACHABLE, "server_error": EXIT_UNREACHABLE}

    def __init__(self, error: str, description: str, status: int, what: str):
        self.error, self.description, self.status = error, description, status
        detail = f": {description}" if description else ""
        super().__init__(self.EXITS.get(error, EXIT_ISSUER_ERROR), f"{what} refused ({error}){detail}")
