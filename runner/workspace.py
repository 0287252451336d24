"""The runner's workspace: blobs cached by hash, job folders built from them.

The cache is shared by every job: a blob is downloaded once, verified against its SHA-256,
and job folders are hard links to it (a copy where the file system cannot link). With a
size limit, the least recently used blobs go first once a task ends — never a blob of a
job that a slot is working on. A blob's last use is its file's modification time, touched
on every use, so the order survives a restart.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from runner.client import ManagerClient
from runner.errors import WorkspaceError
from shared.hashing import is_sha256, sha256_file

log = logging.getLogger("framefarm.runner")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``500M``, ``20G``, ``1.5T`` or plain bytes (powers of 1024)."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size; write e.g. 500M, 20G or 1T")
    power = " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * 1024**power)


class Workspace:
    def __init__(
        self, root: Path, *, cache_dir: Path | None = None, cache_limit: int | None = None
    ) -> None:
        self.root = root.expanduser().resolve()
        self.cache = (cache_dir or self.root / "cache").expanduser().resolve()
        self.cache_limit = cache_limit
        self.jobs = self.root / "jobs"
        self.tmp = self.cache / ".incoming"  # beside the cache, so a finished blob is renamed
        for folder in (self.cache, self.jobs, self.tmp, self.root / "blender-home"):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._job_blobs: dict[int, set[str]] = {}
        self._busy_jobs: Counter[int] = Counter()

    @property
    def blender_home(self) -> Path:
        return self.root / "blender-home"

    def cached_blob(self, sha256: str) -> Path:
        return self.cache / sha256[:2] / sha256

    def fetch_blob(self, client: ManagerClient, sha256: str) -> Path:
        """The blob from the cache, downloading and verifying it first if needed."""
        if not is_sha256(sha256):
            raise WorkspaceError(f"{sha256!r} is not a SHA-256")
        target = self.cached_blob(sha256)
        if target.is_file():
            os.utime(target)  # last use, for least-recently-used eviction
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="blob-")
        os.close(fd)
        temp = Path(name)
        try:
            client.download_blob(sha256, temp)
            actual = sha256_file(temp)
            if actual != sha256:
                raise WorkspaceError(f"blob {sha256} arrived damaged (got {actual}); will retry")
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        return target

    def task_started(self, job_id: int) -> None:
        with self._lock:
            self._busy_jobs[job_id] += 1

    def task_ended(self, job_id: int) -> None:
        with self._lock:
            self._busy_jobs[job_id] -= 1
            if self._busy_jobs[job_id] <= 0:
                del self._busy_jobs[job_id]

    def prepare_job(self, client: ManagerClient, job: dict[str, Any]) -> Path:
        """Materialise the job's files under ``jobs/<id>/files`` (hard links into the cache)."""
        job_id = int(job["id"])
        folder = self.jobs / str(job_id) / "files"
        with self._lock:  # two slots on one job build its folder once
            self._job_blobs[job_id] = {entry["sha256"] for entry in job["files"]}
            for entry in job["files"]:
                source = self.fetch_blob(client, entry["sha256"])
                dest = folder / _safe_relative(entry["path"])
                if dest.is_file() and dest.stat().st_ino == source.stat().st_ino:
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.unlink(missing_ok=True)
                try:
                    os.link(source, dest)
                except OSError:
                    shutil.copy2(source, dest)
        return folder

    def task_output_dir(self, job_id: int, task_id: int) -> Path:
        folder = self.jobs / str(job_id) / f"task-{task_id}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        return folder

    def remove_task_dirs(self, job_id: int, task_ids: Iterable[int]) -> None:
        for task_id in task_ids:
            shutil.rmtree(self.jobs / str(job_id) / f"task-{task_id}", ignore_errors=True)

    def cached_blobs(self) -> list[Path]:
        return [p for p in self.cache.glob("??/*") if p.is_file() and is_sha256(p.name)]

    def cache_size(self) -> int:
        return sum(p.stat().st_size for p in self.cached_blobs())

    def enforce_limit(self) -> list[str]:
        """Evict least recently used blobs until the cache fits its limit; their hashes."""
        if self.cache_limit is None:
            return []
        with self._lock:
            busy = set().union(*(self._job_blobs.get(j, set()) for j in self._busy_jobs))
            blobs = sorted(self.cached_blobs(), key=lambda p: p.stat().st_mtime)
            total = sum(p.stat().st_size for p in blobs)
            if total <= self.cache_limit:
                return []
            # Job folders of idle jobs only hold links; drop them so evicting frees space
            # (they are rebuilt from the cache, or downloaded again, when the job returns).
            for folder in self.jobs.iterdir():
                if folder.name.isdigit() and int(folder.name) not in self._busy_jobs:
                    shutil.rmtree(folder, ignore_errors=True)
                    self._job_blobs.pop(int(folder.name), None)
            evicted = []
            for blob in blobs:
                if total <= self.cache_limit:
                    break
                if blob.name in busy:
                    continue
                total -= blob.stat().st_size
                blob.unlink(missing_ok=True)
                evicted.append(blob.name)
            if evicted:
                log.info(
                    "cache over %d bytes: evicted %d least recently used blobs",
                    self.cache_limit,
                    len(evicted),
                )
            return evicted


def _safe_relative(path: str) -> Path:
    parts = PurePosixPath(path).parts
    if not parts or PurePosixPath(path).is_absolute() or any(p in ("..", ".") for p in parts):
        raise WorkspaceError(f"job file path {path!r} is not a safe relative path")
    return Path(*parts)
