"""A full disk during an upload: a clear 507, nothing corrupted, and it works once there is room.

The manager's storage lives on a real 3 MiB tmpfs, so the disk really fills (mounting needs
root, as CI has).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from manager.models import Blob
from manager.settings import ManagerSettings
from tests.manager.conftest import Farm
from tests.reliability.test_bad_input import rows


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
        pytest.fail(f"could not mount a tmpfs: {mounted.stderr}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


@pytest.fixture
def manager_settings(small_disk: Path, database_url: str) -> ManagerSettings:
    return ManagerSettings(db=database_url, storage=small_disk / "storage", runner_timeout=30)


def put(farm: Farm, data: bytes):  # type: ignore[no-untyped-def]
    sha = hashlib.sha256(data).hexdigest()
    return sha, farm.client.put(f"/api/blobs/{sha}", headers=farm.auth(farm.user_key), content=data)


def test_a_full_disk_is_507_keeps_what_was_accepted_and_recovers(farm: Farm, small_disk: Path):
    storage = farm.settings.storage
    kept = os.urandom(256 * 1024)
    kept_sha, answer = put(farm, kept)
    assert answer.status_code == 201, answer.text

    filler = small_disk / "other-data"
    filler.write_bytes(b"\0" * (2 * 1024 * 1024))
    big = os.urandom(1024 * 1024)
    big_sha, answer = put(farm, big)
    assert answer.status_code == 507, answer.text
    assert answer.json()["code"] == "storage_full"
    assert "free space" in answer.json()["message"]
    assert int(answer.headers["Retry-After"]) > 0

    assert [blob.sha256 for blob in rows(farm, Blob)] == [kept_sha]
    assert not any((storage / "temp").iterdir())
    stored = storage / "blobs" / kept_sha[:2] / kept_sha
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == kept_sha

    filler.unlink()
    big_sha, answer = put(farm, big)
    assert answer.status_code == 201, answer.text
    missing = farm.client.post(
        "/api/blobs/missing",
        headers=farm.auth(farm.user_key),
        json={
            "blobs": [
                {"sha256": h, "size": n} for h, n in ((kept_sha, len(kept)), (big_sha, len(big)))
            ]
        },
    )
    assert missing.json() == {"missing": []}
