"""Pack a saved .blend with its dependencies through blender-asset-tracer (no bpy).

BAT finds textures, linked libraries and caches, decides where each goes inside the job
folder and rewrites the paths in the .blend files that need it. Its normal transfer copies
every file into a target folder; here the transfer only records where each file comes
from, so a 4 GB texture is hashed and uploaded straight from the artist's disk. Only the
rewritten .blend files (BAT writes those into its own temporary folder) are kept, in the
staging folder this submission owns. The artist's files are never written.
"""

from __future__ import annotations

import os
import queue
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath

OUTSIDE_PROJECT = "_outside_project"


class PackingError(Exception):
    """The scene could not be packed; the message says why."""


@dataclass(frozen=True)
class PackedFile:
    path: str
    """Relative POSIX path inside the job folder."""
    source: Path
    """Where the bytes are read from: the artist's file, or a rewritten copy."""


@dataclass
class Pack:
    blend_file: str
    files: list[PackedFile]
    missing: list[Path] = field(default_factory=list)


def _recording_transferer_class():  # type: ignore[no-untyped-def]
    from blender_asset_tracer.pack import transfer

    class RecordingTransferer(transfer.FileTransferer):  # type: ignore[misc]
        """Records (source, target) pairs; keeps BAT's rewritten blends in ``keep_dir``.

        Nothing is copied, so no thread is started: the queue (unbounded here) is read
        once BAT has queued everything, without BAT's half-second polls.
        """

        def __init__(self, keep_dir: Path) -> None:
            super().__init__()
            self.queue = queue.PriorityQueue()
            self.keep_dir = keep_dir
            self.recorded: list[tuple[Path, PurePath]] = []

        def start(self) -> None:
            """Not a thread: ``done_and_join`` records on the caller's thread."""

        def done_and_join(self) -> None:
            self.done.set()
            self.run()
            super().done_and_join()

        def run(self) -> None:
            while not self.queue.empty():
                src, dst, action = self.queue.get_nowait()
                if action == transfer.Action.MOVE:
                    kept = self.keep_dir / f"{len(self.recorded)}-{Path(src).name}"
                    shutil.move(str(src), kept)
                    src = kept
                self.recorded.append((Path(src), dst))

    return RecordingTransferer


def project_root(blend: Path, dependencies: list[Path]) -> Path:
    """The deepest folder holding the .blend and all its dependencies (not ``/``)."""
    folders = [str(blend.parent)] + [str(p.parent) for p in dependencies]
    try:
        common = Path(os.path.commonpath(folders))
    except ValueError:  # different drives on Windows
        return blend.parent
    return blend.parent if common == Path(common.anchor) else common


def _dependencies(blend: Path) -> list[Path]:
    from blender_asset_tracer import trace

    found = []
    for usage in trace.deps(blend):
        path = Path(usage.abspath)
        found.append(path.parent if "*" in path.name or "<UDIM>" in path.name else path)
    return found


def pack_blend(blend: Path, staging: Path, *, name: str | None = None) -> Pack:
    """Pack ``blend`` and what it uses; ``name`` renames the .blend inside the job folder."""
    from blender_asset_tracer import pack as bat_pack
    from blender_asset_tracer.blendfile import exceptions as bat_errors

    blend = blend.resolve()
    staging.mkdir(parents=True, exist_ok=True)
    transferer_class = _recording_transferer_class()
    target = staging / "pack"

    class RecordingPacker(bat_pack.Packer):  # type: ignore[misc]
        def _create_file_transferer(self):  # type: ignore[no-untyped-def]
            self.recording = transferer_class(staging)
            return self.recording

        def _find_new_paths(self) -> None:
            """Absolute paths inside the project keep their place (BAT moves every absolute
            path under ``_outside_project/``); files outside it still go there."""
            super()._find_new_paths()
            for path in self._new_location_paths:
                if self._path_in_project(path):
                    relative = path.relative_to(self.project)
                    self._actions[path].new_path = self._target_path / relative

        def _write_info_file(self) -> None:
            """BAT's pack-info.txt is for people unpacking by hand; the farm does not need it."""

    try:
        root = project_root(blend, _dependencies(blend))
        with RecordingPacker(blend, root, str(target)) as packer:
            packer.strategise()
            packer.execute()
            recorded = packer.recording.recorded
            missing = sorted(Path(p) for p in packer.missing_files)
            output = Path(packer.output_path)
    except (bat_errors.BlendFileError, OSError, bat_pack.Aborted) as error:
        raise PackingError(f"could not pack {blend.name}: {error}") from error
    except ImportError as error:
        raise PackingError(f"{error}: the add-on was installed without its packages") from error
    blend_file = output.relative_to(target.absolute()).as_posix()
    files = [
        PackedFile(Path(dst).relative_to(target.absolute()).as_posix(), src)
        for src, dst in recorded
    ]
    if name is not None:
        renamed = str(PurePosixPath(blend_file).with_name(name))
        files = [PackedFile(renamed, f.source) if f.path == blend_file else f for f in files]
        blend_file = renamed
    if blend_file not in {f.path for f in files}:
        raise PackingError(f"blender-asset-tracer did not pack {blend.name} itself")
    return Pack(blend_file=blend_file, files=sorted(files, key=lambda f: f.path), missing=missing)
