"""The artist's API key, kept in a file only its owner can read (no bpy).

Blender saves add-on preferences in ``userpref.blend`` in clear text, so the key lives in
its own file in Blender's user config folder instead, written with mode 0600 (on Windows
the folder is the user's own profile). The preferences show it masked through a property
whose getter and setter call this store, so Blender never saves the key itself.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

FILE_NAME = "credentials.json"


class CredentialsError(Exception):
    """The credentials file could not be read or written; the message says which and why."""


class ApiKeyStore:
    """One API key in ``folder/credentials.json``; read once, then kept in memory."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / FILE_NAME
        self._key: str | None = None

    def __repr__(self) -> str:
        return f"ApiKeyStore({str(self.path)!r})"  # never the key

    def load(self) -> str:
        """The stored key, or "" when none is stored (or the file is unreadable)."""
        if self._key is None:
            self._key = self._read()
        return self._key

    def has_key(self) -> bool:
        return bool(self.load())

    def save(self, key: str) -> None:
        """Store ``key`` (stripped); an empty key forgets the stored one."""
        key = key.strip()
        if not key:
            self.forget()
            return
        partial = self.path.with_name(f".{FILE_NAME}.{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Created 0600 before the key is written, then moved over the old file at once.
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                if hasattr(os, "fchmod"):
                    os.fchmod(file.fileno(), 0o600)  # a leftover file may have other bits
                json.dump({"api_key": key}, file)
            os.replace(partial, self.path)
        except OSError as error:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            raise CredentialsError(
                f"could not store the API key in {self.path}: {error}"
            ) from error
        self._key = key

    def forget(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as error:
            raise CredentialsError(f"could not remove {self.path}: {error}") from error
        self._key = ""

    def _read(self) -> str:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError:  # none stored yet, or unreadable: the artist pastes the key again
            return ""
        try:
            key = json.loads(text)["api_key"]
        except (ValueError, KeyError, TypeError):
            return ""
        return key.strip() if isinstance(key, str) else ""


def migrate_key(store: ApiKeyStore, old_key: str) -> None:
    """Keep a key older versions saved in the preferences, unless one is stored already
    (newer than it); the caller then clears the old one."""
    if old_key.strip() and not store.has_key():
        store.save(old_key)
