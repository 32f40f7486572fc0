"""Where commands write: output folders and files are checked before any compute, so that a
mistyped ``--out`` (a file, a path below a file, a place without write permission) is one clear
`ConfigError` naming the path instead of a traceback after minutes of work."""

from __future__ import annotations

import os
from pathlib import Path

from robustal.errors import ConfigError


def prepare_output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Create the folder `path` (and its parents) if needed and check that files can be written
    in it; returns it. A `ConfigError` naming `option`, the path and the problem otherwise."""
    path = Path(path)
    problem = _folder_problem(path)
    if problem:
        raise ConfigError(f"{option} {path}: {problem}")
    return path


def check_output_file(path: str | os.PathLike, option: str = "--output") -> Path:
    """Check that the file `path` can be written, creating its folder if needed; returns it.
    A `ConfigError` naming `option`, the path and the problem otherwise."""
    path = Path(path)
    if path.is_dir():
        problem = "it is a folder, not a file; add a file name"
    elif path.exists() and not os.access(path, os.W_OK):
        problem = "cannot write there (the file is read-only)"
    else:
        problem = _folder_problem(path.parent)
    if problem:
        raise ConfigError(f"{option} {path}: {problem}")
    return path


def _folder_problem(path: Path) -> str | None:
    """Why files cannot be written in the folder `path` (created if missing), or None."""
    for folder in [path, *path.parents]:  # mkdir's "Not a directory" names no path
        if folder.exists():
            if not folder.is_dir():
                return f"{folder} is a file, not a folder"
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        # permissions alone do not tell (root, read-only file systems, ACLs): create a file
        probe = path / f".robustal-write-test-{os.getpid()}-{os.urandom(4).hex()}"
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as error:
        return f"cannot write there ({error.strerror or error})"
    return None
