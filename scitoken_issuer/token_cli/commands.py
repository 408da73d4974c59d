"""``scitoken-token [get] | scopes``: arguments, configuration, and the two commands.

Defaults come from the command line, then the environment (``SCITOKEN_ISSUER``), then
``$XDG_CONFIG_HOME/scitoken-token/config`` (an INI file with a ``[scitoken-token]`` section:
``issuer``, ``scope``, ``audience``, ``minsecs``, ``client_id``, ``client_secret``).
Exit codes are in :mod:`.errors` and docs/researchers.md.
"""

from __future__ import annotations

import argparse
import configparser
import ipaddress
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

from .acquire import Acquirer, Outcome, TokenRequest, with_base_scopes
from .bearer import decode, read_token, token_path, write_token
from .errors import EXIT_CODES, EXIT_INTERRUPTED, EXIT_USAGE, CliError
from .scopes_listing import fetch_listing, print_listing
from .store import APP_DIR, TokenStore, config_home

COMMANDS = ("get", "scopes")
HOW = {"stored": "still valid, not renewed", "renewed": "renewed with the refresh token",
       "login": "new login"}


class Parser(argparse.ArgumentParser):
    """Bad arguments end in one line on stderr and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        print(f"scitoken-token: bad arguments: {message} (see scitoken-token --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> Parser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-i", "--issuer", help="issuer URL (default: $SCITOKEN_ISSUER, then the config file)")
    common.add_argument("--client-id", help="use this client instead of registering one")
    common.add_argument("--client-secret", help="the secret of --client-id (omit for a public client)")
    common.add_argument("--public-client", action="store_true",
                        help="register as a public client (no secret) instead of a confidential one")
    common.add_argument("--minsecs", type=int, help="renew when the token has fewer seconds left (default 60)")
    common.add_argument("--no-device", "--non-interactive", dest="device", action="store_false",
                        help="never start a device login: fail (exit 6) when one would be needed")
    codes = "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())
    parser = Parser(prog="scitoken-token", formatter_class=argparse.RawDescriptionHelpFormatter,
                    description="Get a SciToken/WLCG access token through the device flow and keep it "
                                "renewed where WLCG Bearer Token Discovery finds it.",
                    epilog=f"exit codes:\n{codes}\n\nDocumentation: docs/researchers.md")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    get = sub.add_parser("get", parents=[common], help="get or renew a token (the default command)")
    get.add_argument("-s", "--scope", action="append",
                     help="scopes to ask for (repeat or space-separate); openid offline_access are always added")
    get.add_argument("-a", "--audience", help="the audience the token should carry (aud)")
    get.add_argument("--show", action="store_true", help="print the token's decoded claims (not verified)")
    get.add_argument("-q", "--quiet", action="store_true", help="no success line on stderr")
    scopes = sub.add_parser("scopes", parents=[common], help="list the storage scopes you may ask for")
    scopes.add_argument("--path", default="/", help="start below this storage path (default /)")
    scopes.add_argument("--depth", type=int, help="directory levels to list (the issuer bounds it)")
    scopes.add_argument("--json", action="store_true", help="print the issuer's JSON answer")
    return parser


def load_config(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise CliError(EXIT_USAGE, f"cannot read {path}: {exc}") from None
    return dict(parser["scitoken-token"]) if parser.has_section("scitoken-token") else {}


def check_issuer(url: str | None) -> str:
    """An https URL, or http on a loopback address (a token must never cross a network in clear)."""
    if not url:
        raise CliError(EXIT_USAGE, "no issuer: give --issuer, set SCITOKEN_ISSUER, or add issuer= to "
                       f"{config_home() / APP_DIR / 'config'}")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise CliError(EXIT_USAGE, f"--issuer must be an https URL, got {url!r}")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise CliError(EXIT_USAGE, f"--issuer {url} is plain http; only https is accepted (http only for a "
                       "loopback address such as 127.0.0.1)")
    return url.strip().rstrip("/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_request(args: argparse.Namespace, config: dict[str, str], environ) -> TokenRequest:
    issuer = check_issuer(args.issuer or environ.get("SCITOKEN_ISSUER") or config.get("issuer"))
    scope_args = getattr(args, "scope", None)
    words = " ".join(scope_args) if scope_args else config.get("scope", "")
    scopes = words.split()
    bad = next((s for s in scopes if not s.isprintable() or len(s) > 1100), None)
    if bad is not None:
        raise CliError(EXIT_USAGE, f"not a scope: {bad[:60]!r}")
    minsecs = args.minsecs if args.minsecs is not None else config.get("minsecs", "60")
    try:
        minsecs = int(minsecs)
    except ValueError:
        raise CliError(EXIT_USAGE, f"--minsecs must be a whole number of seconds, got {minsecs!r}") from None
    if minsecs < 0:
        raise CliError(EXIT_USAGE, "--minsecs must not be negative")
    client_id = args.client_id or config.get("client_id")
    secret = args.client_secret or (config.get("client_secret") if client_id == config.get("client_id") else None)
    if secret and not client_id:
        raise CliError(EXIT_USAGE, "--client-secret needs --client-id")
    return TokenRequest(issuer=issuer, scopes=with_base_scopes(scopes),
                        audience=getattr(args, "audience", None) or config.get("audience") or None,
                        minsecs=minsecs, client_id=client_id or None, client_secret=secret or None,
                        public=args.public_client, device=args.device)


def run_get(args: argparse.Namespace, request: TokenRequest, acquirer: Acquirer, environ) -> int:
    outcome: Outcome = acquirer.acquire(request)
    token = outcome.record.access_token
    path = token_path(environ)
    if read_token(path) != token:  # unchanged token, unchanged file (and inode)
        write_token(path, token)
    if environ.get("BEARER_TOKEN"):
        acquirer.say(f"warning: BEARER_TOKEN is set in your environment; clients read it before {path}")
    if not args.quiet:
        left = int(outcome.record.seconds_left())
        life = f"valid for {left // 60} min {left % 60} s" if outcome.record.expires_at else "expiry unknown"
        acquirer.say(f"access token in {path} ({life}; {HOW[outcome.how]})")
    if args.show:
        decoded = decode(token)
        if decoded is None:
            acquirer.say("the access token is not a JWT; nothing to show")
        else:
            print("(claims decoded WITHOUT checking the signature: for reading only)", file=sys.stderr)
            print(json.dumps({"header": decoded[0], "claims": decoded[1]}, indent=2, sort_keys=True))
            exp = decoded[1].get("exp")
            if isinstance(exp, (int, float)):
                print(f"expires {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(exp))}", file=sys.stderr)
    return 0


def run_scopes(args: argparse.Namespace, request: TokenRequest, acquirer: Acquirer) -> int:
    if args.depth is not None and args.depth < 0:
        raise CliError(EXIT_USAGE, "--depth must not be negative")
    body = fetch_listing(acquirer, request, args.path, args.depth)
    if args.json:
        print(json.dumps(body, indent=2, sort_keys=True))
    else:
        print_listing(body, sys.stdout)
    return 0


def main(argv: Sequence[str] | None = None, environ=None) -> int:
    environ = os.environ if environ is None else environ
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv.insert(0, "get")
    args = build_parser().parse_args(argv)
    try:
        config = load_config(config_home() / APP_DIR / "config")
        request = token_request(args, config, environ)
        acquirer = Acquirer(TokenStore())
        if args.command == "scopes":
            return run_scopes(args, request, acquirer)
        return run_get(args, request, acquirer, environ)
    except CliError as exc:
        print(f"scitoken-token: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("scitoken-token: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader of our output left early (`scitoken-token --show | head`): everything else is
        # done by then (the token is written before it is shown; requests wraps socket errors), so
        # this is success, not a traceback; stdout is pointed at /dev/null for the exit-time flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
