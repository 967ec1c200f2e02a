"""What an export wrote, so that ``--force`` into its folder leaves none of its stale files.

An export into a folder that holds an earlier one used to leave the earlier files that the new
export does not write: the ``ImageSets/Main/pool.txt`` of a split no longer exported, the XML
or YOLO label file (and the copied image) of an image no longer exported, and every file of an
earlier export in another format (a VOC ``Annotations/`` folder beside a new YOLO export, which
format detection then reads as VOC). Each export (VOC, YOLO, COCO) therefore records the files
it wrote in ``.napari-al-export.json`` in its folder (per format, paths relative to the
folder), and an export with ``overwrite`` (``--force``) removes the files the record names, for
every format, that it does not write again: the folder then holds the new export, as after a
first export into an empty folder. Never removed:

- a file the record does not name (a user's file, or one written by a napari-al before the
  record existed): when it is a label file of the format's layout (which a re-import reads),
  one line in the export's notes names it;
- a file outside the layout (:func:`in_layout`) of the format that recorded it, or outside the
  folder, whatever the record says;
- a file in ``keep`` (the project's own images: a project imported in place from an earlier
  ``--copy-images`` export uses the copied images).

A file an export writes over that no record names (a user's own file with a name the export
writes) is named in one line of the notes when it is replaced (:func:`_note_replaced`); it is
this export's file from then on, recorded as such. An export into the project's own folder is
refused before this module is reached (:mod:`~napari_al.core.formats.refusals`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from napari_al.core.data import SPLITS
from napari_al.core.formats.common import _write_text

#: The record's file name in the export folder (hidden: no reader or image search sees it).
MANIFEST_NAME = ".napari-al-export.json"

#: The names of the YOLO export's split list files and split folders.
_YOLO_SPLITS = (*SPLITS, "unassigned")

#: The formats whose exports the record names.
FORMATS = ("voc", "yolo", "coco")


def in_layout(fmt: str, rel: str, labels_only: bool = False) -> bool:
    """Whether ``rel`` (a ``/``-separated path inside an export folder) is a file a ``fmt``
    export writes: VOC ``Annotations/*.xml``, ``ImageSets/Main/*.txt``, ``JPEGImages/*``,
    ``classes.txt``; YOLO ``data.yaml``, ``classes.txt``, ``<split>.txt``, ``labels/*.txt``,
    ``labels/<split>/*.txt``, ``images/<split>/*``; COCO its JSON file, ``*.json`` at the
    top. ``labels_only``: only the files a re-import reads labels or splits from (no images,
    no class list)."""
    parts = PurePosixPath(rel).parts
    if not parts or any(p in ("", ".", "..") for p in parts):
        return False
    name = parts[-1]
    if fmt == "voc":
        labels = (len(parts) == 2 and parts[0] == "Annotations" and name.endswith(".xml")) or (
            len(parts) == 3 and parts[:2] == ("ImageSets", "Main") and name.endswith(".txt")
        )
        other = parts == ("classes.txt",) or (len(parts) == 2 and parts[0] == "JPEGImages")
    elif fmt == "yolo":
        lists = len(parts) == 1 and name.endswith(".txt") and name[:-4] in _YOLO_SPLITS
        label_file = parts[0] == "labels" and name.endswith(".txt")
        labels = lists or (
            label_file and (len(parts) == 2 or (len(parts) == 3 and parts[1] in _YOLO_SPLITS))
        )
        other = parts in (("data.yaml",), ("classes.txt",)) or (
            len(parts) == 3 and parts[0] == "images" and parts[1] in _YOLO_SPLITS
        )
    elif fmt == "coco":
        labels, other = len(parts) == 1 and name.endswith(".json") and name != MANIFEST_NAME, False
    else:
        return False
    return labels or (not labels_only and other)


def _read(out: Path) -> dict:
    """The record in ``out`` (``{}`` when there is none or it cannot be read)."""
    try:
        data = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _recorded(data: dict, fmt: str) -> list[str]:
    """The files the record names for ``fmt`` (none where it is not as this module writes)."""
    exports = data.get("exports")
    entry = exports.get(fmt) if isinstance(exports, dict) else None
    files = entry.get("files") if isinstance(entry, dict) else None
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []


def _rel(path: Path, out: Path) -> str | None:
    """``path`` relative to ``out``, ``/``-separated; None when it is not inside."""
    try:
        return Path(os.path.abspath(path)).relative_to(out).as_posix()
    except ValueError:
        return None


def _remove(path: Path, out: Path) -> None:
    """Remove a file (a copied OME-Zarr folder whole), then its folders left empty up to
    ``out`` (exclusive)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    for folder in path.parents:
        if folder == out or out not in folder.parents:
            break
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty


def finish_export(
    out: Path,
    fmt: str,
    written: list[Path],
    *,
    overwrite: bool,
    keep: Iterable[Path] = (),
    notes: list[str] | None = None,
    replaced: Iterable[Path] = (),
) -> list[Path]:
    """After a ``fmt`` export into folder ``out`` has written ``written``: with ``overwrite``,
    remove the files the earlier exports' record names (for every format) that are not in
    ``written`` (within the rules of the module docstring), and drop the other formats'
    records; then record ``written`` (with ``overwrite``; else added to the files recorded
    before that still exist, the other formats' records kept). A line per earlier format for
    what was removed, one naming the files of ``replaced`` (those the export wrote over) that
    no record names, and one for the label files of the layout left in ``out`` that no record
    names, go to ``notes``. Returns the paths removed. A file that cannot be removed (OSError)
    is named in ``notes`` and stays recorded.
    """
    out = Path(os.path.abspath(out))
    notes = notes if notes is not None else []
    data = _read(out)
    new = {r for r in (_rel(p, out) for p in written) if r is not None}
    before = {f: _recorded(data, f) for f in FORMATS}
    failed: dict[str, set[str]] = {f: set() for f in FORMATS}
    removed: list[Path] = []
    _note_replaced(notes, out, replaced, {r for f in FORMATS for r in before[f]})
    if overwrite:
        protected = {os.path.realpath(p) for p in keep}
        done = set(new)  # a file two formats recorded (classes.txt) is removed once
        for f in (fmt, *(other for other in FORMATS if other != fmt)):
            gone, why = _remove_stale(out, f, [r for r in before[f] if r not in done], protected)
            done |= set(before[f])
            removed += gone
            failed[f] = set(why)
            _note_results(notes, f, out, gone, [f"{r} ({w})" for r, w in why.items()])
    old = data.get("exports")
    exports = {k: v for k, v in old.items() if k not in FORMATS} if isinstance(old, dict) else {}
    for f in FORMATS:
        if f == fmt:
            files = new | failed[f]
            if not overwrite:
                files |= {r for r in before[f] if os.path.lexists(out / r)}
        else:
            files = failed[f] if overwrite else set(before[f]) - new
        if files or f == fmt:
            exports[f] = {"files": sorted(files)}
    _note_unknown(
        notes, fmt, out, {r for f in FORMATS if f in exports for r in exports[f]["files"]}
    )
    data["exports"] = exports
    data["written_by"] = "napari-al"
    _write_text(out / MANIFEST_NAME, json.dumps(data, indent=1) + "\n")
    return removed


def _remove_stale(
    out: Path, fmt: str, recorded: list[str], protected: set[str]
) -> tuple[list[Path], dict[str, str]]:
    """Remove the files of ``recorded`` (``fmt``'s record, less the files this export wrote)
    that lie in ``fmt``'s layout, exist and are not ``protected`` (real paths; the same file
    by another name, a symlink, is protected too). Returns the paths removed and, per file
    that could not be removed, why."""
    stale = [r for r in recorded if in_layout(fmt, r) and os.path.lexists(out / r)]
    stale = [r for r in stale if os.path.realpath(out / r) not in protected]
    removed: list[Path] = []
    failed: dict[str, str] = {}
    for rel in stale:
        path = out / rel
        try:
            _remove(path, out)
            removed.append(path)
        except OSError as exc:
            failed[rel] = str(exc.strerror or exc)
    return removed, failed


def _note_results(
    notes: list[str], fmt: str, out: Path, removed: list[Path], failed: list[str]
) -> None:
    if removed:
        n = len(removed)
        notes.append(
            f"removed {n} {'file' if n == 1 else 'files'} of the earlier {fmt.upper()} export "
            f"in {out} that this export does not write (e.g. {removed[0].relative_to(out)})"
        )
    if failed:
        notes.append(
            f"could not remove {len(failed)} stale files of the earlier {fmt.upper()} export "
            f"(e.g. {failed[0]}); a re-import of {out} reads them too"
        )


def _note_replaced(
    notes: list[str], out: Path, replaced: Iterable[Path], recorded: set[str]
) -> None:
    """Name the files this export wrote over (``replaced``) that no earlier export's record
    names: a user's own files (or an unrecorded export's) with the names this export writes.
    They are this export's files now, recorded as such (a later ``--force`` export of another
    format removes them), so the user is told at the moment they are replaced."""
    rels = [_rel(p, out) for p in replaced]
    theirs = sorted({r for r in rels if r and r != MANIFEST_NAME and r not in recorded})
    if theirs:
        n = len(theirs)
        names = ", ".join(theirs[:5]) + (", ..." if n > 5 else "")
        notes.append(
            f"replaced {n} {'file' if n == 1 else 'files'} in {out} napari-al had not "
            f"written: {names} (they now hold this export, and a later --force export of "
            "another format removes them)"
        )


def _note_unknown(notes: list[str], fmt: str, out: Path, recorded: set[str]) -> None:
    """Name the label files of ``fmt``'s layout in ``out`` that no record names (COCO's
    layout is the one JSON file this export wrote: none)."""
    if fmt not in ("voc", "yolo"):
        return
    unknown = []
    for top in ("Annotations", "ImageSets") if fmt == "voc" else ("labels", "."):
        folder = out / top
        if not folder.is_dir():
            continue
        files = folder.glob("*.txt") if top == "." else folder.rglob("*")
        for p in files:
            rel = p.relative_to(out).as_posix()
            if p.is_file() and rel not in recorded and in_layout(fmt, rel, labels_only=True):
                unknown.append(rel)
    if unknown:
        unknown.sort()
        n = len(unknown)
        notes.append(
            f"{n} label {'file' if n == 1 else 'files'} of the {fmt.upper()} layout in {out} "
            f"not written by this export, nor known to be a napari-al export's, "
            f"{'was' if n == 1 else 'were'} left as {'it was' if n == 1 else 'they were'} "
            f"(e.g. {unknown[0]}); a re-import of {out} reads {'it' if n == 1 else 'them'} "
            f"too: remove {'it' if n == 1 else 'them'}, or export into an empty folder"
        )
