"""Access tokens shared by the processes of one machine and user: an encrypted file per credentials.

Every Airflow task try runs in a fresh process, so a process-wide cache starts empty each time. The
hook therefore keeps the connection's token in a file too: one file per ``ClientSettings.cache_key``
in a directory only the user can open (0700, files 0600), encrypted with a key derived from the
client secret (HKDF-SHA256, then Fernet), so only a holder of the secret can read it. A lock file
(``fcntl.flock``) makes processes that need a token at the same moment ask for one, once; it is
waited for no longer than the request timeout (or the current wait's deadline).

Anything that goes wrong with the file (a directory that cannot be written, a corrupt or foreign
file) is logged once and the hook goes on with its in-process cache: the cache never fails a task.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import math
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_volteras._core.settings import ClientSettings

log = logging.getLogger(__name__)

#: Directories whose failure was already logged (one warning per directory and process).
_WARNED: set[str] = set()
#: Pause between two tries of a lock another process holds.
LOCK_POLL_SECONDS = 0.05


class LockTimeout(TimeoutError):
    """Another process held the token file's lock past the time this one could wait."""


@dataclass(frozen=True)
class FileToken:
    access_token: str
    refresh_token: str | None
    expires_at: float
    """Wall-clock epoch seconds (processes do not share a monotonic clock)."""
    lifetime: float


def default_directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "airflow-provider-volteras"


class TokenFile:
    """The shared token of one connection's credentials. Use :meth:`locked` around read, renew, write."""

    def __init__(self, settings: ClientSettings, logger: Any = None) -> None:
        self.settings = settings
        self.logger = logger
        self.directory = Path(settings.token_cache_dir) if settings.token_cache_dir else default_directory()
        self.path = self.directory / f"{settings.cache_key}.token"
        self.lock_path = self.directory / f"{settings.cache_key}.lock"

    def _fernet(self) -> object:
        from cryptography.fernet import Fernet
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=self.settings.cache_key.encode(),
            info=b"airflow-provider-volteras token cache v1",
        ).derive(self.settings.client_secret.encode())
        return Fernet(base64.urlsafe_b64encode(key))

    def _prepare(self) -> None:
        """Create the directory (0700) when missing; an existing one is used as it is, never chmod-ed,
        and refused when it belongs to another user or others (group or world) may write to it."""
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.directory.mkdir(mode=0o700)
        except FileExistsError:
            pass
        else:
            os.chmod(self.directory, 0o700)  # ours: the umask may have taken bits away, never added
            return
        info = self.directory.stat()
        if not stat.S_ISDIR(info.st_mode):
            raise NotADirectoryError(f"{self.directory} is not a directory")
        if info.st_uid != os.getuid():
            raise PermissionError(f"{self.directory} belongs to another user")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise PermissionError(
                f"{self.directory} may be written by other users (mode {stat.S_IMODE(info.st_mode):o})"
            )

    @contextlib.contextmanager
    def locked(self, until: float | None = None) -> Iterator[None]:
        """Hold the lock of this credentials' file; raises ``OSError`` when it cannot be used.

        Waits for another process's lock until ``until`` (epoch seconds; without it, the request
        timeout from now), then raises :class:`LockTimeout` (an ``OSError``): a process that holds the
        lock while its own token request trickles cannot hold this one past its deadline.
        """
        self._prepare()
        if until is None:
            until = time.time() + self.settings.timeout
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    left = until - time.time()
                    if left <= 0:
                        raise LockTimeout("another process held the token file's lock too long") from None
                    time.sleep(min(LOCK_POLL_SECONDS, left))
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def read(self) -> FileToken | None:
        """The stored token, or ``None`` (no file, or a file this secret cannot read: it will be replaced)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        from cryptography.fernet import InvalidToken

        try:
            plain = self._fernet().decrypt(data)  # type: ignore[attr-defined]
            body = json.loads(plain)
            token = FileToken(
                access_token=str(body["access_token"]),
                refresh_token=body.get("refresh_token") if isinstance(body.get("refresh_token"), str) else None,
                expires_at=float(body["expires_at"]),
                lifetime=float(body["lifetime"]),
            )
        except (InvalidToken, ValueError, KeyError, TypeError):
            warn_once(self.directory, f"the token cache file {self.path.name} is unreadable; replacing it", self.logger)
            return None
        if not token.access_token or not math.isfinite(token.expires_at) or not math.isfinite(token.lifetime):
            return None
        return token

    def write(self, token: FileToken) -> None:
        body = json.dumps(
            {
                "access_token": token.access_token,
                "refresh_token": token.refresh_token,
                "expires_at": token.expires_at,
                "lifetime": token.lifetime,
            }
        ).encode()
        encrypted = self._fernet().encrypt(body)  # type: ignore[attr-defined]
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".token-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(encrypted)
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise


def warn_once(directory: Path, message: str, logger: Any = None) -> None:
    key = f"{directory}:{message}"
    if key not in _WARNED:
        _WARNED.add(key)
        (logger or log).warning("Volteras token cache: %s; using this process's own cache.", message)


def remaining(token: FileToken, now: float | None = None) -> float:
    return token.expires_at - (time.time() if now is None else now)
