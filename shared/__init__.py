"""Code that the manager, the runner and the Blender add-on all need (standard library only)."""
