"""Darknet's side of the YOLO format: ``obj.data``, ``*.names`` class files and image lists.

Darknet keeps its configuration in ``obj.data`` (``key = value`` lines: ``classes``,
``train``, ``valid``, ``test``, ``names``, ``backup``), with paths relative to the folder
darknet runs in, which is usually the parent of the folder holding ``obj.data``
(``data/obj.data`` names ``data/train.txt``). Image lists hold one image path a line.
"""

from __future__ import annotations

from pathlib import Path

from napari_al.core.formats.common import (
    FormatError,
    _abspath,
    _is_dir,
    _is_file,
    _is_image_path,
    _Reader,
)

#: obj.data keys read as split lists (as data.yaml keys, see ``yolo._YOLO_SPLIT_KEYS``).
DARKNET_LIST_KEYS = ("train", "valid", "test")
#: Class-name files other tools write beside a Darknet set (Roboflow: ``_darknet.labels``).
_NAMES_SUFFIXES = (".names",)
_NAMES_FILES = ("_darknet.labels",)


def read_obj_data(root: Path, rd: _Reader) -> tuple[dict[str, str], str] | None:
    """``{key: value}`` of ``root/obj.data`` (else the single ``*.data`` file), and its name;
    ``None`` when there is none."""
    path = root / "obj.data"
    if not _is_file(path):
        found = sorted(p for p in root.glob("*.data") if _is_file(p))
        if len(found) != 1:
            return None
        path = found[0]
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, ValueError) as e:
        raise FormatError(f"{path.name}: cannot read ({e})") from None
    cfg: dict[str, str] = {}
    for n, line in enumerate(lines, start=1):
        s = line.split("#", 1)[0].strip()
        if not s:
            continue
        key, sep, value = s.partition("=")
        if not sep or not key.strip():
            raise FormatError(f"{path.name}: line {n}: {line.strip()!r} is not 'key = value'")
        cfg[key.strip()] = value.strip()
    return cfg, path.name


def darknet_path(value: str, root: Path) -> Path:
    """An ``obj.data`` path: relative to ``root``, else to its parent (darknet's usual working
    folder), else ``root/<file name>``; the first that exists (else the first candidate)."""
    p = Path(value)
    if p.is_absolute():
        return _abspath(p)
    cands = [root / p, root.parent / p, root / p.name]
    return _abspath(next((c for c in cands if _is_file(c) or _is_dir(c)), cands[0]))


def names_files(root: Path) -> list[Path]:
    """The class-name files in ``root`` other than ``classes.txt``/``obj.names``: ``*.names``,
    ``_darknet.labels``."""
    found = [
        p
        for p in root.iterdir()
        if (p.suffix.lower() in _NAMES_SUFFIXES or p.name in _NAMES_FILES)
        and p.name != "obj.names"
        and _is_file(p)
    ]
    return sorted(found)


def read_names_file(path: Path, shown: str) -> list[str]:
    """Class names of a one-name-a-line file (blank lines skipped; duplicates refused)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, ValueError) as e:
        raise FormatError(f"{shown}: cannot read ({e})") from None
    names = [ln.strip() for ln in lines if ln.strip()]
    if len(set(names)) != len(names):
        raise FormatError(f"{shown}: duplicate class names")
    return names


def read_image_list(path: Path, rd: _Reader, bases: list[Path]) -> list[Path]:
    """Image paths of a list file, each line checked; a line naming nothing is reported.

    A relative line is looked up relative to the list's folder, then each of ``bases``
    (data.yaml's ``path``, the dataset root, darknet's working folder); a line starting with
    ``./`` only relative to the list's folder (as Ultralytics reads it). A line naming
    nothing, or a folder, is a FormatError naming the list file and line (skipped, with
    ``strict=False``, as a ``line``).
    """
    rel = rd.rel(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, ValueError) as e:
        raise FormatError(f"{rel}: cannot read ({e})") from None
    out = []
    for n, line in enumerate(lines, start=1):
        s = line.strip()
        if not s:
            continue
        p = Path(s)
        if p.is_absolute():
            cands = [p]
        elif s.startswith("./"):
            cands = [path.parent / p]
        else:
            cands = list(dict.fromkeys(_abspath(b / p) for b in [path.parent, *bases]))
        cands = [_abspath(c) for c in cands]
        found = next((c for c in cands if _is_image_path(c)), None)
        try:
            if found is None:
                if any(_is_dir(c) for c in cands):
                    raise FormatError(f"{rel}: line {n}: {s!r} is a folder, not an image")
                also = (
                    "; also looked at " + ", ".join(rd.rel(c) for c in cands[1:])
                    if len(cands) > 1
                    else ""
                )
                raise FormatError(
                    f"{rel}: line {n}: {s!r} not found ({rd.rel(cands[0])}: image not found{also})"
                )
        except FormatError as e:
            rd.skip(e, "line")
            continue
        out.append(found)
    return out
