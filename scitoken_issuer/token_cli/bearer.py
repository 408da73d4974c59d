"""Where the access token goes: the file WLCG Bearer Token Discovery reads (docs/researchers.md).

The discovery order (WLCG Bearer Token Discovery, as XRootD, gfal2, davix and HTCondor read it)
is ``$BEARER_TOKEN`` (a value, not a file), ``$BEARER_TOKEN_FILE``, ``$XDG_RUNTIME_DIR/bt_u<uid>``,
``/tmp/bt_u<uid>``. The CLI writes the first file of that list. The file is 0600 and replaced
atomically. Before writing, an existing entry at the path must be a regular file of ours: a
symbolic link or another user's file there (in ``/tmp`` anyone may plant one) is refused, never
followed or overwritten.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

from .errors import EXIT_LOCAL_FILE, CliError
from .store import atomic_write


def token_path(environ: dict | None = None, uid: int | None = None) -> Path:
    """The file the token goes to, by the discovery order above."""
    env = os.environ if environ is None else environ
    uid = os.getuid() if uid is None else uid
    if env.get("BEARER_TOKEN_FILE"):
        return Path(env["BEARER_TOKEN_FILE"])
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / f"bt_u{uid}"
    return Path("/tmp") / f"bt_u{uid}"


def check_target(path: Path) -> None:
    """Refuse (EXIT_LOCAL_FILE, saying why) unless ``path`` is absent or a regular file of ours."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CliError(EXIT_LOCAL_FILE, f"cannot examine {path}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise CliError(EXIT_LOCAL_FILE, f"{path} is a symbolic link; refusing to write a token through it "
                       "(someone may be trying to capture it): remove it or set BEARER_TOKEN_FILE")
    if info.st_uid != os.getuid():
        raise CliError(EXIT_LOCAL_FILE, f"{path} belongs to uid {info.st_uid}, not you; refusing to write a "
                       "token there (someone may be trying to capture it): remove it or set BEARER_TOKEN_FILE")
    if not stat.S_ISREG(info.st_mode):
        raise CliError(EXIT_LOCAL_FILE, f"{path} is not a regular file; refusing to write a token there")


def write_token(path: Path, token: str) -> None:
    """Write ``token`` (and a newline) to ``path``, 0600, atomically, after :func:`check_target`."""
    check_target(path)
    try:
        atomic_write(path, token + "\n")
    except OSError as exc:
        raise CliError(EXIT_LOCAL_FILE, f"cannot write the token to {path}: {exc.strerror}") from None


def read_token(path: Path) -> str | None:
    """The token in ``path`` if it is a regular file of ours, else None."""
    try:
        check_target(path)
        return path.read_text(encoding="utf-8").strip() or None
    except (CliError, OSError):
        return None


def decode(token: str) -> tuple[dict, dict] | None:
    """(header, claims) of a JWT, WITHOUT checking its signature: for showing it only."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header, claims = (json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2])
    except (ValueError, UnicodeDecodeError):
        return None
    return (header, claims) if isinstance(header, dict) and isinstance(claims, dict) else None


def expiry(token: str) -> float | None:
    """The ``exp`` of a JWT (unverified), if it has a numeric one."""
    decoded = decode(token)
    exp = decoded[1].get("exp") if decoded else None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None
