"""The blob cache: verified downloads, hard-linked job folders, size limit, LRU eviction.

The manager is an httpx MockTransport serving blobs from a dict (the real endpoint is
covered by the end-to-end tests); files, links and eviction are real.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import httpx
import pytest

from runner.client import ManagerClient
from runner.errors import WorkspaceError
from runner.workspace import Workspace, parse_size


def blob(text: str, size: int = 1000) -> tuple[str, bytes]:
    data = (text * size).encode()[:size]
    return hashlib.sha256(data).hexdigest(), data


class BlobServer:
    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs
        self.downloads: list[str] = []
        self.damage: set[str] = set()

    def handle(self, request: httpx.Request) -> httpx.Response:
        sha = request.url.path.rsplit("/", 1)[-1]
        self.downloads.append(sha)
        if sha not in self.blobs:
            return httpx.Response(404, json={"code": "blob_not_found", "message": "no such blob"})
        data = self.blobs[sha]
        return httpx.Response(200, content=data[:-1] + b"X" if sha in self.damage else data)

    def client(self) -> ManagerClient:
        return ManagerClient("http://farm", "ff_key", transport=httpx.MockTransport(self.handle))


def job(job_id: int, files: dict[str, str]) -> dict:
    return {"id": job_id, "files": [{"path": p, "sha256": s} for p, s in files.items()]}


def test_job_folders_are_hard_links_into_one_shared_cache(tmp_path: Path) -> None:
    (a, data_a), (b, data_b) = blob("a"), blob("b")
    server = BlobServer({a: data_a, b: data_b})
    workspace = Workspace(tmp_path / "w")
    client = server.client()
    one = workspace.prepare_job(client, job(1, {"shot.blend": a, "tex/wood.png": b}))
    two = workspace.prepare_job(client, job(2, {"other.blend": a}))
    assert (one / "tex" / "wood.png").read_bytes() == data_b
    assert (one / "shot.blend").stat().st_ino == workspace.cached_blob(a).stat().st_ino
    assert (two / "other.blend").stat().st_ino == workspace.cached_blob(a).stat().st_ino
    assert workspace.cached_blob(a).stat().st_nlink == 3
    assert server.downloads == [a, b]  # each blob once, shared by both jobs


def test_a_damaged_download_is_refused_and_not_cached(tmp_path: Path) -> None:
    a, data = blob("a")
    server = BlobServer({a: data})
    server.damage.add(a)
    workspace = Workspace(tmp_path / "w")
    with pytest.raises(WorkspaceError, match="arrived damaged"):
        workspace.fetch_blob(server.client(), a)
    assert not workspace.cached_blob(a).exists()
    assert list(workspace.tmp.iterdir()) == []


def test_least_recently_used_blobs_go_first_and_busy_jobs_keep_theirs(tmp_path: Path) -> None:
    blobs = dict(blob(name) for name in "abcd")
    a, b, c, d = blobs
    server = BlobServer(blobs)
    client = server.client()
    workspace = Workspace(tmp_path / "w", cache_dir=tmp_path / "cache", cache_limit=3000)
    for job_id, sha in enumerate((a, b, c), start=1):
        workspace.prepare_job(client, job(job_id, {"f.blend": sha}))
    now = time.time()
    for age, sha in ((300, a), (200, b), (100, c)):  # a is the oldest use
        os.utime(workspace.cached_blob(sha), (now - age, now - age))
    workspace.fetch_blob(client, a)  # ...until it is used again: now b is the oldest
    workspace.task_started(3)  # a task of job 3 runs: c must stay
    workspace.prepare_job(client, job(4, {"g.blend": d}))
    os.utime(workspace.cached_blob(d), (now - 400, now - 400))  # the oldest, but busy
    workspace.task_started(4)

    evicted = workspace.enforce_limit()
    assert evicted == [b]
    assert workspace.cache_size() == 3000
    assert sorted(p.name for p in workspace.jobs.iterdir()) == ["3", "4"]  # idle jobs' links go
    workspace.task_ended(3)
    workspace.task_ended(4)
    workspace.cache_limit = 1000
    assert workspace.enforce_limit() == [d, c]
    assert [p.name for p in workspace.cached_blobs()] == [a]


@pytest.mark.parametrize(
    ("text", "size"),
    [("500M", 500 * 1024**2), ("20G", 20 * 1024**3), ("1.5T", int(1.5 * 1024**4)),
     ("4096", 4096), ("2GiB", 2 * 1024**3)],
)  # fmt: skip
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_says_what_to_write() -> None:
    with pytest.raises(ValueError, match="write e.g. 500M, 20G or 1T"):
        parse_size("lots")
