"""The permissions of files the project writes atomically through a temporary file."""

from __future__ import annotations

import os


def new_file_mode() -> int:
    """The mode a file created by ``open()`` gets here: 0o666 less the process's umask.
    ``tempfile.mkstemp`` creates its file 0o600 whatever the umask, so an atomically written
    file is given this mode before it replaces the target (a checkpoint others may read, as any
    file the user writes). The umask is read from ``/proc/self/status`` where Linux has it; else
    set and restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask
