"""A large blob upload streams to disk: the manager's resident memory hardly grows.

Measured with the upload benchmark's sampler, which is first shown to see a process that
does hold that much memory (so the streaming check cannot pass blind).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.common import running_manager
from benchmarks.upload import MemorySampler

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
UPLOAD_MIB = 96
HOLD = """
import sys
sys.stdin.readline()
held = b"x" * (int(sys.argv[1]) * 1024 * 1024)
print("holding", flush=True)
sys.stdin.readline()
"""


def body() -> Iterator[bytes]:
    for index in range(UPLOAD_MIB):
        yield index.to_bytes(8, "big") * (MIB // 8)


def test_the_sampler_sees_a_process_holding_the_upload_in_memory():
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(UPLOAD_MIB)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        sampler = MemorySampler({"holder": holder.pid})
        with sampler.running():
            holder.stdin.write("allocate\n")
            holder.stdin.flush()
            assert holder.stdout.readline() == "holding\n"
        holder.stdin.write("done\n")
    assert sampler.growth_kib("holder") >= UPLOAD_MIB * 1024 * 0.95


def test_a_blob_upload_streams_to_disk(tmp_path: Path):
    digest = hashlib.sha256()
    for chunk in body():
        digest.update(chunk)
    sha = digest.hexdigest()
    with running_manager(tmp_path / "manager") as manager:
        headers = {
            "Authorization": f"Bearer {manager.user_key}",
            "Content-Length": str(UPLOAD_MIB * MIB),
        }
        sampler = MemorySampler({"manager": manager.process.pid})
        with sampler.running():
            answer = httpx.put(
                f"{manager.url}/api/blobs/{sha}", content=body(), headers=headers, timeout=120
            )
        assert answer.status_code == 201, answer.text
        stored = tmp_path / "manager" / "storage" / "blobs" / sha[:2] / sha
        assert stored.stat().st_size == UPLOAD_MIB * MIB
        growth_mib = sampler.growth_kib("manager") / 1024
        assert growth_mib < UPLOAD_MIB / 4, f"the manager grew by {growth_mib:.0f} MiB"
