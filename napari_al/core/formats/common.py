"""Shared by the format readers and writers: the error type, message helpers, box validation
and repairs, file walking and atomic writes."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from napari_al.core.data import Dataset, ImageNote, ImageRecord
from napari_al.core.images import (
    ImageReadError,
    find_images,
    image_size,
    is_zarr_path,
)
from napari_al.core.names import control_problem, is_control, shown
from napari_al.core.pixel_checks import record_pixel_check

_SNAP_TOL = 1e-6


class FormatError(ValueError):
    """Malformed dataset input (or an impossible export); the message names file and problem.

    The message is always one line (line breaks of wrapped library messages are folded).
    ``image``: the image file at fault (unreadable, or not the size the labels say), when the
    image itself is the problem rather than its labels.
    """

    #: True when the reader would have skipped it without ``strict`` (``--skip-bad`` helps).
    skippable: bool = False

    def __init__(self, message: object = "", image: Path | None = None) -> None:
        super().__init__(re.sub(r"\s*\n\s*", " ", str(message)).strip())
        self.image = image


_F = TypeVar("_F", bound=Callable[..., Any])


def _one_error_type(reader: _F) -> _F:
    """Decorate a public reader so that no failure escapes as anything but FormatError.

    The readers turn every problem they know into a FormatError naming the file; this is the
    safety net for the rest (a library raising something unforeseen): a one-line FormatError
    naming the dataset path and the exception, never a traceback.
    """

    @functools.wraps(reader)
    def wrapper(path: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return reader(path, *args, **kwargs)
        except (FormatError, MemoryError):
            raise
        except Exception as e:
            raise FormatError(f"{path}: cannot read ({type(e).__name__}: {e})") from e

    return wrapper  # type: ignore[return-value]


class _Reader:
    """Bookkeeping shared by the readers: root for messages, strictness and warnings."""

    def __init__(self, root: Path, strict: bool) -> None:
        self.root = root
        self.strict = strict
        self.warnings: list[str] = []
        self.skipped_images: list[Path] = []

    def rel(self, path: Path) -> str:
        """``path`` relative to the dataset root when inside it (for short messages)."""
        if _inside(path, self.root):
            return Path(path).relative_to(self.root).as_posix()
        return str(path)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def skip(self, error: FormatError, what: str) -> None:
        """Raise ``error`` when strict, else record that ``what`` was skipped because of it
        (and, when the error is the image's own, ``error.image`` in :attr:`skipped_images`)."""
        if self.strict:
            error.skippable = True
            raise error
        self.warnings.append(f"{error} ({what} skipped)")
        if error.image is not None:
            self.skipped_images.append(_abspath(error.image))

    def dataset(self, classes: list[str], images: list[ImageRecord], source: str) -> Dataset:
        """The dataset read, with this reader's warnings and skipped images."""
        return Dataset(
            classes=classes,
            images=images,
            source=source,
            warnings=self.warnings,
            skipped_images=self.skipped_images,
        )

    def size_of(self, image: Path, where: str) -> tuple[int, int]:
        """Image size from its header; unreadable images become a FormatError naming both."""
        try:
            return image_size(image)
        except ImageReadError as e:
            msg = str(e)
            if msg.startswith(str(image)):
                msg = self.rel(image) + msg[len(str(image)) :]
            raise FormatError(f"{where}: {msg}" if where else msg, image) from None


def _inside(path: Path, root: Path) -> bool:
    try:
        Path(path).relative_to(root)
        return True
    except ValueError:
        return False


def _is_file(path: Path) -> bool:
    """``path.is_file()`` that is False, not an error, for names the OS refuses (too long...)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _is_image_path(path: Path) -> bool:
    """Whether ``path`` can name an image: a file, or a ``*.zarr`` directory (an OME-Zarr image,
    :mod:`napari_al.core.ome_zarr`; reading its size then says whether it is one). False, not
    an error, for names the OS refuses."""
    return _is_file(path) or (is_zarr_path(path) and _is_dir(path))


def _copy_image(src: Path, dest: Path) -> None:
    """Copy an image to ``dest``: a file with its times (``shutil.copy2``), an OME-Zarr
    directory whole (``shutil.copytree``, replacing one already at ``dest``)."""
    if _is_dir(src):
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(src, dest)
    else:
        shutil.copy2(src, dest)


def _is_dir(path: Path) -> bool:
    """``path.is_dir()`` that is False, not an error, for names the OS refuses (too long...)."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _abspath(path: str | Path) -> Path:
    """Absolute, normalised path without resolving symlinks."""
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _fmt_box(b: Iterable[float]) -> str:
    return "[" + ", ".join(_fmt(v) for v in b) + "]"


def _parse_number(text: Any, where: str, field: str) -> float:
    """A finite float from an XML/text field, or a FormatError naming the field."""
    if text is None or not str(text).strip():
        raise FormatError(f"{where}: {field} is empty")
    s = str(text).strip()
    try:
        v = float(s)
    except ValueError:
        hint = ""
        if s.count(",") == 1 and s.replace(",", "", 1).isdigit():
            hint = " (a decimal comma? write " + s.replace(",", ".") + ")"
        raise FormatError(f"{where}: {field} is {s!r}, not a number{hint}") from None
    if not math.isfinite(v):
        raise FormatError(f"{where}: {field} is {s!r}, not a finite number")
    return v


def _json_number(value: Any, where: str, field: str) -> float:
    """A finite float from a JSON value (bool and strings are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FormatError(f"{where}: {field} is {value!r}, not a number")
    if isinstance(value, int) and abs(value) > 2**53:
        raise FormatError(f"{where}: {field} is an integer of {value.bit_length()} bits, too large")
    if not math.isfinite(value):
        raise FormatError(f"{where}: {field} is {value!r}, not a finite number")
    return float(value)


def _positive_int(v: float, where: str, field: str) -> int:
    if not float(v).is_integer() or v <= 0:
        raise FormatError(f"{where}: {field} is {_fmt(v)}, not a positive integer")
    return int(v)


def _fix_box(
    box: tuple[float, float, float, float], width: int, height: int, where: str, rd: _Reader
) -> tuple[float, float, float, float]:
    """Validate one box against its image; apply the documented repairs (clip, widen)."""
    x1, y1, x2, y2 = box
    if x2 < x1:
        raise FormatError(f"{where}: box {_fmt_box(box)} is inverted (x2 < x1)")
    if y2 < y1:
        raise FormatError(f"{where}: box {_fmt_box(box)} is inverted (y2 < y1)")
    repaired = []
    if x2 == x1:
        x1, x2 = (x1, x1 + 1) if x1 + 1 <= width or x1 > width else (x1 - 1, x1)
        repaired.append("zero width widened to 1 px")
    if y2 == y1:
        y1, y2 = (y1, y1 + 1) if y1 + 1 <= height or y1 > height else (y1 - 1, y1)
        repaired.append("zero height widened to 1 px")
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise FormatError(
            f"{where}: box {_fmt_box(box)} lies entirely outside the {width}x{height} image"
        )
    c = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if c != (x1, y1, x2, y2):
        repaired.append(f"clipped to the {width}x{height} image")
    if repaired:
        rd.warn(f"{where}: box {_fmt_box(box)} {' and '.join(repaired)}: {_fmt_box(c)}")
    return c


def _fix_region(
    box: tuple[float, float, float, float], width: int, height: int, where: str, rd: _Reader
) -> tuple[float, float, float, float]:
    """Validate one reviewed region (``x1, y1, x2, y2`` image pixels) against its image and
    clip it to the image (reported). An inverted or empty region, or one entirely outside
    the image, is a FormatError: unlike a box, a region is never widened (a reviewed area
    of zero size says nothing)."""
    x1, y1, x2, y2 = box
    if not (x1 < x2 and y1 < y2):
        raise FormatError(f"{where}: reviewed region {_fmt_box(box)} is empty or inverted")
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise FormatError(
            f"{where}: reviewed region {_fmt_box(box)} lies entirely outside the "
            f"{width}x{height} image"
        )
    c = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if c != (x1, y1, x2, y2):
        rd.warn(
            f"{where}: reviewed region {_fmt_box(box)} clipped to the {width}x{height} "
            f"image: {_fmt_box(c)}"
        )
    return c


def _importable(rec: ImageRecord) -> bool:
    """Whether an import adds the image of ``rec`` (new to the project): its path is valid
    UTF-8 and holds no control character, and its pixels decode, by the import's own check
    (:func:`~napari_al.core.pixel_checks.record_pixel_check`, kept on the record, which the
    import then uses instead of decoding the image again). The import leaves out any other
    image and names it once with the reason, so a note saying that images join the pool names
    only importable ones."""
    text = str(rec.path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    if control_problem(text):
        return False
    return record_pixel_check(rec).error is None


def _pool_note(
    images: list[ImageRecord], what: str, lacking: str, where: str = ""
) -> ImageNote | None:
    """One line naming the ``images`` an import puts in the pool for want of an annotation
    (how many, the first three file names), ``what`` the kind of image (``training image``)
    and ``lacking`` what they lack (``no annotation``), after ``where`` (e.g.
    ``JPEGImages/: ``); None when none reaches the pool.

    Only :func:`_importable` images are named; the import names only those it adds (not
    those the project holds already: :class:`~napari_al.core.data.ImageNote`)."""
    return ImageNote.of(functools.partial(_pool_text, what, lacking, where), images)


def _pool_text(what: str, lacking: str, where: str, images: list[ImageRecord]) -> str | None:
    """The text of :func:`_pool_note` for ``images``."""
    pooled = [im for im in images if _importable(im)]
    n = len(pooled)
    if not n:
        return None
    names = ", ".join(Path(im.path).name for im in pooled[:3]) + (", ..." if n > 3 else "")
    return (
        f"{where}{n} {what}{'s' if n != 1 else ''} ({names}) {'have' if n != 1 else 'has'} "
        f"{lacking}: imported into the pool of images to label, where rank asks about them"
    )


def _list_pool_text(train_list: str, ids: dict[int, str], images: list[ImageRecord]) -> str | None:
    """The line for the ``images`` of ``train_list`` without annotation (their image ids:
    ``ids``, by record identity) that join the pool; only :func:`_importable` ones are named
    (the import names the rest)."""
    names = [ids[id(im)] for im in images if _importable(im)]
    n = len(names)
    if not n:
        return None
    listed = ", ".join(repr(i) for i in names[:3]) + (", ..." if n > 3 else "")
    return (
        f"{train_list}: {n} listed image{'s' if n != 1 else ''} ({listed}) "
        f"{'have' if n != 1 else 'has'} no annotation: imported into the pool of images to "
        "label, where rank asks about them"
    )


def unannotated_left_out(images: list[ImageRecord]) -> str:
    """The note of a VOC export without copied images that leaves out the unannotated
    ``images``: how many, one of them, why, and the two ways to keep them."""
    n = len(images)
    return (
        f"left out {n} unannotated image{'s' if n != 1 else ''} (not reviewed, no label; e.g. "
        f"{Path(images[0].path).name}): a VOC export names an image only in its annotation "
        "file, so without copied images an unannotated one has nothing to carry it; copy the "
        "images (napari-al export --copy-images) or export COCO to keep them"
    )


def _iter_images(folder: Path) -> Iterator[Path]:
    """Images under ``folder``, recursively, sorted by path components, skipping hidden files
    and folders: image files and OME-Zarr directories
    (:func:`~napari_al.core.images.find_images`)."""
    yield from find_images(folder)


def _check_targets(paths: Iterable[Path], overwrite: bool) -> None:
    """Refuse to write, before writing anything, when any target exists (FileExistsError, unless
    ``overwrite``) or a folder on a target's path is a file (NotADirectoryError)."""
    paths = list(paths)
    first_in_folder: dict[Path, Path] = {}
    for p in paths:
        first_in_folder.setdefault(p.parent, p)
    for target in first_in_folder.values():
        for d in target.parents:
            if os.path.lexists(d):
                if not _is_dir(d):
                    raise NotADirectoryError(
                        f"{d}: is a file, not a folder, so {target} cannot be written "
                        "(choose another output path)"
                    )
                break
    for p in paths:
        if p.exists() and p.is_dir():
            raise FileExistsError(f"{p}: exists and is a folder; cannot write a file there")
        if p.exists() and not overwrite:
            raise FileExistsError(f"{p}: already exists; pass overwrite=True to replace it")


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (temporary file, then rename); the temporary file is removed
    again when the write fails or is interrupted, and an OSError names ``path``, not it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if exc.filename is not None and os.fspath(exc.filename) == os.fspath(tmp):
            exc.filename = str(path)  # the file being written, never the temporary one
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _NewPaths:
    """The files and folders one export creates, so that a failed or interrupted export can
    remove them again (:func:`_undone_on_failure`)."""

    def __init__(self) -> None:
        self.files: list[Path] = []
        self.folders: list[Path] = []
        self.replaced: list[Path] = []  # files that existed before and are written over

    def folder(self, folder: Path) -> None:
        """Create ``folder`` and its missing parents, remembering those it created."""
        missing = []
        for p in (folder, *folder.parents):
            if _is_dir(p):
                break
            missing.append(p)
        folder.mkdir(parents=True, exist_ok=True)
        self.folders += reversed(missing)

    def file(self, path: Path) -> Path:
        """Before ``path`` is written: create its folder, remember it when it is new (a file
        that exists is replaced, not removed, on undo; it goes to ``replaced``). Returns
        ``path``."""
        self.folder(path.parent)
        if not os.path.lexists(path):
            self.files.append(path)
        else:
            self.replaced.append(path)
        return path

    def undo(self) -> None:
        """Remove the new files (an OME-Zarr copy whole), then the new folders left empty."""
        for p in reversed(self.files):
            with contextlib.suppress(OSError):
                if _is_dir(p) and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink(missing_ok=True)
        for d in reversed(self.folders):
            with contextlib.suppress(OSError):
                d.rmdir()  # only when empty: files someone else put there stay


@contextlib.contextmanager
def _undone_on_failure() -> Iterator[_NewPaths]:
    """Run a writer so that it completes or leaves the disk as it found it: when it raises or
    is interrupted (Ctrl+C is ``KeyboardInterrupt``), every file and folder it registered as
    new with the yielded :class:`_NewPaths` is removed again and the exception goes on. Files
    it replaced (``overwrite=True``) keep their new contents: each was replaced atomically."""
    new = _NewPaths()
    try:
        yield new
    except BaseException:
        new.undo()
        raise


def _check_labels(dataset: Dataset) -> dict[str, int]:
    """Class index of each name; refuse boxes (and ignore regions) whose label is not in
    ``dataset.classes`` (an ignore region of no class, label ``""``, needs one class at least)."""
    index: dict[str, int] = {}
    for i, name in enumerate(dataset.classes):
        if not name or not str(name).strip():
            raise FormatError(f"class {i} has an empty name")
        if name in index:
            raise FormatError(f"class name {name!r} appears twice in the class list")
        index[name] = i
    for im in dataset.images:
        for b in im.boxes:
            if b.label not in index:
                raise FormatError(
                    f"{im.path}: box {_fmt_box(b.xyxy())} has label {b.label!r}, "
                    f"which is not in the class list {dataset.classes}"
                )
        for r in im.ignore_regions:
            if r.label and r.label not in index:
                raise FormatError(
                    f"{im.path}: ignore region {_fmt_box(r.xyxy())} has label {r.label!r}, "
                    f"which is not in the class list {dataset.classes}"
                )
            if not r.label and not index:
                raise FormatError(
                    f"{im.path}: ignore region {_fmt_box(r.xyxy())} cannot be written: "
                    "the project has no class to attach it to"
                )
    return index


def _safe_stem(stem: str) -> str:
    """``stem`` as a file name this package writes (an XML, a label file, a copied image, an
    ImageSets id): each control character as ``_``, which no line-based list could hold
    (:mod:`napari_al.core.names`), and each leading dot as ``_``: a hidden file is skipped by
    folder scans (napari-al's readers, Ultralytics', ``ls``), so a copied ``.a.png`` would not
    be read back."""
    safe = "".join("_" if is_control(c) else c for c in stem)
    rest = safe.lstrip(".")
    return "_" * (len(safe) - len(rest)) + rest


def _unique_stems(images: list[ImageRecord], notes: list[str] | None = None) -> list[str]:
    """A file-name stem per image (:func:`_safe_stem` of its own), made unique with ``_2``,
    ``_3``... where stems collide. ``notes`` (the export's ``Dataset.warnings``, given when the
    images are copied under these stems) receives a line naming the images whose copy is named
    otherwise than for uniqueness, e.g. ``.a.png`` as ``_a.png``."""
    seen: dict[str, int] = {}
    safe = [_safe_stem(im.path.stem) for im in images]
    taken = set(safe)
    out = [""] * len(images)
    # the names kept as they are claim their stems first: a renamed ``.a.png`` becomes
    # ``_a_2.png`` beside the person's own ``_a.png``, never the other way round
    order = sorted(range(len(images)), key=lambda i: safe[i] != images[i].path.stem)
    for i in order:
        stem = safe[i]
        if stem in seen:
            k = seen[stem] + 1
            while f"{stem}_{k}" in taken:
                k += 1
            seen[stem] = k
            stem = f"{stem}_{k}"
            taken.add(stem)
        else:
            seen[stem] = 1
        out[i] = stem
    renamed = [
        (im, s)
        for im, s in zip(images, out, strict=True)
        if _safe_stem(im.path.stem) != im.path.stem
    ]
    if notes is not None and renamed:
        im, stem = renamed[0]
        n = len(renamed)
        why = []
        if any(im.path.stem.startswith(".") for im, _ in renamed):
            why.append("a name starting with '.' is hidden, which folder scans skip")
        if any(control_problem(im.path.stem) for im, _ in renamed):
            why.append("a control character (a line break) would break line-based lists")
        notes.append(
            f"copied {n} {'image' if n == 1 else 'images'} under another name (e.g. "
            f"{shown(im.path.name)} as {stem}{im.path.suffix}): {'; '.join(why)}"
        )
    return out


def _check_line_names(dataset: Dataset, fmt: str, paths: Iterable[tuple[Path, Path]]) -> None:
    """Refuse (FormatError, one line, before anything is written) what a ``fmt`` (voc, yolo)
    export would write into a line of text or an XML element holding a control character
    (:mod:`napari_al.core.names`): a class name (``classes.txt``), or the path of an image as
    written (``paths``: ``(image, path written)`` pairs; VOC's ``<path>``, YOLO's image
    lists). The fix named: COCO (its JSON holds any name), or for an image referenced in
    place ``--copy-images`` (the copies are named without it)."""
    what = {"voc": "VOC's classes.txt and XML", "yolo": "YOLO's classes.txt"}[fmt]
    for name in dataset.classes:
        problem = control_problem(name)
        if problem:
            raise FormatError(
                f"class {name!r} holds {problem}, which {what} cannot hold; export with "
                "--format coco (its JSON holds any name)"
            )
    where = {"voc": "VOC's XML <path>", "yolo": "YOLO's image lists"}[fmt]
    for image, written in paths:
        problem = control_problem(str(written))
        if problem is None:
            continue
        if _abspath(written) == _abspath(image):
            raise FormatError(
                f"{shown(str(image))}: its path holds {problem}, which {where} cannot hold; "
                "export with --copy-images (the copies are named without it) or --format coco",
                image,
            )
        raise FormatError(
            f"{shown(str(written))}: the export's path holds {problem}, which {where} cannot "
            "hold; choose an output folder without it"
        )


def _round_edge(v: float) -> int:
    return math.floor(v + 0.5)


def _snap(v: float) -> float:
    r = round(v)
    return float(r) if abs(v - r) < _SNAP_TOL else v
