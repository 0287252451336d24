"""`framefarm demo`, the command behind `make demo`, renders a scene end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import OpenEXR
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.blender]


def test_demo_renders_every_frame(tmp_path: Path):
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "framefarm",
            "demo",
            "--dir",
            str(tmp_path / "demo"),
            "--frames",
            "1-3",
            "--size",
            "48",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    logs = "\n".join(p.read_text()[-3000:] for p in (tmp_path / "demo" / "logs").glob("*.log"))
    assert done.returncode == 0, done.stdout + done.stderr + logs
    assert "job 1 completed: 3 EXR frames" in done.stdout
    frames = sorted((tmp_path / "demo" / "output").glob("*.exr"))
    assert [p.name for p in frames] == [f"frame_{f:06d}.exr" for f in (1, 2, 3)]
    for frame in frames:
        channels = OpenEXR.File(str(frame), separate_channels=True).channels()
        assert channels["R"].pixels.shape == (48, 48)
        assert channels["A"].pixels.max() > 0
