"""Ultralytics' data.yaml conventions, for the YOLO reader and writer.

How a split entry resolves (as ``check_det_dataset`` resolves it), which split an entry named
under several keys takes (coco128.yaml names its train folder as ``val`` too), and the split
keys of the copied layout's data.yaml (``train`` and ``val`` always, which Ultralytics requires).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from napari_al.core.formats.common import _abspath, _is_dir, _is_file, _Reader

#: Which key's split an entry (folder or list) named under several keys takes: napari-al's own
#: keys first (its export names the pool folder under ``train`` too), then ``train`` (Ultralytics'
#: coco128.yaml names its train folder as ``val`` too, having no validation set).
_SHARED_ENTRY_PRIORITY = ("pool", "unlabelled", "unassigned", "train", "val", "valid", "test")


def yolo_entry_path(entry: str, base: Path) -> Path:
    """A data.yaml split entry resolved as Ultralytics' ``check_det_dataset`` does: relative to
    ``base`` (data.yaml's ``path``, default its folder); when that does not exist and the entry
    starts with ``../`` (Roboflow's ``train: ../train/images``), relative to ``base`` without
    the ``../``."""
    p = Path(entry)
    if p.is_absolute():
        return _abspath(p)
    x = _abspath(base / p)
    if not (_is_dir(x) or _is_file(x)) and entry.startswith("../"):
        x = _abspath(base / entry[3:])
    return x


def shared_entries_once(
    cfg: dict[str, Any], keys: list[str], base: Path, cfg_name: str, rd: _Reader
) -> list[tuple[Path, str, str]]:
    """Each split entry of data.yaml once: ``(resolved path, key, entry as written)``.

    An entry (folder or list file) that several keys name is read once, under the key first in
    :data:`_SHARED_ENTRY_PRIORITY`: Ultralytics' ``val: images/train2017`` beside ``train:
    images/train2017`` (coco128.yaml, a dataset without a validation set) reads those images
    as train, with a warning, where they used to be refused as listed in two splits; napari-al's
    export naming its pool folder under ``train`` and ``pool`` reads it as pool, silently.
    Images listed under two keys through different entries are still an error (read_yolo).
    """
    named: dict[Path, list[str]] = {}
    written: dict[Path, str] = {}
    for key in keys:
        for entry in cfg[key] if isinstance(cfg[key], list) else [cfg[key]]:
            p = yolo_entry_path(str(entry), base)
            written.setdefault(p, str(entry))
            if key not in named.setdefault(p, []):
                named[p].append(key)
    out = []
    for p, names in named.items():
        key = min(names, key=_SHARED_ENTRY_PRIORITY.index)
        also = [k for k in names if k != key]
        if also and not {"pool", "unassigned"} & set(names):
            why = (
                " (Ultralytics' convention for a dataset without a validation set)"
                if set(also) <= {"val", "valid"}
                else ""
            )
            rd.warn(
                f"{cfg_name}: {', '.join(also)}: {written[p]!r} names the {key} images "
                f"too{why}: read once, as {key}"
            )
        out.append((p, key, written[p]))
    return out


def split_lines(folders: list[str], notes: list[str]) -> list[str]:
    """data.yaml's split keys for the copied layout: ``train`` and ``val``, which Ultralytics
    requires, then ``test`` and napari-al's ``pool``, ``unlabelled`` (the pool's unreviewed
    images, never trained on) and ``unassigned``.

    ``train`` names what napari-al trains on: ``images/train`` and ``images/pool`` (the
    pool's reviewed images), those present. Without a ``val`` folder, ``val`` names the same
    folders, as Ultralytics' coco128.yaml does for want of a validation set. Each such choice
    appends a line to ``notes`` (the export's ``Dataset.warnings``).
    """
    entries = {s: [f"images/{s}"] for s in folders}
    trained = [f"images/{s}" for s in ("train", "pool") if s in folders]
    if "pool" in folders:
        _note(
            notes,
            f"data.yaml's train names images/pool{' too' if 'train' in folders else ''}: the "
            "pool's reviewed images, which napari-al trains on (Ultralytics reads only train, "
            "val and test)",
        )
    if trained:
        entries["train"] = trained
    elif folders:
        _note(
            notes,
            "the export has no train or pool images: Ultralytics needs a train split to train "
            "on it",
        )
    if "val" not in folders and trained:
        entries["val"] = trained
        _note(
            notes,
            f"the project has no val split: data.yaml's val names the training images "
            f"({', '.join(trained)}), as Ultralytics' coco128.yaml does for want of a "
            "validation set; Ultralytics' validation figures then measure images it trained on",
        )
    lines = []
    for key in ("train", "val", "test", "pool", "unlabelled", "unassigned"):
        if key in entries:
            value = entries[key]
            lines.append(f"{key}: {value[0] if len(value) == 1 else json.dumps(value)}")
    return lines


def _note(notes: list[str], line: str) -> None:
    """Append ``line`` to ``notes`` unless it is there (a dataset written twice)."""
    if line not in notes:
        notes.append(line)
