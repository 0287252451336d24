"""Bad input of every kind gets a clear 4xx, and nothing is half-created or left behind."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from manager.db import make_engine, session_scope
from manager.models import Blob, Job
from tests.manager.conftest import Farm
from tests.manager.test_job_types import blob_query
from tests.manager.test_jobs_api import assert_error
from tests.reliability.conftest import ServedManager

TRAVERSALS = [
    "../escape.blend",
    "shots/../../escape.blend",
    "/etc/passwd",
    "C:/Users/artist/shot.blend",
    "c:shot.blend",
    "shots\\shot.blend",
    "shots/\x00.blend",
    "shots/..",
    "",
]


def rows(farm: Farm, model: Any) -> list[Any]:
    engine = make_engine(farm.settings.database_url)
    try:
        with session_scope(engine) as session:
            return list(session.exec(select(model)).all())
    finally:
        engine.dispose()


def upload(farm: Farm, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    answer = farm.client.put(f"/api/blobs/{sha}", headers=farm.auth(farm.user_key), content=data)
    assert answer.status_code == 201, answer.text
    return sha


def manifest(blend: str, files: dict[str, tuple[str, int]]) -> dict[str, Any]:
    return {
        "type": "simple-blender-render",
        "settings": {"frames": "1-2"},
        "blend_file": blend,
        "files": {path: {"sha256": sha, "size": size} for path, (sha, size) in files.items()},
    }


@pytest.mark.parametrize("bad", TRAVERSALS, ids=repr)
def test_manifest_paths_that_leave_the_job_are_refused(farm: Farm, scene_bpy: Path, bad: str):
    data = scene_bpy.read_bytes()
    sha = upload(farm, data)
    headers = farm.auth(farm.user_key)
    as_blend = manifest(bad, {bad: (sha, len(data))})
    as_dependency = manifest("shot.blend", {"shot.blend": (sha, len(data)), bad: (sha, 10)})
    for body in (as_blend, as_dependency):
        answer = farm.client.post("/api/jobs/manifest", headers=headers, json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] in ("invalid_path", "not_a_blend")
    assert rows(farm, Job) == []
    assert not any((farm.settings.storage / "jobs").iterdir())


def test_unicode_names_are_kept_exactly(farm: Farm, scene_bpy: Path):
    data = scene_bpy.read_bytes()
    texture = "テクスチャ ñandú 🎬".encode()
    blend_sha, texture_sha = upload(farm, data), upload(farm, texture)
    files = {
        "shots/plan-séquence/シーン.blend": (blend_sha, len(data)),
        "textures/ñandú 🎬.png": (texture_sha, len(texture)),
    }
    body = manifest("shots/plan-séquence/シーン.blend", files)
    body["name"] = "Plan-séquence 第1話 🎬"
    answer = farm.client.post("/api/jobs/manifest", headers=farm.auth(farm.user_key), json=body)
    assert answer.status_code == 202, answer.text
    job = farm.client.get(answer.headers["Location"], headers=farm.auth(farm.user_key)).json()
    assert job["name"] == "Plan-séquence 第1話 🎬"
    assert job["blend_file"] == "shots/plan-séquence/シーン.blend"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/jobs/manifest", b'{"type": "simple-blender-render", "settings": {'),
        ("/api/blobs/missing", b"[1, 2"),
        ("/api/jobs/bulk", b"\xff\xfe not json"),
    ],
)
def test_malformed_json_is_a_clear_422(farm: Farm, path: str, body: bytes):
    answer = farm.client.post(
        path,
        headers={**farm.auth(farm.user_key), "Content-Type": "application/json"},
        content=body,
    )
    assert answer.status_code in (400, 422), answer.text
    assert answer.json()["code"] in ("bad_request", "invalid_input")
    assert "JSON" in answer.json()["message"]


def test_an_upload_with_the_wrong_hash_is_not_kept(farm: Farm):
    data = b"texture bytes" * 1000
    wrong = hashlib.sha256(b"another file").hexdigest()
    answer = farm.client.put(f"/api/blobs/{wrong}", headers=farm.auth(farm.user_key), content=data)
    assert_error(answer, 422, "checksum_mismatch")
    assert rows(farm, Blob) == []
    assert not any((farm.settings.storage / "blobs").rglob("*"))
    assert not any((farm.settings.storage / "temp").iterdir())


def test_an_oversized_upload_is_413_and_not_kept(farm: Farm):
    farm.settings.max_upload_bytes = 64 * 1024
    data = b"x" * (65 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    answer = farm.client.put(f"/api/blobs/{sha}", headers=farm.auth(farm.user_key), content=data)
    assert_error(answer, 413, "payload_too_large")
    assert rows(farm, Blob) == []
    assert not any((farm.settings.storage / "temp").iterdir())


def test_a_truncated_upload_leaves_nothing_behind(served_manager: ServedManager):
    """The connection drops after 1 MB of a declared 8 MB: no blob, no temp file."""
    data = b"\x01" * (8 * 1024 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    host, port = served_manager.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            (
                f"PUT /api/blobs/{sha} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {served_manager.user_key}\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data[: 1024 * 1024]
        )
    with served_manager.client() as client:
        missing = client.post("/api/blobs/missing", json=blob_query(sha, data))
    assert missing.json() == {"missing": [{"sha256": sha, "size": len(data)}]}
    temp = served_manager.root / "storage" / "temp"
    served_manager.wait_for(lambda: not any(temp.iterdir()), "the temp file to be removed")
    assert not (served_manager.root / "storage" / "blobs" / sha[:2] / sha).exists()


@pytest.mark.parametrize(
    "path",
    ["/api/jobs/{big}", "/api/jobs/{big}/tasks/{big}/requeue", "/jobs/{big}", "/jobs/{big}/live"],
)
def test_ids_no_database_can_hold_are_refused_not_crashed_on(farm: Farm, path: str):
    url = path.format(big=2**70)
    method = farm.client.post if url.endswith("requeue") else farm.client.get
    answer = method(url, headers=farm.auth(farm.user_key))
    assert answer.status_code == 422, answer.text
