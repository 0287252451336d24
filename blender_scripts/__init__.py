"""Scripts that run inside Blender; SCRIPTS_DIR is where runners find them."""

from pathlib import Path

SCRIPTS_DIR = Path(__file__).resolve().parent
