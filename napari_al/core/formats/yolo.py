"""YOLO (Ultralytics / Darknet): ``data.yaml``, ``obj.data`` or a class-name file; label
files ``labels/*.txt`` or beside the images."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from napari_al.core.data import SPLITS, BoxRecord, Dataset, ImageRecord
from napari_al.core.formats.common import (
    FormatError,
    _abspath,
    _check_labels,
    _check_line_names,
    _check_targets,
    _copy_image,
    _fix_box,
    _fmt,
    _inside,
    _is_dir,
    _is_file,
    _is_image_path,
    _iter_images,
    _one_error_type,
    _parse_number,
    _Reader,
    _snap,
    _undone_on_failure,
    _unique_stems,
    _write_text,
)
from napari_al.core.formats.darknet import (
    DARKNET_LIST_KEYS,
    darknet_path,
    names_files,
    read_image_list,
    read_names_file,
    read_obj_data,
)
from napari_al.core.formats.manifest import MANIFEST_NAME, finish_export
from napari_al.core.formats.refusals import export_errors
from napari_al.core.formats.ultralytics import shared_entries_once, split_lines
from napari_al.core.images import IMAGE_EXTENSIONS

#: YOLO data.yaml keys read as splits (``valid`` is Roboflow's spelling of ``val``; ``pool``,
#: ``unlabelled`` (the pool's unreviewed images of a copied export) and ``unassigned`` are this
#: package's additions, ignored by other tools).
_YOLO_SPLIT_KEYS = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "test": "test",
    "pool": "pool",
    "unlabelled": "pool",
    "unassigned": None,
}
#: The folders (copied layout) and list files (in place) of an export, in data.yaml's order.
_FOLDERS = (*SPLITS, "unlabelled", "unassigned")
_YOLO_YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")


def _yolo_names(root: Path, rd: _Reader) -> tuple[list[str], dict[str, Any], Path, str]:
    """Class names, the split configuration (data.yaml, else obj.data, else {}), the folder
    split paths are relative to, and the configuration's file name (for messages)."""
    cfg, base, cfg_name = _yolo_yaml(root, rd)
    if cfg.get("names") is not None:
        return _yolo_yaml_names(cfg["names"], cfg, cfg_name), cfg, base, cfg_name
    names_path: Path | None = None
    if not cfg_name:
        obj_data = read_obj_data(root, rd)
        if obj_data is not None:
            values, cfg_name = obj_data
            cfg = {
                k: str(darknet_path(values[k], root)) for k in DARKNET_LIST_KEYS if values.get(k)
            }
            if values.get("names"):
                names_path = darknet_path(values["names"], root)
                if not _is_file(names_path):
                    raise FormatError(f"{cfg_name}: names: {values['names']!r} not found")
    if names_path is not None:
        return read_names_file(names_path, rd.rel(names_path)), cfg, base, cfg_name
    for fname in ("classes.txt", "obj.names"):
        if _is_file(root / fname):
            return read_names_file(root / fname, fname), cfg, base, cfg_name
    others = names_files(root)
    if len(others) == 1:
        return read_names_file(others[0], others[0].name), cfg, base, cfg_name
    if others:
        raise FormatError(
            f"{root}: several class-name files ({', '.join(p.name for p in others)}); "
            "keep one, or name it in data.yaml or obj.data"
        )
    raise FormatError(
        f"{root}: no class names found (expected data.yaml with 'names', classes.txt, "
        "obj.data naming a .names file, or one *.names file)"
    )


def _yolo_yaml(root: Path, rd: _Reader) -> tuple[dict[str, Any], Path, str]:
    """data.yaml's content (or {}), the folder its paths are relative to, and its name.

    That folder is ``path:`` (Ultralytics' rule), except when ``path:`` is an absolute folder
    other than ``root`` while every split entry is found under ``root`` too: a dataset moved
    or copied since (an export with ``--copy-images`` names its own absolute folder) is read
    where it was found, with a warning, not from where it was written."""
    for fname in _YOLO_YAML_NAMES:
        yaml_path = root / fname
        if _is_file(yaml_path):
            break
    else:
        return {}, root, ""
    import yaml

    try:
        cfg = yaml.safe_load(yaml_path.read_text(encoding="utf-8-sig")) or {}
    except yaml.YAMLError as e:
        mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise FormatError(f"{fname}: not valid YAML ({at}{problem or e})") from None
    except (OSError, ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise FormatError(f"{fname}: not valid YAML ({e})") from None
    if not isinstance(cfg, dict):
        raise FormatError(f"{fname}: top level is a {type(cfg).__name__}, not a mapping")
    base = root
    if cfg.get("path"):
        p = Path(str(cfg["path"]))
        p = p if p.is_absolute() else root / p
        base = _abspath(p) if _is_dir(p) else root
        if p.is_absolute() and base != root and _split_entries_under(cfg, root):
            rd.warn(
                f"{fname}: path: {str(cfg['path'])!r} is another folder, but this one holds "
                f"every split it names (a moved or copied dataset): read from {root}"
            )
            base = root
    return cfg, base, fname


def _split_entries_under(cfg: dict[str, Any], root: Path) -> bool:
    """Whether data.yaml names splits, all relative and all present under ``root``."""
    entries = [
        e
        for k in _YOLO_SPLIT_KEYS
        if cfg.get(k)
        for e in (cfg[k] if isinstance(cfg[k], list) else [cfg[k]])
    ]
    return bool(entries) and all(
        isinstance(e, str) and not Path(e).is_absolute() and os.path.lexists(root / e)
        for e in entries
    )


def _yolo_yaml_names(names: Any, cfg: dict[str, Any], fname: str) -> list[str]:
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError, OverflowError):
            raise FormatError(f"{fname}: names keys must be integers 0..N-1") from None
        if keys != list(range(len(keys))):
            raise FormatError(f"{fname}: names keys are {keys}, expected 0..{len(keys) - 1}")
        out = [names.get(k, names.get(str(k))) for k in keys]
    elif isinstance(names, list):
        out = names
    else:
        raise FormatError(f"{fname}: names is a {type(names).__name__}, not a list or mapping")
    for i, n in enumerate(out):
        if not isinstance(n, (str, int)) or not str(n).strip():
            raise FormatError(f"{fname}: names[{i}] is {n!r}, not a non-empty name")
    out = [str(n).strip() for n in out]
    if len(set(out)) != len(out):
        raise FormatError(f"{fname}: duplicate class names")
    if "nc" in cfg and cfg["nc"] != len(out):
        raise FormatError(
            f"{fname}: nc is {cfg['nc']!r} but {len(out)} "
            f"{'name is' if len(out) == 1 else 'names are'} given"
        )
    return out


def _yolo_sources(
    cfg: dict[str, Any], root: Path, base: Path, cfg_name: str, rd: _Reader, allow_empty: bool
) -> tuple[list[tuple[Path, str | None]], set[Path]]:
    """(image, split) pairs from the split entries of data.yaml/obj.data, or from images/
    when there are none; and the list files read. Not ``allow_empty``: skipped entries that
    leave no image are an error (:func:`_nothing_left`)."""
    pairs: list[tuple[Path, str | None]] = []
    lists: set[Path] = set()
    keys = [k for k in _YOLO_SPLIT_KEYS if cfg.get(k)]
    if keys:
        bad: list[tuple[Path, str, str]] = []
        entries = shared_entries_once(cfg, keys, base, cfg_name, rd)
        for p, key, entry in entries:
            split = _YOLO_SPLIT_KEYS[key]
            if _is_dir(p):
                pairs += [(_abspath(q), split) for q in _iter_images(p)]
            elif _is_file(p) and p.suffix.lower() == ".txt":
                bases = list(dict.fromkeys([base, root, root.parent]))
                pairs += [(q, split) for q in read_image_list(p, rd, bases)]
                lists.add(p)
            else:
                bad.append((p, key, entry))
                if rd.strict:  # raises it, skippable (--skip-bad)
                    rd.skip(_bad_entry(p, key, entry, cfg_name), "entry")
        if bad and not pairs and not allow_empty:
            raise _nothing_left(bad, cfg_name, others=len(entries) > len(bad))
        for p, key, entry in bad:  # not strict: each named with what is imported instead
            rd.warn(
                f"{_bad_entry(p, key, entry, cfg_name)}; {_instead(pairs)} ({key} entry skipped)"
            )
        return pairs, lists
    img_root = root / "images" if (root / "images").is_dir() else root
    for p in _iter_images(img_root):
        if _inside(p, root / "labels"):
            continue
        first = p.relative_to(img_root).parts[0] if img_root != root else ""
        split = _YOLO_SPLIT_KEYS.get(first) if first != "unassigned" else None
        pairs.append((_abspath(p), split))
    return pairs, lists


def _entry_problem(p: Path) -> str:
    """What is wrong with the path ``p`` of a split entry that names no folder or list."""
    if os.path.lexists(p):
        return f"is neither a folder nor a .txt list ({p})"
    return f"not found ({p}: no such folder or .txt list)"


def _bad_entry(p: Path, key: str, entry: str, cfg_name: str) -> FormatError:
    """The error for a split entry that names no folder and no ``.txt`` list: it names the
    file, the key, the entry and its path, and the fix."""
    return FormatError(
        f"{cfg_name}: {key}: {entry!r} {_entry_problem(p)}; correct the path, or remove the "
        f"entry from {cfg_name}"
    )


def _nothing_left(bad: list[tuple[Path, str, str]], cfg_name: str, others: bool) -> FormatError:
    """The error for split entries that, skipped (``--skip-bad``), leave no image to import:
    ``others`` whether other entries exist (naming none). Each bad entry and the fix, on one
    line; importing nothing is no success."""
    listed = ", ".join(f"{key}: {entry!r} {_entry_problem(p)}" for p, key, entry in bad)
    one = len(bad) == 1
    fix = f"correct the path{'' if one else 's'}, or remove the entr{'y' if one else 'ies'}"
    rest = "; no other entry names an image" if others else ""
    return FormatError(f"{cfg_name}: {listed}; {fix} from {cfg_name}{rest}; nothing imported")


def _instead(pairs: list[tuple[Path, str | None]]) -> str:
    """What an import reads instead of a skipped split entry: the splits the other entries
    hold, with their image counts."""
    counts: dict[str, int] = {}
    for _, split in pairs:
        counts[split or "unassigned"] = counts.get(split or "unassigned", 0) + 1
    if not counts:
        return "no other entry names an image"
    held = ", ".join(f"{s} ({n} image{'s' if n != 1 else ''})" for s, n in counts.items())
    return f"imported the rest instead: {held}"


def _ultralytics_label(image: Path) -> Path | None:
    """The image path with its last ``images`` folder replaced by ``labels``, as ``.txt``."""
    parts = image.parts
    if "images" not in parts:
        return None
    k = len(parts) - 1 - parts[::-1].index("images")
    return Path(*parts[:k], "labels", *parts[k + 1 :]).with_suffix(".txt")


def _yolo_label_candidates(image: Path, split: str | None, root: Path, base: Path) -> list[Path]:
    """Where the label file of ``image`` may be, best first.

    Candidates inside the folder being imported come first, then those under data.yaml's
    ``path``, then the rest (Darknet lists naming images elsewhere, labels beside them): an
    export that lists images in place (``labels/<stem>.txt`` beside the lists) re-imports its
    own labels, not those beside the original images.
    """
    cands = []
    ultralytics = _ultralytics_label(image)
    if ultralytics is not None:
        cands.append(ultralytics)
    if split is not None:
        cands.append(root / "labels" / split / f"{image.stem}.txt")
    cands.append(root / "labels" / f"{image.stem}.txt")
    cands.append(image.with_suffix(".txt"))
    return sorted(cands, key=lambda c: 0 if _inside(c, root) else 1 if _inside(c, base) else 2)


def _read_yolo_labels(
    label: Path, rec: ImageRecord, classes: list[str], rd: _Reader
) -> list[BoxRecord]:
    rel = rd.rel(label)
    try:
        text = label.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{rel}: cannot read ({e})") from None
    W, H = rec.width, rec.height
    boxes = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{rel}: line {lineno}"
        try:
            boxes.append(_read_yolo_line(parts, where, W, H, classes, rd))
        except FormatError as e:
            rd.skip(e, "line")
            rec.skipped_objects += 1
    return boxes


def _read_yolo_line(
    parts: list[str], where: str, W: int, H: int, classes: list[str], rd: _Reader
) -> BoxRecord:
    n = len(parts)
    if n < 5:
        raise FormatError(f"{where}: has {n} fields, expected 5 (class cx cy w h)")
    if n > 6 and (n - 1) % 2 == 1:
        raise FormatError(f"{where}: has {n} fields, neither a box (5-6) nor a polygon (odd count)")
    c = _parse_number(parts[0], where, "class index")
    if not c.is_integer():
        raise FormatError(f"{where}: class index {parts[0]!r} is not an integer")
    c = int(c)
    if not 0 <= c < len(classes):
        raise FormatError(
            f"{where}: class index {c} is out of range "
            f"({len(classes)} classes: 0..{len(classes) - 1})"
        )
    fields = (
        ("cx", "cy", "w", "h", "score") if n <= 6 else [f"coordinate {k + 1}" for k in range(n)]
    )
    vals = [_parse_number(v, where, f) for v, f in zip(parts[1:], fields, strict=False)]
    score = None
    if n <= 6:
        cx, cy, w, h = vals[:4]
        if n == 6:
            score = vals[4]
        if w < 0 or h < 0:
            raise FormatError(f"{where}: width/height {_fmt(w)}/{_fmt(h)} is negative")
        nx1, ny1, nx2, ny2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    else:  # segmentation polygon: its bounding box
        xs, ys = vals[0::2], vals[1::2]
        nx1, ny1, nx2, ny2 = min(xs), min(ys), max(xs), max(ys)
    box = (_snap(nx1 * W), _snap(ny1 * H), _snap(nx2 * W), _snap(ny2 * H))
    x1, y1, x2, y2 = _fix_box(box, W, H, where, rd)
    return BoxRecord(x1, y1, x2, y2, classes[c], score)


@_one_error_type
def read_yolo(root: str | Path, *, strict: bool = True, allow_empty: bool = True) -> Dataset:
    """Read a YOLO (Ultralytics / darknet) dataset folder.

    Class names: ``data.yaml`` ``names`` (list or ``{index: name}``), else the ``names`` file of
    Darknet's ``obj.data``, else ``classes.txt``, ``obj.names``, else the one ``*.names`` (or
    ``_darknet.labels``) file. Images: the ``train``/``val``(``valid``)/``test`` entries of
    data.yaml, or of ``obj.data`` (see :mod:`~napari_al.core.formats.darknet`) (a
    folder or a ``.txt`` list of image paths each, relative to data.yaml's ``path``, default
    its folder; a missing ``../x`` falls back to ``x`` as in Ultralytics, for Roboflow), plus this
    package's ``pool`` and ``unassigned`` keys; without them every image under ``images/`` (split
    from its first sub-folder). The label file of an image is the first that exists of: the image
    path with its last ``images`` folder replaced by ``labels`` (Ultralytics),
    ``labels/<split>/<stem>.txt``, ``labels/<stem>.txt``, ``<image>.txt`` (darknet), those inside
    ``root`` before all others (labels resolve relative to the folder being imported, so an export
    listing images in place re-imports its own labels). An image with a label file is annotated (an
    empty file is a negative); one without is unannotated. Lines are ``class cx cy w h [score]`` or
    a segmentation polygon (``class x1 y1 x2 y2 ...``, reduced to its bounding box). A label file
    under ``labels/`` that matches no image is an error; one beside the images (Darknet) is a
    warning. Each line of a list file that names no image is an error naming file and line; a
    split entry that names no folder and no ``.txt`` list (a ``val:`` folder that does not
    exist) is an error naming the file, the key and the entry, skipped with ``strict=False``
    with a warning that says what was imported instead (the other entries' splits); with
    ``allow_empty=False``, skipped entries that leave no image to import are an error naming
    each (``napari-al import --skip-bad`` does not import nothing and succeed).
    """
    root = _abspath(root)
    if not root.is_dir():
        raise FormatError(f"{root}: not a folder")
    rd = _Reader(root, strict)
    classes, cfg, base, cfg_name = _yolo_names(root, rd)
    sources, lists = _yolo_sources(cfg, root, base, cfg_name, rd, allow_empty)

    images: list[ImageRecord] = []
    seen: dict[Path, ImageRecord] = {}
    used_labels: set[Path] = set()
    label_dirs: set[Path] = {root / "labels"}
    for path, split in sources:
        if path in seen:
            prev = seen[path]
            if prev.split is None:
                prev.split = split
            elif split is not None and split != prev.split:
                e = FormatError(f"{rd.rel(path)}: listed in splits {prev.split!r} and {split!r}")
                rd.skip(e, "duplicate listing")
            continue
        cands = _yolo_label_candidates(path, split, root, base)
        ultralytics = _ultralytics_label(path)
        if ultralytics is not None and _inside(ultralytics, root):
            label_dirs.add(ultralytics.parent)
        label = next((c for c in cands if _is_file(c)), None)
        try:
            if not _is_image_path(path):
                raise FormatError(f"{rd.rel(path)}: image not found")
            w, h = rd.size_of(path, "")
            rec = ImageRecord(
                path=path, width=w, height=h, split=split, annotated=label is not None
            )
            if label is not None:
                used_labels.add(_abspath(label))
                rec.boxes = _read_yolo_labels(label, rec, classes, rd)
        except FormatError as e:
            rd.skip(e, "image")
            if label is not None:
                used_labels.add(_abspath(label))
            continue
        seen[path] = rec
        images.append(rec)

    image_dirs = {path.parent for path, _split in sources}
    _report_orphan_labels(label_dirs, image_dirs, used_labels | lists, root, rd)
    return rd.dataset(classes, images, f"yolo:{root}")


def _report_orphan_labels(
    label_dirs: set[Path], image_dirs: set[Path], used: set[Path], root: Path, rd: _Reader
) -> None:
    """Report every ``.txt`` that no image took as its label file.

    Under ``labels/`` folders such a file is an error (skipped as a ``file`` when not strict);
    beside the images (Darknet) it is a warning, since other text files may live there too.
    Each file is reported once: a label folder inside another (``labels/train`` in
    ``labels/``) is walked as part of the outer one only.
    """
    for d in sorted(label_dirs):
        if not _is_dir(d) or any(o != d and _inside(d, o) for o in label_dirs):
            continue
        for dirpath, _dirs, files in os.walk(d):
            for f in sorted(files):
                p = _abspath(Path(dirpath) / f)
                if p.suffix.lower() == ".txt" and f != "classes.txt" and p not in used:
                    rd.skip(FormatError(f"{rd.rel(p)}: {_no_image(p, rd)}"), "file")
    for d in sorted(image_dirs - label_dirs):
        if not _inside(d, root) or any(_inside(d, ld) for ld in label_dirs) or not _is_dir(d):
            continue
        for p in sorted(d.iterdir()):
            p = _abspath(p)
            txt = p.suffix.lower() == ".txt" and p.name != "classes.txt"
            if txt and p not in used and _is_file(p):
                rd.warn(f"{rd.rel(p)}: no image found for this label file; left out")


def _no_image(label: Path, rd: _Reader) -> str:
    """Why the label file ``label`` has no image: none found, or (a copied layout written
    before exports renamed such images) its image is hidden, which folder scans skip."""
    images = _ultralytics_image_dir(label)
    if label.name.startswith(".") and images is not None:
        for ext in IMAGE_EXTENSIONS:
            hidden = images / f"{label.stem}{ext}"
            if _is_file(hidden):
                return (
                    f"its image {rd.rel(hidden)} is hidden (its name starts with '.'), which "
                    "folder scans skip, as Ultralytics' do; rename both without the dot"
                )
    return "no image found for this label file"


def _ultralytics_image_dir(label: Path) -> Path | None:
    """The folder of the image of ``label`` in the Ultralytics layout (its last ``labels``
    folder as ``images``), or None when its path has no ``labels`` folder."""
    parts = label.parent.parts
    if "labels" not in parts:
        return None
    k = len(parts) - 1 - parts[::-1].index("labels")
    return Path(*parts[:k], "images", *parts[k + 1 :])


def _yolo_lines(im: ImageRecord, index: dict[str, int]) -> str:
    lines = []
    for b in im.boxes:
        cx = (b.x1 + b.x2) / 2 / im.width
        cy = (b.y1 + b.y2) / 2 / im.height
        w = (b.x2 - b.x1) / im.width
        h = (b.y2 - b.y1) / im.height
        vals = [repr(float(v)) for v in (cx, cy, w, h)]
        if b.score is not None:
            vals.append(repr(float(b.score)))
        lines.append(f"{index[b.label]} {' '.join(vals)}\n")
    return "".join(lines)


def write_yolo(
    dataset: Dataset,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    copy_images: bool = False,
    keep: Iterable[Path] = (),
) -> list[Path]:
    """Write a YOLO dataset folder; returns the files written.

    Always writes ``data.yaml`` (``names`` as ``{index: name}``, ``nc``, one key per split) and
    ``classes.txt``. Label files are written for annotated images only (empty for negatives;
    ignore regions, which YOLO lacks, are left out); an unannotated image gets none and reads
    back unannotated (into the pool from train). Images with no split go under ``unassigned``.

    - ``copy_images=False`` (default, nothing copied): ``labels/<stem>.txt`` and one list file
      ``<split>.txt`` of absolute image paths per split, named in data.yaml. Image stems must
      be unique. :func:`read_yolo` reads it back; Ultralytics cannot (it looks for labels
      beside the images).
    - ``copy_images=True``: the Ultralytics layout ``images/<split>/<name>`` and
      ``labels/<split>/<stem>.txt`` (names made unique with ``_2``...), data.yaml with
      ``path:`` the export's absolute folder and ``<split>: images/<split>``, except that
      ``train`` names ``images/pool`` (the pool's reviewed images) as well, and ``val``, when
      there is no val split, names
      the ``train`` folders (:func:`~napari_al.core.formats.ultralytics.split_lines`, with a
      line in ``dataset.warnings`` for each): Ultralytics trains on it as is, ``train`` and
      ``val`` being always there; images without a label file are background to Ultralytics,
      unannotated to :func:`read_yolo`. The pool's unreviewed images (no label file) go to
      ``images/unlabelled`` (key ``unlabelled``, read back into the pool): under
      ``images/pool`` Ultralytics trained on them as background, every object in them
      unlabelled (found by a newcomer). Without train or pool images there is no ``train``
      (a line in ``dataset.warnings`` says so).

    The files written are recorded in ``.napari-al-export.json``; with ``overwrite`` those of
    earlier exports (any format) in ``out_dir`` not written again are removed, except the
    dataset's images and ``keep`` (:func:`~napari_al.core.formats.manifest.finish_export`).
    """
    out = _abspath(out_dir)
    index = _check_labels(dataset)
    plan: list[tuple[ImageRecord, str, Path | None, Path | None]] = []
    if copy_images:
        stems = _unique_stems(dataset.images, dataset.warnings)
        for im, stem in zip(dataset.images, stems, strict=True):
            pool_unseen = im.split == "pool" and not im.annotated  # never in data.yaml's train
            folder = "unlabelled" if pool_unseen else im.split or "unassigned"
            img = out / "images" / folder / f"{stem}{im.path.suffix}"
            lab = out / "labels" / folder / f"{stem}.txt" if im.annotated else None
            plan.append((im, folder, img, lab))
    else:
        owners: dict[str, Path] = {}
        for im in dataset.images:
            if im.path.stem in owners and owners[im.path.stem] != im.path:
                raise FormatError(
                    f"{im.path}: shares the file-name stem {im.path.stem!r} with "
                    f"{owners[im.path.stem]}; labels/<stem>.txt would collide "
                    "(copy the images: napari-al export --copy-images, copy_images=True)"
                )
            owners[im.path.stem] = im.path
            lab = out / "labels" / f"{im.path.stem}.txt" if im.annotated else None
            plan.append((im, im.split or "unassigned", None, lab))

    listed = [] if copy_images else [im.path for im, _, _, _ in plan]  # in the image lists
    _check_line_names(dataset, "yolo", [(p, _abspath(p)) for p in listed])
    folders = [s for s in _FOLDERS if any(f == s for _, f, _, _ in plan)]
    lists = {} if copy_images else {s: out / f"{s}.txt" for s in folders}
    targets = [out / "data.yaml", out / "classes.txt", *lists.values()]
    targets += [p for _, _, img, lab in plan for p in (img, lab) if p is not None]
    _check_targets(targets, overwrite)

    written: list[Path] = []
    with export_errors(out, out, overwrite), _undone_on_failure() as new:
        for im, _folder, img, lab in plan:
            if img is not None:
                _copy_image(Path(im.path), new.file(img))
                written.append(img)
            if lab is not None:
                _write_text(new.file(lab), _yolo_lines(im, index))
                written.append(lab)
        for s, p in lists.items():
            paths = "".join(f"{_abspath(im.path)}\n" for im, f, _, _ in plan if f == s)
            _write_text(new.file(p), paths)
            written.append(p)
        cfg_lines = ["# written by napari-al; 'pool' and 'unassigned' are napari-al extensions"]
        if copy_images:  # Ultralytics resolves the split folders against it, whatever the cwd
            cfg_lines.append(f"path: {json.dumps(str(out))}")
            cfg_lines += split_lines(folders, dataset.warnings)
        else:
            cfg_lines += [f"{s}: {s}.txt" for s in folders]
        cfg_lines.append(f"nc: {len(dataset.classes)}")
        cfg_lines.append("names:")
        cfg_lines += [f"  {i}: {json.dumps(c)}" for i, c in enumerate(dataset.classes)]
        _write_text(new.file(out / "data.yaml"), "\n".join(cfg_lines) + "\n")
        _write_text(new.file(out / "classes.txt"), "".join(f"{c}\n" for c in dataset.classes))
        written += [out / "data.yaml", out / "classes.txt"]
        new.file(out / MANIFEST_NAME)
        images = [im.path for im in dataset.images]  # never removed, nor keep
        done = {"overwrite": overwrite, "notes": dataset.warnings, "replaced": new.replaced}
        finish_export(out, "yolo", written, keep=[*images, *keep], **done)
    return written
