"""Submitting a job, as a state machine stepped a little at a time (no bpy).

pack → hash → ask which blobs are missing → upload them → submit the manifest. Each call
to ``step()`` does a bounded slice of work (one chunk hashed or sent), so the modal
operator can call it on every timer tick and Blender's UI stays responsive; packing runs
in a thread because blender-asset-tracer cannot be sliced (it touches no bpy). An
interrupted or canceled upload is resumed by submitting again: the hashes are checked
again and only what the manager still lacks is sent.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from . import client
from .blob_upload import BlobUpload
from .packing import Pack, PackedFile, PackingError, pack_blend

CHUNK_BYTES = 1024 * 1024


class Phase(str, Enum):  # noqa: UP042 - StrEnum is 3.11+; Blender 3.x runs Python 3.10
    PACKING = "packing"
    HASHING = "hashing"
    CHECKING = "checking"
    UPLOADING = "uploading"
    SUBMITTING = "submitting"
    DONE = "done"
    FAILED = "failed"
    CANCELED = "canceled"


FINISHED = (Phase.DONE, Phase.FAILED, Phase.CANCELED)


@dataclass
class SubmitRequest:
    address: client.ManagerAddress
    blend: Path
    """The saved .blend to pack (the artist's, or a copy of it)."""
    job: dict[str, Any]
    """``type``, ``settings``, ``type_etag``, ``name``, ``priority``… for /api/jobs/manifest."""
    staging: Path
    """A folder this submission owns; removed at the end."""
    blend_name: str | None = None
    """The .blend's name in the job folder when ``blend`` is a copy."""
    remove_after: list[Path] = field(default_factory=list)


class SubmitFlow:
    """Step it until ``finished``; read ``phase``, ``progress``, ``message`` for the UI."""

    def __init__(self, request: SubmitRequest, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.request = request
        self.chunk_bytes = chunk_bytes
        self.phase = Phase.PACKING
        self.message = "Packing the scene and its files…"
        self.error: str | None = None
        self.error_code: str | None = None
        self.job: dict[str, Any] | None = None
        self.pack: Pack | None = None
        self.warnings: list[str] = []
        self.hashes: dict[str, tuple[str, int]] = {}
        self.uploaded_files: list[str] = []
        self.uploaded_bytes = 0
        self.upload_total = 0
        self.hash_total = 0
        self.hashed_bytes = 0
        self._pack_thread: threading.Thread | None = None
        self._pack_error: BaseException | None = None
        self._pack_done = False
        self._lock = threading.Lock()
        self._to_hash: list[PackedFile] = []
        self._hashing: tuple[PackedFile, Any, Any, int] | None = None
        self._uploads: list[BlobUpload] = []
        self._current: BlobUpload | None = None
        self._resubmitted = False

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    @property
    def progress(self) -> float:
        """0..1 over the whole submission: packing 5%, hashing 25%, uploading 68%."""
        if self.phase == Phase.PACKING:
            return 0.0
        hashed = self.hashed_bytes / self.hash_total if self.hash_total else 1.0
        if self.phase == Phase.HASHING:
            return 0.05 + 0.25 * hashed
        sent = self.uploaded_bytes / self.upload_total if self.upload_total else 1.0
        if self.phase in (Phase.CHECKING, Phase.UPLOADING):
            return 0.30 + 0.68 * sent
        return 0.98 if self.phase == Phase.SUBMITTING else 1.0

    def step(self) -> bool:
        """Do one slice of work; False once finished. Never raises: errors end in FAILED."""
        if self.finished:
            return False
        try:
            {
                Phase.PACKING: self._step_packing,
                Phase.HASHING: self._step_hashing,
                Phase.CHECKING: self._step_checking,
                Phase.UPLOADING: self._step_uploading,
                Phase.SUBMITTING: self._step_submitting,
            }[self.phase]()
        except client.FarmClientError as error:
            self._fail(str(error), error.code)
        except PackingError as error:
            self._fail(str(error), "packing_failed")
        except OSError as error:
            self._fail(f"could not read a file of the scene: {error}; submit again", "file_error")
        except Exception as error:  # the operator must report, never raise
            self._fail(f"unexpected {type(error).__name__}: {error}", "unexpected")
        return not self.finished

    def run_to_end(self) -> SubmitFlow:
        """Step until finished (background mode, tests)."""
        while self.step():
            pass
        return self

    def cancel(self) -> None:
        if self.finished:
            return
        self._close_upload()
        self.phase = Phase.CANCELED
        self.message = (
            f"Canceled; {self.uploaded_bytes} bytes were uploaded. Submit again to resume: "
            "files the manager already has are not sent again"
        )
        self._cleanup()

    # -- phases -------------------------------------------------------------------------

    def _step_packing(self) -> None:
        if self._pack_thread is None:
            self._pack_thread = threading.Thread(target=self._pack, daemon=True)
            self._pack_thread.start()
        self._pack_thread.join(timeout=0.05)
        if self._pack_thread.is_alive():
            return
        if self._pack_error is not None:
            raise self._pack_error
        assert self.pack is not None
        self.warnings += [f"missing file: {path}" for path in self.pack.missing]
        self._to_hash = list(self.pack.files)
        self.hash_total = sum(f.source.stat().st_size for f in self._to_hash)
        self.phase = Phase.HASHING
        self.message = f"Hashing {len(self._to_hash)} files…"

    def _pack(self) -> None:
        try:
            self.pack = pack_blend(
                self.request.blend, self.request.staging, name=self.request.blend_name
            )
        except BaseException as error:  # handed to the main thread, raised there
            self._pack_error = error
        finally:
            with self._lock:
                self._pack_done = True
                if self.finished:  # canceled while packing: the files are ours to remove
                    self._remove_files()

    def _step_hashing(self) -> None:
        budget = 4 * self.chunk_bytes
        while budget > 0:
            if self._hashing is None:
                if not self._to_hash:
                    self.phase = Phase.CHECKING
                    self.message = "Asking the manager which files it lacks…"
                    return
                packed = self._to_hash.pop(0)
                # Open across timer ticks: one chunk per step; closed at the end or on cancel.
                stream = open(packed.source, "rb")  # noqa: SIM115
                self._hashing = (packed, stream, hashlib.sha256(), 0)
            packed, stream, digest, size = self._hashing
            chunk = stream.read(min(budget, self.chunk_bytes))
            if not chunk:
                stream.close()
                self.hashes[packed.path] = (digest.hexdigest(), size)
                self._hashing = None
                continue
            digest.update(chunk)
            self._hashing = (packed, stream, digest, size + len(chunk))
            self.hashed_bytes += len(chunk)
            budget -= len(chunk)

    def _step_checking(self) -> None:
        assert self.pack is not None
        missing = client.missing_blobs(self.request.address, dict(self.hashes.values()))
        self._uploads = []
        for packed in self.pack.files:
            sha, size = self.hashes[packed.path]
            if sha in missing:
                missing.discard(sha)  # two paths with the same content go up once
                upload = BlobUpload(self.request.address, packed.path, packed.source, sha, size)
                self._uploads.append(upload)
        self.upload_total = sum(u.size for u in self._uploads)
        self.phase = Phase.UPLOADING
        self.message = f"Uploading {len(self._uploads)} of {len(self.pack.files)} files…"

    def _step_uploading(self) -> None:
        if self._current is None:
            if not self._uploads:
                self.phase = Phase.SUBMITTING
                self.message = "Submitting the job…"
                return
            self._current = self._uploads.pop(0)
        upload = self._current
        sent = upload.send_chunk(self.chunk_bytes)
        self.uploaded_bytes += sent
        if sent == 0:
            self._current = None
            self.uploaded_files.append(upload.path)

    def _step_submitting(self) -> None:
        assert self.pack is not None
        body = dict(self.request.job)
        body["blend_file"] = self.pack.blend_file
        body["files"] = {
            path: {"sha256": sha, "size": size} for path, (sha, size) in self.hashes.items()
        }
        try:
            self.job = client.submit_manifest(self.request.address, body)
        except client.FilesMissing:
            if self._resubmitted:  # the manager lost them again: give up, say so
                raise
            self._resubmitted = True  # a blob vanished between the check and now: once more
            self.phase = Phase.CHECKING
            return
        self.phase = Phase.DONE
        self.message = (
            f"Job {self.job['id']} submitted: {len(self.uploaded_files)} files "
            f"({self.uploaded_bytes} bytes) uploaded, {len(self.hashes)} in its manifest"
        )
        self._cleanup()

    # -- endings ------------------------------------------------------------------------

    def _fail(self, message: str, code: str) -> None:
        self._close_upload()
        self.phase = Phase.FAILED
        self.error = message
        self.error_code = code
        self.message = message
        self._cleanup()

    def _close_upload(self) -> None:
        upload, self._current = self._current, None
        if upload is not None:
            upload.close()
        if self._hashing is not None:
            self._hashing[1].close()
            self._hashing = None

    def _cleanup(self) -> None:
        with self._lock:
            if self._pack_thread is not None and not self._pack_done:
                return  # the packing thread still writes there; it removes them when done
            self._remove_files()

    def _remove_files(self) -> None:
        shutil.rmtree(self.request.staging, ignore_errors=True)
        for path in self.request.remove_after:
            path.unlink(missing_ok=True)
