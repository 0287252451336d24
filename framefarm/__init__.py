"""framefarm: a render farm for Blender. The ``framefarm`` command lives here."""
