"""The CLI's private store: client registrations per issuer and one token record per
(issuer, scope set, audience), under ``$XDG_CONFIG_HOME/scitoken-token/`` (docs/researchers.md).

The directory is 0700 and every file 0600 whatever the umask; each file is replaced atomically
(a temporary file in the same directory, fsync, rename), so a crash never leaves half a refresh
token. A lock file per record serialises renewals: two jobs renewing at once would otherwise
each rotate the refresh token and one of them would keep a token the issuer no longer honours.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterator

from .errors import EXIT_LOCAL_FILE, CliError
from .issuer import Client

APP_DIR = "scitoken-token"


def config_home() -> Path:
    """``$XDG_CONFIG_HOME`` (XDG Base Directory), else ``~/.config``."""
    value = os.environ.get("XDG_CONFIG_HOME")
    return Path(value) if value and os.path.isabs(value) else Path.home() / ".config"


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: a 0600 temporary file beside it, fsync, rename, fsync the
    directory. Readers see the old file or the new one, never part of one."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def private_directory(path: Path) -> Path:
    """Create ``path`` (0700) or check an existing one is ours; tighten its mode if needed."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise CliError(EXIT_LOCAL_FILE, f"cannot create {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise CliError(EXIT_LOCAL_FILE, f"{path} is not a directory of yours; refusing to keep tokens there")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


@dataclass
class TokenRecord:
    """What the CLI keeps for one (issuer, scope set, audience): the client the tokens belong to,
    the refresh token and the current access token with its expiry (seconds since the epoch)."""

    issuer: str
    scope: str
    audience: str | None
    client_id: str
    client_secret: str | None
    refresh_token: str | None
    access_token: str
    expires_at: float | None
    obtained_at: float = 0.0

    def seconds_left(self, now: float | None = None) -> float:
        """Seconds the access token still lives; 0 when its expiry is unknown (renew it)."""
        if self.expires_at is None:
            return 0.0
        return self.expires_at - (time.time() if now is None else now)

    def client(self) -> Client:
        return Client(self.client_id, self.client_secret)


def record_key(issuer: str, scopes: list[str], audience: str | None) -> str:
    """A file name for a (issuer, scope set, audience): scope order does not matter."""
    canonical = json.dumps([issuer, sorted(set(scopes)), audience or ""], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class TokenStore:
    """Files under ``base`` (default ``$XDG_CONFIG_HOME/scitoken-token``)."""

    def __init__(self, base: Path | None = None):
        self.base = base or config_home() / APP_DIR

    def _dir(self, name: str) -> Path:
        private_directory(self.base)
        return private_directory(self.base / name)

    def _read(self, path: Path) -> dict | None:
        try:
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                raise CliError(EXIT_LOCAL_FILE, f"{path} is not a regular file of yours; remove it")
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise CliError(EXIT_LOCAL_FILE, f"cannot read {path}: {exc}; remove it to start afresh") from None
        return data if isinstance(data, dict) else None

    def _write(self, path: Path, data: dict) -> None:
        try:
            atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
        except OSError as exc:
            raise CliError(EXIT_LOCAL_FILE, f"cannot write {path}: {exc.strerror}") from None

    # -- client registrations, one per issuer --------------------------------------------------
    def _client_path(self, issuer: str) -> Path:
        return self._dir("clients") / f"{hashlib.sha256(issuer.encode()).hexdigest()[:32]}.json"

    def client(self, issuer: str) -> Client | None:
        data = self._read(self._client_path(issuer))
        if not data or data.get("issuer") != issuer or not isinstance(data.get("client_id"), str):
            return None
        return Client(data["client_id"], data.get("client_secret"), data.get("scope"), registered=True)

    def save_client(self, issuer: str, client: Client) -> None:
        self._write(self._client_path(issuer), {"issuer": issuer, "client_id": client.client_id,
                                                "client_secret": client.client_secret, "scope": client.scope,
                                                "registered_at": int(time.time())})

    def forget_client(self, issuer: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._client_path(issuer).unlink()

    # -- token records -------------------------------------------------------------------------
    def _record_path(self, key: str) -> Path:
        return self._dir("tokens") / f"{key}.json"

    def record(self, key: str) -> TokenRecord | None:
        data = self._read(self._record_path(key))
        names = {f.name for f in fields(TokenRecord)}
        try:
            return TokenRecord(**{k: v for k, v in data.items() if k in names}) if data else None
        except TypeError:  # a record from another version: start afresh
            return None

    def save(self, key: str, record: TokenRecord) -> Path:
        path = self._record_path(key)
        self._write(path, asdict(record))
        return path

    def forget(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._record_path(key).unlink()

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock on the record ``key`` (``flock``; released if the process dies)."""
        path = self._dir("tokens") / f"{key}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise CliError(EXIT_LOCAL_FILE, f"cannot open {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
