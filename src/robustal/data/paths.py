"""Where datasets live: ``--data-root``, else ``$ROBUSTAL_DATA``, else a per-user cache folder."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ROOT_VARIABLE = "ROBUSTAL_DATA"


def default_cache_root() -> Path:
    """The per-user cache folder (``$XDG_CACHE_HOME/robustal``, else ``~/.cache/robustal``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "robustal"


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """The data root to read from: the argument, else ``$ROBUSTAL_DATA``, else the cache folder."""
    if data_root:
        return Path(data_root).expanduser()
    if os.environ.get(DATA_ROOT_VARIABLE):
        return Path(os.environ[DATA_ROOT_VARIABLE]).expanduser()
    return default_cache_root()
