"""An export the file system refuses: one message naming the export's target and the fix.

A writer's OSError named the file it was writing, which for an atomic write is a temporary
file (``[Errno 13] Permission denied: '/out/.classes.txt.tmp123'``), and said nothing of what
to do. :func:`export_errors` turns every OSError raised while an export writes into an
:class:`ExportFileError` (still an OSError, its ``errno`` kept) whose text names the target
(``OUT``), the cause in words, the file it was writing relative to ``OUT``, what is left of
the export, and the fix for that cause: ``cannot write the export to /data/out: it is on a
read-only file system (writing Annotations/a.xml); nothing of it was left there; choose an
output folder on a writable disk``. An image that cannot be read for a copy (``--copy-images``)
is named as the source it is.

:func:`check_not_into_project` refuses, before anything is written, an export into the
project's own folder (where its store lives) or one whose ``--copy-images`` would write over
an image the project reads: :class:`ExportIntoProjectError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from napari_al.core.formats.manifest import in_layout

#: errno -> (the cause in words, the fix).
_CAUSES = {
    errno.EACCES: (
        "permission denied",
        "choose an output folder you may write to, or give yourself write permission on it",
    ),
    errno.EROFS: ("it is on a read-only file system", "choose an output folder on a writable disk"),
    errno.ENOSPC: (
        "the disk is full",
        "free space on that disk, or choose an output folder on another disk",
    ),
    errno.EDQUOT: (
        "your disk quota there is used up",
        "free space within your quota, or choose an output folder on another disk",
    ),
}
_CAUSES[errno.EPERM] = _CAUSES[errno.EACCES]


class ExportFileError(OSError):
    """An export that a file operation refused (no permission, a read-only or full disk, a
    source image gone). ``errno`` is the operating system's; ``str()`` is one line naming the
    export's target, the cause, the file concerned and the fix (never a temporary file)."""

    def __init__(self, message: str, code: int | None, target: Path) -> None:
        super().__init__(code, message)
        self.message = message
        self.target = target

    def __str__(self) -> str:
        return self.message


def _within(path: str | os.PathLike[str], root: Path) -> str | None:
    """``path`` relative to ``root`` (``/``-separated, ``.`` for ``root`` itself), or None
    when it is not inside it."""
    p = Path(os.path.abspath(path))
    if p == root:
        return "."
    if root in p.parents:
        return p.relative_to(root).as_posix()
    return None


def refusal(exc: OSError, target: Path, root: Path, overwrite: bool) -> ExportFileError:
    """The :class:`ExportFileError` for ``exc``, raised while writing an export to ``target``
    (the folder, or COCO's JSON file) whose files lie under the folder ``root``.
    ``overwrite``: files it replaced keep their new contents (``--force``)."""
    if overwrite:
        kept = (
            "the files it had created were removed, and the files it had already replaced "
            "keep their new contents"
        )
    else:
        kept = "nothing of it was left there"
    name = exc.filename
    rel = _within(name, root) if isinstance(name, (str, os.PathLike)) else None
    if isinstance(name, (str, os.PathLike)) and rel is None:  # a source image, not the export
        return ExportFileError(
            f"cannot read {name} for the export to {target} ({exc.strerror or exc}); {kept}; "
            "put the file back where the project expects it ('napari-al info DIR' lists "
            "missing images), or export without --copy-images",
            exc.errno,
            target,
        )
    default = (str(exc.strerror or exc), "choose another output folder")
    cause, fix = _CAUSES.get(exc.errno or 0, default)
    where = f" (writing {rel})" if rel not in (None, ".", target.name) else ""
    return ExportFileError(
        f"cannot write the export to {target}: {cause}{where}; {kept}; {fix}", exc.errno, target
    )


@contextlib.contextmanager
def export_errors(target: Path, root: Path, overwrite: bool) -> Iterator[None]:
    """Turn an OSError raised in the block (an export writing to ``target``, its files under
    ``root``) into :func:`refusal`'s :class:`ExportFileError`. ``shutil.SameFileError`` (a
    copy onto the image itself) and an :class:`ExportFileError` pass as they are."""
    try:
        yield
    except (ExportFileError, shutil.SameFileError):
        raise
    except OSError as exc:
        raise refusal(exc, target, root, overwrite) from exc


#: The fix :class:`ExportIntoProjectError` names.
_INTO_PROJECT_FIX = "export to another folder; the project reads its images and labels from here"


class ExportIntoProjectError(ValueError):
    """An export refused before anything is written: its folder is the project's own (where
    its store lives), or it would write over a file one of the project's images is read
    from. ``str()`` is one line naming the export's target and the fix."""


def check_not_into_project(
    target: Path,
    project_dir: Path,
    images: Iterable[Path],
    fmt: str,
    copy_images: bool,
) -> None:
    """Raise :class:`ExportIntoProjectError` when a ``fmt`` export to ``target`` (the folder,
    or COCO's JSON file when it ends in ``.json``: its folder then) would write into
    ``project_dir`` (the folder of the project's store) itself, or, with ``copy_images``,
    copy images into ``fmt``'s layout (VOC ``JPEGImages/``, YOLO ``images/<split>/``) where
    one of ``images`` (the project's) is read from (whether or not a copy would land on that
    very file: copies are named by the export). Symlinks are followed. A folder inside the
    project (``PROJECT/export``) is fine, and so is a COCO JSON file in the project's folder
    that does not exist yet (``PROJECT/labels.json``; an existing one may be the dataset's)."""
    coco_file = fmt == "coco" and target.suffix.lower() == ".json"
    real = Path(os.path.realpath(target.parent if coco_file else target))
    if real == Path(os.path.realpath(project_dir)):
        if coco_file and not target.exists():
            return  # one new JSON file beside the store overwrites nothing the project reads
        what = f"{target.parent} is" if coco_file else "it is"
        raise ExportIntoProjectError(
            f"cannot export to {target}: {what} the project's own folder, where its store "
            f"lives; {_INTO_PROJECT_FIX}"
        )
    if not copy_images:
        return  # only the copies are written where images can be
    for image in images:
        rel = _within(os.path.realpath(image), real)
        if rel is not None and in_layout(fmt, rel):
            raise ExportIntoProjectError(
                f"cannot export to {target}: --copy-images would write over {rel} there, "
                f"which the project reads as its image {Path(image).name}; {_INTO_PROJECT_FIX}"
            )
