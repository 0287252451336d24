"""The manager's secret key, kept out of the database, and the keys derived from it.

The key is ``FRAMEFARM_SECRET_KEY`` when set, else ``<storage>/secret.key`` (32 random bytes,
created on first use with mode 0600). Managers that share a storage folder or the variable
share the key. From it come the session-cookie signing key, the CSRF key, the OAuth-state
key and the key that encrypts OAuth client secrets at rest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import threading
from functools import cached_property
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from manager.errors import FarmError

log = logging.getLogger(__name__)

KEY_FILE_NAME = "secret.key"
ENCRYPTED_PREFIX = "fernet:"


class SecretKeyMismatch(FarmError):
    """A secret was encrypted with another secret key than this manager's."""

    status_code = 500
    code = "secret_key_mismatch"


class Keyring:
    """Derives purpose-bound keys from one secret, loading or creating it on first use."""

    def __init__(self, *, secret_key: SecretStr | None, key_file: Path) -> None:
        self._secret_key = secret_key
        self.key_file = key_file
        self._lock = threading.Lock()

    @property
    def source(self) -> str:
        return "FRAMEFARM_SECRET_KEY" if self._secret_key else str(self.key_file)

    @cached_property
    def _master(self) -> bytes:
        if self._secret_key is not None:
            return hashlib.sha256(self._secret_key.get_secret_value().encode()).digest()
        with self._lock:
            return _load_or_create_key_file(self.key_file)

    def derive(self, purpose: str) -> bytes:
        """32 bytes for one purpose; knowing one derived key reveals nothing of the others."""
        return hmac.new(self._master, f"framefarm {purpose}".encode(), hashlib.sha256).digest()

    @cached_property
    def _fernet(self) -> Fernet:
        return Fernet(base64.urlsafe_b64encode(self.derive("secret encryption")))

    def encrypt(self, plaintext: str) -> str:
        return ENCRYPTED_PREFIX + self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, stored: str, *, what: str) -> str:
        """The plaintext of ``encrypt``'s output; ``what`` names it in the error."""
        if not stored.startswith(ENCRYPTED_PREFIX):
            raise SecretKeyMismatch(f"{what} is not stored encrypted; set it again")
        try:
            return self._fernet.decrypt(stored[len(ENCRYPTED_PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SecretKeyMismatch(
                f"{what} was encrypted with another secret key than this manager's "
                f"({self.source}); set it again, or restore the old key"
            ) from None


def _load_or_create_key_file(path: Path) -> bytes:
    """Read the key file, or create it atomically (several managers may race to)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.link(temp, path)  # fails if another process got there first; theirs wins
            log.info("created the manager's secret key in %s", path)
        except FileExistsError:
            pass
        finally:
            temp.unlink(missing_ok=True)
    if path.stat().st_mode & 0o077:
        log.warning("%s is readable by other users; chmod 600 it", path)
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 32:
        raise RuntimeError(f"{path} does not hold a secret key (64 hex digits); remove it")
    return key
