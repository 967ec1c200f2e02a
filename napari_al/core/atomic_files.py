"""The temporary files of atomic writes (a checkpoint): their names, and those left behind.

A checkpoint is written to a temporary file beside it, ``.<name>.<8 random characters>.tmp``
(``tempfile.mkstemp`` with :func:`temp_prefix` and :data:`TEMP_SUFFIX`), then renamed over
its name (:func:`napari_al.core.engine.checkpoints.save`). A writer killed before the rename
(``kill -9``, a power cut) leaves the temporary file, as big as a checkpoint (~78 MB), which
nothing reads. :func:`partial_writes` finds them in a folder; :func:`remove_partial_writes`
removes them, which only a caller that knows no live writer can own one may do: the project
lock guarantees one writer of ``<project>/models/`` (training), which removes them before it
saves. Torch-free, so ``napari-al info`` can report them.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

#: The end of a temporary file's name (``tempfile.mkstemp``'s ``suffix``).
TEMP_SUFFIX = ".tmp"
#: A temporary file of an atomic write: ``.<target name>.<mkstemp's 8 characters>.tmp``.
_PARTIAL = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")


def temp_prefix(target_name: str) -> str:
    """``tempfile.mkstemp``'s ``prefix`` for an atomic write of the file ``target_name``."""
    return f".{target_name}."


def partial_writes(folder: str | os.PathLike[str]) -> list[Path]:
    """The temporary files of atomic writes in ``folder`` (not its sub-folders), sorted; none
    when it is missing or cannot be read."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    found = []
    for entry in entries:
        with contextlib.suppress(OSError):
            if _PARTIAL.match(entry.name) and entry.is_file(follow_symlinks=False):
                found.append(Path(entry.path))
    return sorted(found)


def remove_partial_writes(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files of atomic writes in ``folder``; returns those removed. Call
    it only holding what makes the caller the folder's one writer (the project lock for a
    project's ``models/``): a live writer's file would go too."""
    removed = []
    for path in partial_writes(folder):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def total_bytes(paths: list[Path]) -> int:
    """The size of the files ``paths`` together (one gone meanwhile counts 0)."""
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total
