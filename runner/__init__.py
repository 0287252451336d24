"""The framefarm runner: claims tasks from a manager and renders them with Blender."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("framefarm")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
