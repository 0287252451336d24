"""One file streamed to ``PUT /api/blobs/{sha256}``, a chunk per call (no bpy).

The request stays open between calls, so the modal operator sends a chunk per timer tick
and the bytes go straight from the artist's disk to the manager, which stores the blob
only if the content has exactly this hash.
"""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import BinaryIO

from . import client


class BlobUpload:
    def __init__(
        self, address: client.ManagerAddress, path: str, source: Path, sha256: str, size: int
    ) -> None:
        self.address = address
        self.path = path
        self.source = source
        self.sha256 = sha256
        self.size = size
        self.sent = 0
        self._stream: BinaryIO | None = None
        self._connection: http.client.HTTPConnection | None = None

    def send_chunk(self, chunk_bytes: int) -> int:
        """Send the next chunk; the bytes sent, 0 once the manager confirmed the blob."""
        if self._connection is None:
            self._open()
        assert self._stream is not None and self._connection is not None
        chunk = self._stream.read(min(chunk_bytes, self.size - self.sent))
        if not chunk:
            self._finish()
            return 0
        try:
            self._connection.send(chunk)
        except OSError as error:
            self.close()
            raise client.unreachable(self.address, error) from error
        self.sent += len(chunk)
        return len(chunk)

    def close(self) -> None:
        stream, self._stream = self._stream, None
        connection, self._connection = self._connection, None
        if stream is not None:
            stream.close()
        if connection is not None:
            connection.close()

    def _open(self) -> None:
        self._stream = open(self.source, "rb")  # noqa: SIM115 - read over many steps
        connection = client.open_connection(self.address)
        try:
            target = client.request_path(self.address, f"/api/blobs/{self.sha256}")
            connection.putrequest("PUT", target)
            for name, value in client.auth_headers(self.address).items():
                connection.putheader(name, value)
            connection.putheader("Content-Type", "application/octet-stream")
            connection.putheader("Content-Length", str(self.size))
            connection.endheaders()
        except OSError as error:
            connection.close()
            self.close()
            raise client.unreachable(self.address, error) from error
        self._connection = connection

    def _finish(self) -> None:
        assert self._connection is not None
        try:
            answer = self._connection.getresponse()
            body = answer.read()
        except (OSError, http.client.HTTPException) as error:
            raise client.unreachable(self.address, error) from error
        finally:
            self.close()
        if self.sent < self.size or (answer.status == 400 and b"checksum_mismatch" in body):
            raise client.FarmClientError(
                f"{self.path} changed while it was uploading; submit again"
            )
        client.raise_for_answer(answer.status, body)
