"""HTTP client for the manager's runner API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from runner.errors import ManagerRejected, ManagerUnreachable, TaskGone
from shared.hashing import sha256_file

UPLOAD_CHUNK = 1024 * 1024


class ManagerClient:
    """One runner's connection to the manager; the transport is injectable for tests."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "framefarm-runner"},
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )
        self.runner_id: int | None = None

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise ManagerUnreachable(f"cannot reach the manager at {self.base_url}: {exc}") from exc
        if response.status_code >= 500:
            raise ManagerUnreachable(
                f"the manager answered {response.status_code} for {method} {url}: "
                f"{response.text[:200]}"
            )
        if response.status_code >= 400:
            try:
                body = response.json()
                code, message = str(body["code"]), str(body["message"])
            except (ValueError, KeyError, TypeError):
                code, message = "error", response.text[:500]
            error = TaskGone if code in ("task_not_active", "not_yours") else ManagerRejected
            raise error(response.status_code, code, message)
        return response

    def _runner_url(self, path: str) -> str:
        if self.runner_id is None:
            raise RuntimeError("register the runner first")
        return f"/api/runner/{self.runner_id}{path}"

    def version(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/api/version").json()
        return result

    def register(self, info: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = self._request("POST", "/api/runner/register", json=info).json()
        self.runner_id = int(reply["id"])
        return reply

    def heartbeat(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", self._runner_url("/heartbeat")).json()
        return result

    def claim(
        self, wait: float, warm_job_id: int | None = None, *, completed: int | None = None
    ) -> dict[str, Any] | None:
        """Long-poll for a task; None when the wait ended with nothing to do.

        ``warm_job_id``: the job this slot keeps a Blender session for, preferred by the
        manager among jobs of equal priority. ``completed``: a task to complete first, in the
        same request (an error about it comes as ``complete`` would raise it, and then
        nothing was claimed)."""
        params: dict[str, Any] = {"wait": wait}
        if warm_job_id is not None:
            params["warm_job"] = warm_job_id
        if completed is not None:
            params["completed"] = completed
        response = self._request(
            "POST",
            self._runner_url("/claim"),
            params=params,
            timeout=httpx.Timeout(wait + 30.0, connect=10.0),
        )
        if response.status_code == 204:
            return None
        task: dict[str, Any] = response.json()
        return task

    def progress(
        self,
        task_id: int,
        *,
        frames_done: int | None = None,
        activity: str | None = None,
        log: list[str] | None = None,
    ) -> dict[str, Any]:
        """Report progress; ``keep_running`` False means the manager wants the task stopped."""
        body: dict[str, Any] = {"log": log or []}
        if frames_done is not None:
            body["frames_done"] = frames_done
        if activity is not None:
            body["activity"] = activity[:500]
        reply: dict[str, Any] = self._request(
            "POST", self._runner_url(f"/tasks/{task_id}/progress"), json=body
        ).json()
        return reply

    def upload_output(self, task_id: int, path: Path, *, name: str, frame: int | None) -> None:
        sha256 = sha256_file(path)
        headers = {
            "X-Checksum-SHA256": sha256,
            "Content-Type": "application/octet-stream",
            "Content-Length": str(path.stat().st_size),
        }
        if frame is not None:
            headers["X-Frame"] = str(frame)
        with open(path, "rb") as f:
            self._request(
                "PUT",
                self._runner_url(f"/tasks/{task_id}/outputs/{name}"),
                content=_chunks(f),
                headers=headers,
            )

    def complete(self, task_id: int) -> None:
        self._request("POST", self._runner_url(f"/tasks/{task_id}/complete"))

    def fail(self, task_id: int, reason: str) -> None:
        self._request("POST", self._runner_url(f"/tasks/{task_id}/fail"), json={"reason": reason})

    def release(self, task_id: int, reason: str) -> None:
        self._request(
            "POST", self._runner_url(f"/tasks/{task_id}/release"), json={"reason": reason}
        )

    def download_blob(self, sha256: str, dest: Path) -> None:
        """Stream a blob to ``dest`` (a temp path the caller verifies and moves)."""
        try:
            with self._http.stream("GET", f"/api/runner/blobs/{sha256}") as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response)
                with open(dest, "wb") as f:
                    for chunk in response.iter_bytes(UPLOAD_CHUNK):
                        f.write(chunk)
                    f.flush()
                    os.fsync(f.fileno())
        except httpx.TransportError as exc:
            raise ManagerUnreachable(f"download of blob {sha256} failed: {exc}") from exc

    def blender_versions(self) -> list[dict[str, Any]]:
        """The Blender builds the manager stores, for every platform."""
        reply = self._request("GET", "/api/runner/blender/versions").json()
        builds: list[dict[str, Any]] = reply["versions"]
        return builds

    def download_blender(self, sha256: str, dest: Path) -> None:
        """Stream a stored Blender build to ``dest`` (the caller verifies it)."""
        self._download(f"/api/runner/blender/versions/{sha256}/archive", dest)

    def download_job_frames(self, job_id: int, frames: list[int], dest: Path) -> list[Path]:
        """The job's EXR frames (outputs of its render tasks), in frame order."""
        listing = self._request("GET", self._runner_url(f"/jobs/{job_id}/outputs")).json()
        by_frame = {o["frame"]: o for o in listing["outputs"] if o["frame"] is not None}
        missing = [f for f in frames if f not in by_frame]
        if missing:
            raise ManagerRejected(409, "frames_missing", f"job {job_id} has no EXR for {missing}")
        dest.mkdir(parents=True, exist_ok=True)
        paths = []
        for frame in frames:
            output = by_frame[frame]
            target = dest / Path(output["name"]).name
            self._download(self._runner_url(f"/jobs/{job_id}/outputs/{output['name']}"), target)
            if sha256_file(target) != output["sha256"]:
                raise ManagerUnreachable(f"frame {frame} arrived damaged; will retry")
            paths.append(target)
        return paths

    def _download(self, url: str, dest: Path) -> None:
        try:
            with self._http.stream("GET", url) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response)
                with open(dest, "wb") as f:
                    for chunk in response.iter_bytes(UPLOAD_CHUNK):
                        f.write(chunk)
        except httpx.TransportError as exc:
            raise ManagerUnreachable(f"download of {url} failed: {exc}") from exc

    def _raise_for(self, response: httpx.Response) -> None:
        if response.status_code >= 500:
            raise ManagerUnreachable(f"the manager answered {response.status_code}")
        try:
            body = response.json()
            raise ManagerRejected(response.status_code, str(body["code"]), str(body["message"]))
        except (ValueError, KeyError, TypeError):
            raise ManagerRejected(response.status_code, "error", response.text[:500]) from None


def _chunks(f: Any) -> Any:
    while chunk := f.read(UPLOAD_CHUNK):
        yield chunk
