"""The add-on's submission state machine, stepped in plain Python against a real manager.

A real uvicorn manager shared by the module (no runner: nothing here renders), real
.blend files made by bpy, real blender-asset-tracer packing, real uploads over HTTP.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pytest

from addon import client
from addon.submit_flow import Phase, SubmitFlow, SubmitRequest
from tests.e2e.conftest import LiveFarm

pytestmark = pytest.mark.e2e

JOB = {"type": "simple-blender-render", "settings": {"frames": "1"}, "name": "shot"}
FILES = ["library/props.blend", "shots/shot.blend", "textures/paint.png"]


def submit(farm: LiveFarm, project: Path, tmp_path: Path, **options: object) -> SubmitFlow:
    address = options.pop("address", client.ManagerAddress(farm.url, farm.user_key))
    request = SubmitRequest(
        address,  # type: ignore[arg-type]
        project / "shots" / "shot.blend",
        dict(options.pop("job", JOB)),  # type: ignore[call-overload]
        Path(tempfile.mkdtemp(prefix="staging-", dir=tmp_path)),
    )
    return SubmitFlow(request, **options)  # type: ignore[arg-type]


def stored_files(farm: LiveFarm, job_id: int) -> dict[str, object]:
    with farm.client() as http:
        job = http.get(f"/api/jobs/{job_id}")
    assert job.status_code == 200, job.text
    return job.json()


def test_resubmitting_sends_nothing_and_a_changed_texture_only_itself(
    shared_farm: LiveFarm, textured_project: Path, tmp_path: Path
):
    first = submit(shared_farm, textured_project, tmp_path).run_to_end()
    assert first.phase == Phase.DONE, first.message
    assert sorted(first.uploaded_files) == FILES
    assert first.uploaded_bytes == sum((textured_project / f).stat().st_size for f in FILES)
    assert first.pack is not None and first.pack.blend_file == "shots/shot.blend"
    assert first.progress == 1.0
    job = stored_files(shared_farm, first.job["id"])  # type: ignore[index]
    assert job["blend_file"] == "shots/shot.blend" and job["status"] == "queued"

    again = submit(shared_farm, textured_project, tmp_path).run_to_end()
    assert again.phase == Phase.DONE and again.job["id"] != first.job["id"]  # type: ignore[index]
    assert (again.uploaded_files, again.uploaded_bytes) == ([], 0)

    texture = textured_project / "textures" / "paint.png"
    texture.write_bytes(texture.read_bytes() + b"\0changed")
    changed = submit(shared_farm, textured_project, tmp_path).run_to_end()
    assert changed.phase == Phase.DONE, changed.message
    assert changed.uploaded_files == ["textures/paint.png"]
    assert changed.uploaded_bytes == texture.stat().st_size
    assert not list(tmp_path.glob("staging-*")), "staging folders are removed"


def test_a_canceled_upload_resumes_without_sending_finished_files(
    shared_farm: LiveFarm, textured_project: Path, tmp_path: Path
):
    flow = submit(shared_farm, textured_project, tmp_path, chunk_bytes=16 * 1024)
    while not flow.uploaded_files:  # one file whole, the next one started
        assert flow.step(), flow.message
    while flow._current is None or flow._current.sent == 0:
        assert flow.step(), flow.message
    assert 0.3 < flow.progress < 0.98
    finished, partial = list(flow.uploaded_files), flow._current.path
    flow.cancel()
    assert flow.phase == Phase.CANCELED and "Submit again to resume" in flow.message
    assert not flow.step()

    resumed = submit(shared_farm, textured_project, tmp_path).run_to_end()
    assert resumed.phase == Phase.DONE, resumed.message
    assert partial in resumed.uploaded_files
    assert sorted(resumed.uploaded_files + finished) == FILES


def test_errors_end_the_flow_with_what_to_do(
    shared_farm: LiveFarm, textured_project: Path, tmp_path: Path
):
    wrong_key = client.ManagerAddress(shared_farm.url, "ff_wrong")
    flow = submit(shared_farm, textured_project, tmp_path, address=wrong_key).run_to_end()
    assert (flow.phase, flow.error_code) == (Phase.FAILED, "bad_api_key")
    assert "paste a user key" in flow.message

    nowhere = client.ManagerAddress("http://127.0.0.1:9", shared_farm.user_key)
    flow = submit(shared_farm, textured_project, tmp_path, address=nowhere).run_to_end()
    assert (flow.phase, flow.error_code) == (Phase.FAILED, "manager_unreachable")
    assert "check the URL" in flow.message

    stale = {**JOB, "type_etag": "0000000000000000"}
    flow = submit(shared_farm, textured_project, tmp_path, job=stale).run_to_end()
    assert (flow.phase, flow.error_code) == (Phase.FAILED, "stale_job_type")
    assert "fetch /api/job-types/simple-blender-render again" in flow.message

    bad_frames = {**JOB, "settings": {"frames": "9-1"}}
    flow = submit(shared_farm, textured_project, tmp_path, job=bad_frames).run_to_end()
    assert (flow.phase, flow.error_code) == (Phase.FAILED, "invalid_frame_range")

    (textured_project / "shots" / "shot.blend").unlink()
    flow = submit(shared_farm, textured_project, tmp_path).run_to_end()
    assert (flow.phase, flow.error_code) == (Phase.FAILED, "packing_failed")


def test_the_manager_refuses_a_manifest_that_leaves_the_job_folder(shared_farm: LiveFarm):
    address = client.ManagerAddress(shared_farm.url, shared_farm.user_key)
    blob = b"not really a blend"
    sha = hashlib.sha256(blob).hexdigest()
    with shared_farm.client() as http:
        assert http.put(f"/api/blobs/{sha}", content=blob).status_code == 201
        assert http.put(f"/api/blobs/{'0' * 64}", content=blob).status_code == 422
    assert client.missing_blobs(address, {sha: len(blob), "1" * 64: 5}) == {"1" * 64}
    with pytest.raises(client.ManagerRefused) as refused:
        client.missing_blobs(address, {sha: len(blob) + 1})
    assert refused.value.code == "size_mismatch"
    with pytest.raises(client.ManagerRefused) as refused:
        client.submit_manifest(
            address,
            {
                **JOB,
                "blend_file": "../shot.blend",
                "files": {"../shot.blend": {"sha256": sha, "size": len(blob)}},
            },
        )
    assert refused.value.status in (400, 422)
    with pytest.raises(client.FilesMissing, match="submit again"):
        client.submit_manifest(
            address,
            {**JOB, "blend_file": "a.blend", "files": {"a.blend": {"sha256": "2" * 64, "size": 1}}},
        )


def test_canceling_while_packing_still_removes_the_copy_and_staging(
    shared_farm: LiveFarm, textured_project: Path, tmp_path: Path
):
    shot = textured_project / "shots" / "shot.blend"
    copy = shot.with_name(".framefarm-submit-test.blend")
    copy.write_bytes(shot.read_bytes())
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=tmp_path))
    address = client.ManagerAddress(shared_farm.url, shared_farm.user_key)
    flow = SubmitFlow(SubmitRequest(address, copy, JOB, staging, "shot.blend", [copy]))
    flow.step()  # the packing thread starts; it may or may not be done
    flow.cancel()
    assert flow.phase == Phase.CANCELED and not flow.step()
    assert flow._pack_thread is not None
    flow._pack_thread.join(30)
    assert not copy.exists() and not staging.exists()
