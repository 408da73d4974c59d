"""The device authorization grant, client side (RFC 8628 §3.1–3.5).

Ask for a device code, show the person where to go (URL, user code, and a QR code of
``verification_uri_complete`` when the terminal shows one), then poll the token endpoint no
faster than ``interval``, adding 5 seconds on each ``slow_down`` (§3.5), until tokens, a denial
or the code's expiry.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable, TextIO

from .errors import EXIT_EXPIRED, EXIT_UNREACHABLE, CliError, OAuthError
from .issuer import DEVICE_GRANT, Client, Issuer

#: RFC 8628 §3.2: "If no value is provided, clients MUST use 5 as the default."
DEFAULT_INTERVAL = 5
#: RFC 8628 §3.5: each slow_down adds 5 seconds to the polling interval.
SLOW_DOWN_STEP = 5
#: The longest wait between polls while the issuer cannot be reached or answers 5xx (RFC 8628
#: §3.5: back off exponentially); the interval doubles from the issuer's up to this.
MAX_BACKOFF = 60


@dataclass(frozen=True)
class DeviceCode:
    """The device authorization response (RFC 8628 §3.2)."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int
    interval: int


def qr_text(data: str) -> str | None:
    """``data`` as a QR code drawn with block characters, or None without ``segno`` (the optional
    ``token-cli`` extra)."""
    try:
        import segno
    except ImportError:
        return None
    import io
    out = io.StringIO()
    segno.make(data, error="l").terminal(out=out, compact=True)
    return out.getvalue()


class DeviceLogin:
    """One device login at ``issuer`` as ``client``; ``out`` is where the person reads (stderr)."""

    def __init__(self, issuer: Issuer, client: Client, out: TextIO = sys.stderr,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self.issuer = issuer
        self.client = client
        self.out = out
        self.sleep = sleep
        self.clock = clock

    def start(self, scope: str, audience: str | None) -> DeviceCode:
        url = self.issuer.endpoint("device_authorization_endpoint", "run the device flow (RFC 8628)")
        data = {"scope": scope}
        if audience:
            data["audience"] = audience
        body = self.issuer.post_form(url, data, self.client, "device authorization request")
        try:
            return DeviceCode(str(body["device_code"]), str(body["user_code"]), str(body["verification_uri"]),
                              body.get("verification_uri_complete"), int(body.get("expires_in") or 600),
                              max(1, int(body.get("interval") or DEFAULT_INTERVAL)))
        except (KeyError, TypeError, ValueError):
            raise CliError(EXIT_UNREACHABLE, f"the issuer at {self.issuer.url} answered the device authorization "
                           "request without device_code, user_code or verification_uri") from None

    def show(self, code: DeviceCode) -> None:
        """Tell the person what to do; the QR code only on a terminal that can show it."""
        print(f"To sign in, open  {code.verification_uri}\nand enter the code  {code.user_code}", file=self.out)
        if code.verification_uri_complete:
            print(f"(or open {code.verification_uri_complete})", file=self.out)
            if _is_terminal(self.out):
                drawing = qr_text(code.verification_uri_complete)
                if drawing:
                    print(drawing, file=self.out, end="")
        minutes = max(1, round(code.expires_in / 60))
        print(f"Waiting for approval (the code expires in {minutes} minute{'s' if minutes != 1 else ''}) ...",
              file=self.out, flush=True)

    def poll(self, code: DeviceCode) -> dict:
        """Poll until tokens (the token response) or a final error (:class:`OAuthError`).

        An issuer that cannot be reached or answers 5xx meanwhile (a restart, a database blip) is
        not the end: the person may be approving right now and the issuer keeps what it accepted,
        so polling goes on, backing off (RFC 8628 §3.5), until the code expires."""
        url = self.issuer.endpoint("token_endpoint", "issue tokens")
        interval = code.interval
        deadline = self.clock() + code.expires_in
        outage: CliError | None = None  # the last failure of the current outage
        failures = 0
        while True:
            self.sleep(min(MAX_BACKOFF, interval * 2 ** failures) if failures else interval)
            try:
                body = self.issuer.post_form(url, {"grant_type": DEVICE_GRANT, "device_code": code.device_code},
                                             self.client, "device access token request")
            except OAuthError as exc:
                if exc.code == EXIT_UNREACHABLE:  # temporarily_unavailable, server_error
                    outage = exc
                elif exc.error in ("authorization_pending", "slow_down"):
                    if exc.error == "slow_down":
                        interval += SLOW_DOWN_STEP
                    if failures:
                        self.say("the issuer answers again; still waiting for approval")
                    outage, failures = None, 0
                elif exc.error == "access_denied":
                    raise CliError(exc.code, "the request was denied in the browser"
                                   + (f" ({exc.description})" if exc.description else "")) from None
                elif exc.error == "expired_token":
                    raise CliError(EXIT_EXPIRED, "the code expired before it was approved; run the command "
                                   "again for a new code") from None
                else:
                    raise
            except CliError as exc:
                if exc.code != EXIT_UNREACHABLE:
                    raise
                outage = exc
            else:
                return body
            if outage is not None:
                if not failures:
                    self.say(f"{outage.message}; still waiting for approval")
                failures += 1
            if self.clock() >= deadline:
                if outage is not None:
                    raise outage
                raise CliError(EXIT_EXPIRED, "the code expired before it was approved; run the command again "
                               "for a new code")

    def say(self, line: str) -> None:
        print(f"scitoken-token: {line}", file=self.out, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
