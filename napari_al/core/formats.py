"""Importing and exporting datasets: Pascal VOC, COCO, YOLO and plain image folders.

Every reader returns a :class:`~napari_al.core.data.Dataset` with boxes in this package's
convention (``[x1, y1, x2, y2]``, pixel edges on integers, see :mod:`napari_al.core.boxes`) and
absolute image paths; readers never write anything. Writers refuse to replace an existing file
unless ``overwrite=True`` (they check every target before writing the first one).

Errors and repairs
------------------
Malformed input raises :class:`FormatError` whose message names the file (relative to the
dataset root), the record or field and the problem, e.g.
``"Annotations/x.xml: object 3: bndbox/xmin is 'abc', not a number"``. With ``strict=True``
(the default) a reader raises on the first one; with ``strict=False`` it skips the bad box
(a bad box is dropped; the rest of its image is kept) or the bad file (the image is left out of
the import entirely, never turned into an unlabeled image) and reports each skip in
``Dataset.warnings``. Structural problems (no ``Annotations/`` folder, a JSON file that does not
parse) always raise.

Repairs, applied in both modes and recorded in ``Dataset.warnings``:

- a box partly outside the image is clipped to it (a box entirely outside is an error);
- a box of zero width or height is widened to 1 px (towards the inside of the image), so no
  annotated object is lost; a negative width/height or ``xmin > xmax`` is an error;
- a missing image size (VOC ``<size>``, COCO ``width``/``height``) is read from the image
  header. A size that disagrees with the image header is an error (the boxes would not fit).

Pixel conventions
-----------------
- VOC ``xmin, ymin, xmax, ymax`` are 1-based inclusive pixel indices: ``x1 = xmin - 1``,
  ``x2 = xmax`` (and back on export, as integers: non-integer boxes are rounded to the nearest
  pixel edge). BCCD's two "degenerate" boxes (``xmin == xmax``, ``ymin == ymax``) are therefore
  1 x 1 px boxes, kept as they are.
- COCO ``bbox`` is ``[x, y, width, height]`` in pixel edges: ``x1 = x``, ``x2 = x + width``.
- YOLO is ``class cx cy w h`` normalised by the image size. Values are written with Python's
  shortest round-trip ``repr``; on reading, a coordinate within 1e-6 px of an integer is snapped
  to it, so integer boxes survive a YOLO round trip exactly.

Layouts are described on each reader and writer.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from napari_al.core.data import SPLITS, BoxRecord, Dataset, ImageRecord
from napari_al.core.images import IMAGE_EXTENSIONS, ImageReadError, image_size

#: Formats :func:`read_dataset` understands (``images``: a plain folder of images).
READ_FORMATS = ("voc", "coco", "yolo", "images")
#: Formats :func:`write_dataset` writes.
WRITE_FORMATS = ("voc", "coco", "yolo")

#: YOLO data.yaml keys read as splits (``valid`` is Roboflow's spelling of ``val``; ``pool`` and
#: ``unassigned`` are this package's additions, ignored by other tools).
_YOLO_SPLIT_KEYS = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "test": "test",
    "pool": "pool",
    "unassigned": None,
}
_YOLO_YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")
_SNAP_TOL = 1e-6


class FormatError(ValueError):
    """Malformed dataset input (or an impossible export); the message names file and problem."""


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------


class _Reader:
    """Bookkeeping shared by the readers: root for messages, strictness and warnings."""

    def __init__(self, root: Path, strict: bool) -> None:
        self.root = root
        self.strict = strict
        self.warnings: list[str] = []

    def rel(self, path: Path) -> str:
        """``path`` relative to the dataset root when inside it (for short messages)."""
        if _inside(path, self.root):
            return Path(path).relative_to(self.root).as_posix()
        return str(path)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def skip(self, error: FormatError, what: str) -> None:
        """Raise ``error`` when strict, else record that ``what`` was skipped because of it."""
        if self.strict:
            raise error
        self.warnings.append(f"{error} ({what} skipped)")

    def size_of(self, image: Path, where: str) -> tuple[int, int]:
        """Image size from its header; unreadable images become a FormatError naming both."""
        try:
            return image_size(image)
        except ImageReadError as e:
            msg = str(e)
            if msg.startswith(str(image)):
                msg = self.rel(image) + msg[len(str(image)) :]
            raise FormatError(f"{where}: {msg}" if where else msg) from None


def _inside(path: Path, root: Path) -> bool:
    try:
        Path(path).relative_to(root)
        return True
    except ValueError:
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
        raise FormatError(f"{where}: {field} is {s!r}, not a number") from None
    if not math.isfinite(v):
        raise FormatError(f"{where}: {field} is {s!r}, not a finite number")
    return v


def _json_number(value: Any, where: str, field: str) -> float:
    """A finite float from a JSON value (bool and strings are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FormatError(f"{where}: {field} is {value!r}, not a number")
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


def _iter_images(folder: Path) -> Iterator[Path]:
    """Image files under ``folder``, recursively, sorted by path components, skipping hidden
    files and folders."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / name)
    yield from sorted(found, key=lambda p: p.parts)


def _check_targets(paths: Iterable[Path], overwrite: bool) -> None:
    """Refuse to write when any target exists (unless ``overwrite``), before writing anything."""
    for p in paths:
        if p.exists() and p.is_dir():
            raise FileExistsError(f"{p}: exists and is a folder; cannot write a file there")
        if p.exists() and not overwrite:
            raise FileExistsError(f"{p}: already exists; pass overwrite=True to replace it")


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _check_labels(dataset: Dataset) -> dict[str, int]:
    """Class index of each name; refuse boxes whose label is not in ``dataset.classes``."""
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
    return index


def _unique_stems(images: list[ImageRecord]) -> list[str]:
    """A file-name stem per image, made unique with ``_2``, ``_3``... where stems collide."""
    seen: dict[str, int] = {}
    taken = {im.path.stem for im in images}
    out = []
    for im in images:
        stem = im.path.stem
        if stem in seen:
            k = seen[stem] + 1
            while f"{stem}_{k}" in taken:
                k += 1
            seen[stem] = k
            stem = f"{stem}_{k}"
            taken.add(stem)
        else:
            seen[stem] = 1
        out.append(stem)
    return out


def _round_edge(v: float) -> int:
    return math.floor(v + 0.5)


def _snap(v: float) -> float:
    r = round(v)
    return float(r) if abs(v - r) < _SNAP_TOL else v


# --------------------------------------------------------------------------------------------
# Pascal VOC
# --------------------------------------------------------------------------------------------


def _voc_text(el: ET.Element, path: str) -> str | None:
    child = el.find(path)
    if child is None or child.text is None:
        return None
    return child.text.strip()


def _voc_find_image(xml_path: Path, ann: ET.Element, img_dir: Path) -> tuple[Path | None, str]:
    """Locate the image of a VOC XML: JPEGImages/<filename>, JPEGImages/<stem>.*, then <path>."""
    tried = []
    filename = _voc_text(ann, "filename")
    if filename:
        p = img_dir / filename
        tried.append(p)
        if p.is_file():
            return p, ""
    for ext in IMAGE_EXTENSIONS:
        for e in (ext, ext.upper()):
            p = img_dir / f"{xml_path.stem}{e}"
            if p.is_file():
                return p, ""
    tried.append(img_dir / f"{xml_path.stem}.*")
    path_text = _voc_text(ann, "path")
    if path_text:
        p = Path(path_text)
        if p.is_absolute() and p.is_file():
            return p, ""
        tried.append(p)
    return None, ", ".join(str(t) for t in tried)


def _read_voc_xml(
    xml_path: Path, img_dir: Path, rd: _Reader, classes: list[str] | None
) -> ImageRecord:
    rel = rd.rel(xml_path)
    try:
        ann = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise FormatError(f"{rel}: malformed XML ({e})") from None
    except OSError as e:
        raise FormatError(f"{rel}: cannot read ({e})") from None
    if ann.tag != "annotation":
        raise FormatError(f"{rel}: root element is <{ann.tag}>, not <annotation>")
    image, tried = _voc_find_image(xml_path, ann, img_dir)
    if image is None:
        raise FormatError(f"{rel}: image not found (looked for {tried})")
    image = _abspath(image)
    header = rd.size_of(image, rel)

    size = ann.find("size")
    w_text = None if size is None else _voc_text(size, "width")
    h_text = None if size is None else _voc_text(size, "height")
    if not w_text or not h_text:
        rd.warn(
            f"{rel}: size/width or size/height missing; using the image's {header[0]}x{header[1]}"
        )
        width, height = header
    else:
        width = _positive_int(_parse_number(w_text, rel, "size/width"), rel, "size/width")
        height = _positive_int(_parse_number(h_text, rel, "size/height"), rel, "size/height")
        if (width, height) != header:
            raise FormatError(
                f"{rel}: size is {width}x{height} but image {rd.rel(image)} is "
                f"{header[0]}x{header[1]}"
            )

    boxes: list[BoxRecord] = []
    for i, obj in enumerate(ann.findall("object"), start=1):
        where = f"{rel}: object {i}"
        try:
            boxes.append(_read_voc_object(obj, where, width, height, rd, classes))
        except FormatError as e:
            rd.skip(e, "object")
    return ImageRecord(path=image, width=width, height=height, boxes=boxes, annotated=True)


def _read_voc_object(
    obj: ET.Element, where: str, width: int, height: int, rd: _Reader, classes: list[str] | None
) -> BoxRecord:
    name = _voc_text(obj, "name")
    if name is None:
        raise FormatError(f"{where}: <name> is missing")
    if not name:
        raise FormatError(f"{where}: <name> is empty")
    if classes is not None and name not in classes:
        raise FormatError(f"{where}: class {name!r} is not one of {classes}")
    bb = obj.find("bndbox")
    if bb is None:
        raise FormatError(f"{where}: <bndbox> is missing")
    vals = []
    for key in ("xmin", "ymin", "xmax", "ymax"):
        el = bb.find(key)
        if el is None:
            raise FormatError(f"{where}: bndbox/{key} is missing")
        vals.append(_parse_number(el.text, where, f"bndbox/{key}"))
    xmin, ymin, xmax, ymax = vals
    if xmin > xmax:
        raise FormatError(f"{where}: box is inverted (xmin {_fmt(xmin)} > xmax {_fmt(xmax)})")
    if ymin > ymax:
        raise FormatError(f"{where}: box is inverted (ymin {_fmt(ymin)} > ymax {_fmt(ymax)})")
    x1, y1, x2, y2 = _fix_box((xmin - 1, ymin - 1, xmax, ymax), width, height, where, rd)
    return BoxRecord(x1, y1, x2, y2, name)


def _read_id_list(path: Path, rd: _Reader) -> list[tuple[int, str]]:
    """(line number, id) pairs of an ImageSets list (first token of each non-empty line)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{rd.rel(path)}: cannot read ({e})") from None
    return [(n, ln.split()[0]) for n, ln in enumerate(lines, 1) if ln.strip()]


def read_voc(root: str | Path, *, classes: list[str] | None = None, strict: bool = True) -> Dataset:
    """Read a Pascal VOC folder.

    Layout: ``Annotations/*.xml``, images in ``JPEGImages/`` (found by the XML's ``<filename>``,
    else by the XML's stem, else by an absolute ``<path>``, which is how :func:`write_voc`
    references images it did not copy), optional ``ImageSets/Main/{train,val,test,pool}.txt``
    (image ids; ``trainval.txt`` is used as train only when neither exists).

    Images with an XML are ``annotated=True``; images in ``JPEGImages/`` without one are
    included unannotated. The class order is ``classes`` when given (other names are then
    errors), else ``classes.txt`` in the root when present (extra names appended sorted, with a
    warning), else the sorted names found.
    """
    root = _abspath(root)
    ann_dir, img_dir = root / "Annotations", root / "JPEGImages"
    if not ann_dir.is_dir():
        raise FormatError(f"{root}: not a VOC folder (no Annotations/ folder)")
    rd = _Reader(root, strict)

    by_id: dict[str, ImageRecord] = {}
    failed: set[str] = set()
    claimed: set[Path] = set()
    xmls = sorted(p for p in ann_dir.iterdir() if p.suffix.lower() == ".xml" and p.is_file())
    for xml_path in xmls:
        try:
            rec = _read_voc_xml(xml_path, img_dir, rd, classes)
        except FormatError as e:
            rd.skip(e, "file")
            failed.add(xml_path.stem)
            continue
        by_id[xml_path.stem] = rec
        claimed.add(rec.path)

    if img_dir.is_dir():
        for p in sorted(img_dir.iterdir()):
            p = _abspath(p)
            if (
                p in claimed
                or p.stem in by_id
                or p.stem in failed
                or p.name.startswith(".")
                or p.suffix.lower() not in IMAGE_EXTENSIONS
            ):
                continue
            try:
                w, h = rd.size_of(p, "")
            except FormatError as e:
                rd.skip(e, "image")
                continue
            by_id[p.stem] = ImageRecord(path=p, width=w, height=h, annotated=False)

    # splits
    main = root / "ImageSets" / "Main"
    split_files = {s: main / f"{s}.txt" for s in ("train", "val", "test", "pool")}
    if not split_files["train"].is_file() and not split_files["val"].is_file():
        split_files["train"] = main / "trainval.txt"
    for split, path in split_files.items():
        if not path.is_file():
            continue
        for lineno, image_id in _read_id_list(path, rd):
            where = f"{rd.rel(path)}: line {lineno}"
            rec = by_id.get(image_id)
            try:
                if rec is None:
                    if image_id in failed:
                        continue
                    raise FormatError(f"{where}: image id {image_id!r} has no annotation or image")
                if rec.split is not None and rec.split != split:
                    raise FormatError(
                        f"{where}: image id {image_id!r} is already in split {rec.split!r}"
                    )
            except FormatError as e:
                rd.skip(e, "line")
                continue
            rec.split = split

    names = sorted({b.label for rec in by_id.values() for b in rec.boxes})
    class_list = list(classes) if classes is not None else _voc_class_order(root, names, rd)
    images = [by_id[k] for k in sorted(by_id)]
    return Dataset(classes=class_list, images=images, source=f"voc:{root}", warnings=rd.warnings)


def _voc_class_order(root: Path, names: list[str], rd: _Reader) -> list[str]:
    path = root / "classes.txt"
    if not path.is_file():
        return names
    try:
        listed = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"classes.txt: cannot read ({e})") from None
    order = list(dict.fromkeys(listed))
    extra = [n for n in names if n not in order]
    if extra:
        rd.warn(f"classes.txt: classes {extra} are used but not listed; appended")
    return order + extra


def _voc_xml(im: ImageRecord, image_path: Path) -> str:
    """The VOC XML of one image (integer 1-based inclusive coordinates)."""
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = image_path.parent.name
    ET.SubElement(ann, "filename").text = image_path.name
    ET.SubElement(ann, "path").text = str(image_path)
    src = ET.SubElement(ann, "source")
    ET.SubElement(src, "database").text = "napari-al"
    size = ET.SubElement(ann, "size")
    ET.SubElement(size, "width").text = str(im.width)
    ET.SubElement(size, "height").text = str(im.height)
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(ann, "segmented").text = "0"
    for b in im.boxes:
        xmin, ymin = _round_edge(b.x1) + 1, _round_edge(b.y1) + 1
        xmax, ymax = max(_round_edge(b.x2), xmin), max(_round_edge(b.y2), ymin)
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = b.label
        ET.SubElement(obj, "pose").text = "Unspecified"
        touches = xmin <= 1 or ymin <= 1 or xmax >= im.width or ymax >= im.height
        ET.SubElement(obj, "truncated").text = "1" if touches else "0"
        ET.SubElement(obj, "difficult").text = "0"
        bb = ET.SubElement(obj, "bndbox")
        for key, v in (("xmin", xmin), ("ymin", ymin), ("xmax", xmax), ("ymax", ymax)):
            ET.SubElement(bb, key).text = str(v)
    ET.indent(ann, space="\t")
    return ET.tostring(ann, encoding="unicode") + "\n"


def write_voc(
    dataset: Dataset, out_dir: str | Path, *, overwrite: bool = False, copy_images: bool = False
) -> list[Path]:
    """Write a VOC folder; returns the files written.

    Writes ``Annotations/<stem>.xml`` for every annotated image (stems made unique with
    ``_2``...), ``ImageSets/Main/<split>.txt`` per split and ``classes.txt`` (class order).
    Without ``copy_images`` the XML's ``<path>`` holds the absolute image path (read back by
    :func:`read_voc`) and unannotated images are not exported; with it images are copied to
    ``JPEGImages/`` (unannotated ones too). Coordinates are integers: non-integer boxes are
    rounded to the nearest pixel edge.
    """
    out = _abspath(out_dir)
    _check_labels(dataset)
    stems = _unique_stems(dataset.images)
    plan: list[tuple[ImageRecord, str, Path]] = []
    for im, stem in zip(dataset.images, stems, strict=True):
        if not (im.annotated or copy_images):
            continue
        dest = out / "JPEGImages" / f"{stem}{im.path.suffix}" if copy_images else im.path
        plan.append((im, stem, dest))
    targets = [out / "Annotations" / f"{stem}.xml" for im, stem, _ in plan if im.annotated]
    if copy_images:
        targets += [dest for _, _, dest in plan]
    splits = {s: [stem for im, stem, _ in plan if im.split == s] for s in SPLITS}
    split_paths = {s: out / "ImageSets" / "Main" / f"{s}.txt" for s, ids in splits.items() if ids}
    targets += [*split_paths.values(), out / "classes.txt"]
    _check_targets(targets, overwrite)

    written = []
    for im, stem, dest in plan:
        if copy_images:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(im.path, dest)
            written.append(dest)
        if im.annotated:
            p = out / "Annotations" / f"{stem}.xml"
            _write_text(p, _voc_xml(im, dest))
            written.append(p)
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    for s, p in split_paths.items():
        _write_text(p, "".join(f"{i}\n" for i in splits[s]))
        written.append(p)
    _write_text(out / "classes.txt", "".join(f"{c}\n" for c in dataset.classes))
    written.append(out / "classes.txt")
    return written


# --------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------


def _coco_id(value: Any, where: str, field: str) -> int | str:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise FormatError(f"{where}: {field} is {value!r}, not an integer or string id")
    return value


def read_coco(
    json_path: str | Path, image_root: str | Path | None = None, *, strict: bool = True
) -> Dataset:
    """Read a COCO detection JSON file.

    ``file_name`` may be absolute or relative to ``image_root`` (default: the JSON file's
    folder). Classes follow the category ids in ascending order. Without an ``annotations``
    key (an image-info file) all images are unannotated; otherwise every listed image is
    annotated (COCO annotations are exhaustive, so an image with no annotations is a reviewed
    negative). This package's optional extensions are read when present: an image's ``split``
    and ``annotated`` keys and an annotation's ``score``. ``iscrowd``/``segmentation`` are
    ignored (crowd boxes are kept as boxes).
    """
    json_path = _abspath(json_path)
    root = json_path.parent
    base = _abspath(image_root) if image_root is not None else root
    rd = _Reader(root, strict)
    name = rd.rel(json_path)
    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FormatError(f"{name}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"{name}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise FormatError(f"{name}: top level is a {type(data).__name__}, not an object")
    if not isinstance(data.get("images"), list):
        raise FormatError(f"{name}: 'images' is missing or not a list")
    has_annotations = "annotations" in data
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise FormatError(f"{name}: 'annotations' is not a list")
    cats = data.get("categories", [])
    if not isinstance(cats, list):
        raise FormatError(f"{name}: 'categories' is not a list")
    if anns and "categories" not in data:
        raise FormatError(f"{name}: 'categories' is missing")

    # categories
    cat_names: dict[int | str, str] = {}
    for i, cat in enumerate(cats):
        where = f"{name}: categories[{i}]"
        try:
            if not isinstance(cat, dict):
                raise FormatError(f"{where}: is a {type(cat).__name__}, not an object")
            for key in ("id", "name"):
                if key not in cat:
                    raise FormatError(f"{where}: key '{key}' is missing")
            cid = _coco_id(cat["id"], where, "id")
            cname = cat["name"]
            if not isinstance(cname, str) or not cname.strip():
                raise FormatError(f"{where}: name is {cname!r}, not a non-empty string")
            if cid in cat_names:
                raise FormatError(f"{where}: duplicate category id {cid!r}")
            if cname.strip() in cat_names.values():
                raise FormatError(f"{where}: duplicate category name {cname!r}")
        except FormatError as e:
            rd.skip(e, "category")
            continue
        cat_names[cid] = cname.strip()
    classes = [cat_names[k] for k in sorted(cat_names, key=lambda k: (isinstance(k, str), k))]

    # images
    def valid_id(im: Any) -> bool:  # True == 1 in a dict: a bool id must not count as 1
        return isinstance(im, dict) and type(im.get("id")) in (int, str)

    id_counts: dict[Any, int] = {}
    for im in data["images"]:
        if valid_id(im):
            id_counts[im["id"]] = id_counts.get(im["id"], 0) + 1
    records: dict[int | str, ImageRecord] = {}
    bad_images: set[Any] = set()
    for i, im in enumerate(data["images"]):
        where = f"{name}: images[{i}]"
        try:
            rec, iid = _read_coco_image(im, where, base, rd, id_counts, has_annotations)
        except FormatError as e:
            rd.skip(e, "image")
            if valid_id(im):
                bad_images.add(im["id"])
            continue
        records[iid] = rec

    # annotations
    seen_ann: set[Any] = set()
    for i, ann in enumerate(anns):
        where = f"{name}: annotations[{i}]"
        try:
            if not isinstance(ann, dict):
                raise FormatError(f"{where}: is a {type(ann).__name__}, not an object")
            if "id" in ann:
                where = f"{where} (id {ann['id']!r})"
            for key in ("id", "image_id", "category_id", "bbox"):
                if key not in ann:
                    raise FormatError(f"{where}: key '{key}' is missing")
            aid = _coco_id(ann["id"], where, "id")
            if aid in seen_ann:
                raise FormatError(f"{where}: duplicate annotation id {aid!r}")
            seen_ann.add(aid)
            image_id = _coco_id(ann["image_id"], where, "image_id")
            if image_id in bad_images:
                continue  # its image was skipped (and reported) already
            rec = records.get(image_id)
            if rec is None:
                raise FormatError(f"{where}: image_id {image_id!r} matches no image")
            cid = _coco_id(ann["category_id"], where, "category_id")
            label = cat_names.get(cid)
            if label is None:
                raise FormatError(f"{where}: category_id {cid!r} matches no category")
            bbox = ann["bbox"]
            if not isinstance(bbox, list) or len(bbox) != 4:
                n = len(bbox) if isinstance(bbox, list) else type(bbox).__name__
                raise FormatError(f"{where}: bbox has {n} values, expected 4 [x, y, width, height]")
            x, y, w, h = (_json_number(v, where, f"bbox[{k}]") for k, v in enumerate(bbox))
            if w < 0 or h < 0:
                raise FormatError(f"{where}: bbox {_fmt_box(bbox)} has a negative width or height")
            score = None
            if ann.get("score") is not None:
                score = _json_number(ann["score"], where, "score")
            x1, y1, x2, y2 = _fix_box((x, y, x + w, y + h), rec.width, rec.height, where, rd)
        except FormatError as e:
            rd.skip(e, "annotation")
            continue
        rec.boxes.append(BoxRecord(x1, y1, x2, y2, label, score))
    return Dataset(
        classes=classes,
        images=list(records.values()),
        source=f"coco:{json_path}",
        warnings=rd.warnings,
    )


def _read_coco_image(
    im: Any,
    where: str,
    base: Path,
    rd: _Reader,
    id_counts: dict[Any, int],
    has_annotations: bool,
) -> tuple[ImageRecord, int | str]:
    if not isinstance(im, dict):
        raise FormatError(f"{where}: is a {type(im).__name__}, not an object")
    for key in ("id", "file_name"):
        if key not in im:
            raise FormatError(f"{where}: key '{key}' is missing")
    iid = _coco_id(im["id"], where, "id")
    if id_counts.get(iid, 0) > 1:
        raise FormatError(f"{where}: duplicate image id {iid!r} ({id_counts[iid]} images share it)")
    fname = im["file_name"]
    if not isinstance(fname, str) or not fname.strip():
        raise FormatError(f"{where}: file_name is {fname!r}, not a non-empty string")
    path = Path(fname)
    path = _abspath(path if path.is_absolute() else base / path)
    if not path.is_file():
        raise FormatError(f"{where}: image file {fname!r} not found (looked at {path})")
    header = rd.size_of(path, where)
    if "width" in im and "height" in im:
        w = _positive_int(_json_number(im["width"], where, "width"), where, "width")
        h = _positive_int(_json_number(im["height"], where, "height"), where, "height")
        if (w, h) != header:
            raise FormatError(
                f"{where}: width x height is {w}x{h} but image {fname!r} is {header[0]}x{header[1]}"
            )
    else:
        rd.warn(f"{where}: width/height missing; using the image's {header[0]}x{header[1]}")
        w, h = header
    split = im.get("split")
    if split is not None and split not in SPLITS:
        raise FormatError(f"{where}: split is {split!r}, not one of {list(SPLITS)}")
    annotated = im.get("annotated", has_annotations)
    if not isinstance(annotated, bool):
        raise FormatError(f"{where}: annotated is {annotated!r}, not true/false")
    return ImageRecord(path=path, width=w, height=h, split=split, annotated=annotated), iid


def _json_num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


def write_coco(
    dataset: Dataset,
    json_path: str | Path,
    *,
    overwrite: bool = False,
    image_root: str | Path | None = None,
) -> list[Path]:
    """Write a COCO detection JSON file; returns ``[json_path]``.

    Category ids are 1..C in class order; image ids 1..N; ``bbox = [x1, y1, x2 - x1, y2 - y1]``
    with ``area`` and ``iscrowd = 0``. ``file_name`` is relative to ``image_root`` when given
    (every image must lie under it), else relative to the JSON file's folder for images under
    it and absolute otherwise, so no image is copied. Extensions: ``split`` (when set),
    ``annotated: false`` for unannotated images and ``score`` for scored boxes; other tools
    ignore them (note that they would treat unannotated images as negatives).
    """
    json_path = _abspath(json_path)
    index = _check_labels(dataset)
    base = _abspath(image_root) if image_root is not None else json_path.parent
    _check_targets([json_path], overwrite)
    images, annotations = [], []
    aid = 0
    for iid, im in enumerate(dataset.images, start=1):
        p = _abspath(im.path)
        if _inside(p, base):
            fname = Path(os.path.relpath(p, base)).as_posix()
        elif image_root is not None:
            raise FormatError(f"{p}: image is not under image_root {base}")
        else:
            fname = str(p)
        entry: dict[str, Any] = {
            "id": iid,
            "file_name": fname,
            "width": im.width,
            "height": im.height,
        }
        if im.split is not None:
            entry["split"] = im.split
        if not im.annotated:
            entry["annotated"] = False
        images.append(entry)
        for b in im.boxes:
            aid += 1
            w, h = b.x2 - b.x1, b.y2 - b.y1
            a: dict[str, Any] = {
                "id": aid,
                "image_id": iid,
                "category_id": index[b.label] + 1,
                "bbox": [_json_num(b.x1), _json_num(b.y1), _json_num(w), _json_num(h)],
                "area": _json_num(w * h),
                "iscrowd": 0,
            }
            if b.score is not None:
                a["score"] = float(b.score)
            annotations.append(a)
    data = {
        "info": {"description": "exported by napari-al", "source": dataset.source},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": c, "supercategory": ""} for i, c in enumerate(dataset.classes)
        ],
    }
    _write_text(json_path, json.dumps(data))
    return [json_path]


# --------------------------------------------------------------------------------------------
# YOLO
# --------------------------------------------------------------------------------------------


def _yolo_names(root: Path, rd: _Reader) -> tuple[list[str], dict[str, Any], Path]:
    """Class names, the data.yaml content (or {}) and the folder split paths are relative to."""
    for fname in _YOLO_YAML_NAMES:
        yaml_path = root / fname
        if yaml_path.is_file():
            break
    else:
        yaml_path = None
    cfg: dict[str, Any] = {}
    base = root
    if yaml_path is not None:
        import yaml

        try:
            cfg = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise FormatError(f"{fname}: not valid YAML ({e})") from None
        if not isinstance(cfg, dict):
            raise FormatError(f"{fname}: top level is a {type(cfg).__name__}, not a mapping")
        if cfg.get("path"):
            p = Path(str(cfg["path"]))
            p = p if p.is_absolute() else root / p
            base = _abspath(p) if p.is_dir() else root
        names = cfg.get("names")
        if names is not None:
            return _yolo_yaml_names(names, cfg, fname), cfg, base
    for fname in ("classes.txt", "obj.names"):
        p = root / fname
        if p.is_file():
            try:
                lines = p.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                raise FormatError(f"{fname}: cannot read ({e})") from None
            names = [ln.strip() for ln in lines if ln.strip()]
            if len(set(names)) != len(names):
                raise FormatError(f"{fname}: duplicate class names")
            return names, cfg, base
    raise FormatError(
        f"{root}: no class names found (expected data.yaml with 'names', or classes.txt)"
    )


def _yolo_yaml_names(names: Any, cfg: dict[str, Any], fname: str) -> list[str]:
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError):
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
        raise FormatError(f"{fname}: nc is {cfg['nc']!r} but {len(out)} names are given")
    return out


def _yolo_sources(
    cfg: dict[str, Any], root: Path, base: Path, rd: _Reader
) -> list[tuple[Path, str | None]]:
    """(image, split) pairs from data.yaml split entries, or from images/ when there are none."""
    pairs: list[tuple[Path, str | None]] = []
    keys = [k for k in _YOLO_SPLIT_KEYS if cfg.get(k)]
    if keys:
        for key in keys:
            split = _YOLO_SPLIT_KEYS[key]
            entries = cfg[key] if isinstance(cfg[key], list) else [cfg[key]]
            for entry in entries:
                p = Path(str(entry))
                p = _abspath(p if p.is_absolute() else base / p)
                if p.is_dir():
                    pairs += [(_abspath(q), split) for q in _iter_images(p)]
                elif p.is_file() and p.suffix.lower() == ".txt":
                    pairs += [(q, split) for q in _read_image_list(p, rd)]
                else:
                    raise FormatError(
                        f"data.yaml: {key}: {entry!r} is neither a folder nor a .txt list ({p})"
                    )
        return pairs
    img_root = root / "images" if (root / "images").is_dir() else root
    for p in _iter_images(img_root):
        if _inside(p, root / "labels"):
            continue
        first = p.relative_to(img_root).parts[0] if img_root != root else ""
        split = _YOLO_SPLIT_KEYS.get(first) if first != "unassigned" else None
        pairs.append((_abspath(p), split))
    return pairs


def _read_image_list(path: Path, rd: _Reader) -> list[Path]:
    """Image paths of a YOLO list file (relative lines are relative to the file's folder)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{rd.rel(path)}: cannot read ({e})") from None
    out = []
    for ln in lines:
        s = ln.strip()
        if s:
            p = Path(s)
            out.append(_abspath(p if p.is_absolute() else path.parent / p))
    return out


def _yolo_label_candidates(image: Path, split: str | None, root: Path) -> list[Path]:
    cands = []
    parts = image.parts
    if "images" in parts:
        k = len(parts) - 1 - parts[::-1].index("images")
        cands.append(Path(*parts[:k], "labels", *parts[k + 1 :]).with_suffix(".txt"))
    if split is not None:
        cands.append(root / "labels" / split / f"{image.stem}.txt")
    cands.append(root / "labels" / f"{image.stem}.txt")
    cands.append(image.with_suffix(".txt"))
    return cands


def _read_yolo_labels(
    label: Path, rec: ImageRecord, classes: list[str], rd: _Reader
) -> list[BoxRecord]:
    rel = rd.rel(label)
    try:
        text = label.read_text(encoding="utf-8")
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


def read_yolo(root: str | Path, *, strict: bool = True) -> Dataset:
    """Read a YOLO (Ultralytics / darknet) dataset folder.

    Class names: ``data.yaml`` ``names`` (list or ``{index: name}``), else ``classes.txt`` or
    ``obj.names``. Images: the ``train``/``val``(``valid``)/``test`` entries of data.yaml (a
    folder or a ``.txt`` list of image paths each, relative to data.yaml's ``path``, default
    its folder), plus this package's ``pool`` and ``unassigned`` keys; without them every image
    under ``images/`` (split from its first sub-folder). The label file of an image is the
    first that exists of: the image path with its last ``images`` folder replaced by ``labels``
    (Ultralytics), ``labels/<split>/<stem>.txt``, ``labels/<stem>.txt``, ``<image>.txt``
    (darknet). An image with a label file is annotated (an empty file is a negative); one
    without is unannotated. Lines are ``class cx cy w h [score]`` or a segmentation polygon
    (``class x1 y1 x2 y2 ...``, reduced to its bounding box). A label file under ``labels/``
    that matches no image is an error.
    """
    root = _abspath(root)
    if not root.is_dir():
        raise FormatError(f"{root}: not a folder")
    rd = _Reader(root, strict)
    classes, cfg, base = _yolo_names(root, rd)
    sources = _yolo_sources(cfg, root, base, rd)

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
        cands = _yolo_label_candidates(path, split, root)
        if "images" in path.parts and _inside(cands[0], root):
            label_dirs.add(cands[0].parent)
        label = next((c for c in cands if c.is_file()), None)
        try:
            if not path.is_file():
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

    for d in sorted(label_dirs):
        if not d.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(d):
            for f in sorted(files):
                p = _abspath(Path(dirpath) / f)
                if p.suffix.lower() == ".txt" and f != "classes.txt" and p not in used_labels:
                    rd.skip(FormatError(f"{rd.rel(p)}: no image found for this label file"), "file")
    return Dataset(classes=classes, images=images, source=f"yolo:{root}", warnings=rd.warnings)


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
    dataset: Dataset, out_dir: str | Path, *, overwrite: bool = False, copy_images: bool = False
) -> list[Path]:
    """Write a YOLO dataset folder; returns the files written.

    Always writes ``data.yaml`` (``names`` as ``{index: name}``, ``nc``, one key per split) and
    ``classes.txt``. Label files are written for annotated images only (empty for negatives);
    unannotated images get none and read back as unannotated. Images with no split go under
    the ``unassigned`` key.

    - ``copy_images=False`` (default, nothing copied): ``labels/<stem>.txt`` and one list file
      ``<split>.txt`` of absolute image paths per split, named in data.yaml. Image stems must
      be unique. :func:`read_yolo` reads it back; Ultralytics cannot (it looks for labels
      beside the images).
    - ``copy_images=True``: the Ultralytics layout ``images/<split>/<name>`` and
      ``labels/<split>/<stem>.txt`` (names made unique with ``_2``...).
    """
    out = _abspath(out_dir)
    index = _check_labels(dataset)
    plan: list[tuple[ImageRecord, str, Path | None, Path | None]] = []
    if copy_images:
        stems = _unique_stems(dataset.images)
        for im, stem in zip(dataset.images, stems, strict=True):
            folder = im.split or "unassigned"
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
                    "(use copy_images=True)"
                )
            owners[im.path.stem] = im.path
            lab = out / "labels" / f"{im.path.stem}.txt" if im.annotated else None
            plan.append((im, im.split or "unassigned", None, lab))

    folders = [s for s in (*SPLITS, "unassigned") if any(f == s for _, f, _, _ in plan)]
    lists = {} if copy_images else {s: out / f"{s}.txt" for s in folders}
    targets = [out / "data.yaml", out / "classes.txt", *lists.values()]
    targets += [p for _, _, img, lab in plan for p in (img, lab) if p is not None]
    _check_targets(targets, overwrite)

    written: list[Path] = []
    for im, _folder, img, lab in plan:
        if img is not None:
            img.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(im.path, img)
            written.append(img)
        if lab is not None:
            _write_text(lab, _yolo_lines(im, index))
            written.append(lab)
    for s, p in lists.items():
        _write_text(p, "".join(f"{_abspath(im.path)}\n" for im, f, _, _ in plan if f == s))
        written.append(p)
    cfg_lines = ["# written by napari-al; 'pool' and 'unassigned' are napari-al extensions"]
    for s in folders:
        cfg_lines.append(f"{s}: {s}.txt" if not copy_images else f"{s}: images/{s}")
    cfg_lines.append(f"nc: {len(dataset.classes)}")
    cfg_lines.append("names:")
    cfg_lines += [f"  {i}: {json.dumps(c)}" for i, c in enumerate(dataset.classes)]
    _write_text(out / "data.yaml", "\n".join(cfg_lines) + "\n")
    _write_text(out / "classes.txt", "".join(f"{c}\n" for c in dataset.classes))
    written += [out / "data.yaml", out / "classes.txt"]
    return written


# --------------------------------------------------------------------------------------------
# plain image folders, dispatch
# --------------------------------------------------------------------------------------------


def read_image_folder(root: str | Path, *, strict: bool = True) -> Dataset:
    """All images under ``root`` (recursive, sorted, hidden files/folders skipped), unannotated.

    Sizes come from the image headers; an unreadable image is an error (skipped with a warning
    when ``strict=False``).
    """
    root = _abspath(root)
    if not root.is_dir():
        raise FormatError(f"{root}: not a folder")
    rd = _Reader(root, strict)
    images = []
    for p in _iter_images(root):
        p = _abspath(p)
        try:
            w, h = rd.size_of(p, "")
        except FormatError as e:
            rd.skip(e, "image")
            continue
        images.append(ImageRecord(path=p, width=w, height=h, annotated=False))
    return Dataset(classes=[], images=images, source=f"images:{root}", warnings=rd.warnings)


def detect_format(path: str | Path) -> str:
    """Guess the format of ``path``: coco (a .json file), voc, yolo or images (a folder)."""
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".json":
        return "coco"
    if not p.is_dir():
        raise FormatError(f"{p}: not a folder or a COCO .json file")
    if (p / "Annotations").is_dir():
        return "voc"
    if (
        any((p / n).is_file() for n in (*_YOLO_YAML_NAMES, "classes.txt", "obj.names"))
        or (p / "labels").is_dir()
    ):
        return "yolo"
    return "images"


def read_dataset(
    path: str | Path, fmt: str | None = None, *, strict: bool = True, **kwargs: Any
) -> Dataset:
    """Read a dataset in ``fmt`` (voc, coco, yolo, images; ``None``: :func:`detect_format`).

    Extra keyword arguments go to the reader (``classes`` for VOC, ``image_root`` for COCO).
    """
    fmt = detect_format(path) if fmt is None else fmt
    readers = {"voc": read_voc, "coco": read_coco, "yolo": read_yolo, "images": read_image_folder}
    if fmt not in readers:
        raise ValueError(f"unknown format {fmt!r}; expected one of {list(READ_FORMATS)}")
    return readers[fmt](path, strict=strict, **kwargs)


def write_dataset(
    dataset: Dataset, path: str | Path, fmt: str, *, overwrite: bool = False, **kwargs: Any
) -> list[Path]:
    """Write ``dataset`` in ``fmt`` (voc, coco, yolo) to ``path``; returns the files written.

    For COCO, ``path`` is the JSON file when it ends in ``.json``, else a folder that receives
    ``annotations.json``. Extra keyword arguments go to the writer (``copy_images``,
    ``image_root``).
    """
    if fmt == "voc":
        return write_voc(dataset, path, overwrite=overwrite, **kwargs)
    if fmt == "coco":
        p = Path(path)
        if p.suffix.lower() != ".json":
            p = p / "annotations.json"
        return write_coco(dataset, p, overwrite=overwrite, **kwargs)
    if fmt == "yolo":
        return write_yolo(dataset, path, overwrite=overwrite, **kwargs)
    raise ValueError(f"unknown format {fmt!r}; expected one of {list(WRITE_FORMATS)}")
