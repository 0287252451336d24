"""The Blenders a runner can render with: its own, and builds it downloads from the manager.

A job records the Blender version its scene was saved with (``major.minor``, read from the
.blend header). The runner renders it with a local Blender of that version; failing that,
with a build of that version the manager stores (downloaded once, verified by SHA-256,
unpacked and kept under ``<workdir>/blender-versions/``); failing that, it refuses the task
and says which versions it has.
"""

from __future__ import annotations

import logging
import platform
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from runner.blender import BlenderBackend, BlenderError, detect_backend
from runner.client import ManagerClient
from runner.errors import ManagerRejected
from shared.archives import UnsafeArchive, unpack
from shared.hashing import sha256_file

log = logging.getLogger("framefarm.runner")


class BlenderUnavailable(BlenderError):
    """No local Blender and no build on the manager matches the scene's version."""


def this_platform() -> str:
    """The platform name builds are stored under, e.g. ``linux-x86_64``."""
    return f"{sys.platform}-{platform.machine().lower()}"


def version_key(version: str) -> str:
    """``5.0.1`` → ``5.0``: files record only major.minor, and so does matching."""
    return ".".join(version.split(".")[:2])


class BlenderShelf:
    def __init__(
        self,
        local: list[BlenderBackend],
        *,
        client: ManagerClient | None = None,
        folder: Path | None = None,
        platform_name: str | None = None,
    ) -> None:
        self.local = list(local)
        self.client = client
        self.folder = folder
        self.platform = platform_name or this_platform()
        self.offered: list[dict[str, Any]] = []
        self._downloaded: dict[str, BlenderBackend] = {}
        self._lock = threading.Lock()

    def refresh_offered(self) -> None:
        """Learn which builds the manager stores for this platform."""
        if self.client is None:
            return
        try:
            builds = self.client.blender_versions()
        except ManagerRejected as exc:  # a manager without stored builds (an older one)
            log.warning("the manager lists no Blender builds: %s", exc.message)
            return
        self.offered = [b for b in builds if b.get("platform") == self.platform]

    def versions(self) -> list[str]:
        keys = {version_key(b.version) for b in self.local}
        keys |= {version_key(str(b["version"])) for b in self.offered}
        return sorted(keys, key=lambda v: tuple(int(p) for p in v.split(".") if p.isdigit()))

    def default_info(self) -> dict[str, str] | None:
        if not self.local:
            return None
        first = self.local[0]
        return {"kind": first.kind, "version": first.version, "path": first.path}

    def describe(self) -> str:
        return ", ".join(b.label for b in self.local) or "no local Blender"

    def for_version(self, version: str) -> BlenderBackend:
        """The backend for a scene saved by ``version`` (any local one when it is unknown)."""
        if not version:
            if not self.local:
                raise BlenderUnavailable("the job does not say its Blender version")
            return self.local[0]
        key = version_key(version)
        for backend in self.local:
            if version_key(backend.version) == key:
                return backend
        with self._lock:
            if key in self._downloaded:
                return self._downloaded[key]
            build = next((b for b in self.offered if version_key(str(b["version"])) == key), None)
            if build is None:
                self.refresh_offered()
                build = next(
                    (b for b in self.offered if version_key(str(b["version"])) == key), None
                )
            if build is None:
                raise BlenderUnavailable(
                    f"the scene was saved with Blender {version}; this runner has "
                    f"{self.describe()} and the manager stores no {key} build for "
                    f"{self.platform} (add one with `framefarm manager blender add`)"
                )
            backend = self._install(build)
            self._downloaded[key] = backend
            return backend

    def _install(self, build: dict[str, Any]) -> BlenderBackend:
        """Download, verify and unpack a build once; later runs find it unpacked."""
        if self.client is None or self.folder is None:
            raise BlenderUnavailable("this runner cannot download Blender builds")
        sha256 = str(build["sha256"])
        target = self.folder / sha256[:16]
        entry = target / str(build["entry"])
        if not entry.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.folder, prefix="download-") as temp:
                archive = Path(temp) / str(build["filename"])
                log.info("downloading Blender %s (%s bytes)", build["version"], build["size"])
                try:
                    self.client.download_blender(sha256, archive)
                except ManagerRejected as exc:
                    raise BlenderUnavailable(f"cannot download Blender: {exc.message}") from exc
                actual = sha256_file(archive)
                if actual != sha256:
                    raise BlenderUnavailable(
                        f"the Blender {build['version']} download arrived damaged "
                        f"(SHA-256 {actual}, expected {sha256}); the task will be retried"
                    )
                unpacked = Path(temp) / "unpacked"
                try:
                    unpack(archive, unpacked)
                except (UnsafeArchive, OSError, ValueError) as exc:
                    raise BlenderUnavailable(
                        f"cannot unpack the Blender {build['version']} build: {exc}"
                    ) from exc
                shutil.rmtree(target, ignore_errors=True)
                unpacked.rename(target)
        backend = detect_backend(str(entry))
        if version_key(backend.version) != version_key(str(build["version"])):
            raise BlenderUnavailable(
                f"the manager's Blender {build['version']} build runs as {backend.version}; "
                "store it again with the right --version"
            )
        log.info("Blender %s ready: %s", build["version"], backend.label)
        return backend
