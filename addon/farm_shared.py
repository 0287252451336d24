"""The farm's shared code: ``.shared`` in the add-on zip, ``shared`` in the repository."""

try:
    from .shared import setting_eval
except ImportError:  # running from the repository, where shared/ is a top-level package
    from shared import setting_eval  # type: ignore[no-redef]

__all__ = ["setting_eval"]
