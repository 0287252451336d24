"""build_addon.py makes a zip that a real Blender installs and enables headless."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from runner.blender import blender_env

ROOT = Path(__file__).resolve().parents[1]


def test_zip_holds_the_addon_and_shared_code(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "build_addon.py"), "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    archive = Path(done.stdout.strip())
    names = zipfile.ZipFile(archive).namelist()
    assert "framefarm/__init__.py" in names
    assert "framefarm/shared/frames.py" in names
    assert not any("__pycache__" in name for name in names)


@pytest.mark.blender
def test_blender_installs_and_enables_the_zip(tmp_path: Path):
    subprocess.run(
        [sys.executable, str(ROOT / "build_addon.py"), "--output", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    code = (
        "import bpy, addon_utils, sys\n"
        "bpy.ops.preferences.addon_install(filepath=sys.argv[1])\n"
        "addon_utils.enable('framefarm', default_set=True, handle_error=None)\n"
        "assert hasattr(bpy.types, 'FRAMEFARM_PT_sidebar')\n"
        "prefs = bpy.context.preferences.addons['framefarm'].preferences\n"
        "print('manager-url', prefs.manager_url)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "framefarm-addon.zip")],
        capture_output=True,
        text=True,
        env=blender_env(tmp_path / "home"),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "manager-url http://localhost:8080" in done.stdout
