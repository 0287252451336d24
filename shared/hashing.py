"""Content hashing: every file the farm moves is named by its SHA-256."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

CHUNK_SIZE = 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def is_sha256(text: str) -> bool:
    """True for a lower-case hex SHA-256 digest."""
    return bool(_SHA256.match(text))
