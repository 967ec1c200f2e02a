"""Pascal VOC: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``."""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from napari_al.core.data import SPLITS, BoxRecord, Dataset, ImageNote, ImageRecord
from napari_al.core.formats.common import (
    FormatError,
    _abspath,
    _check_labels,
    _check_line_names,
    _check_targets,
    _copy_image,
    _fix_box,
    _fix_region,
    _fmt,
    _is_dir,
    _is_file,
    _is_image_path,
    _list_pool_text,
    _one_error_type,
    _parse_number,
    _pool_note,
    _positive_int,
    _Reader,
    _round_edge,
    _undone_on_failure,
    _unique_stems,
    _write_text,
    unannotated_left_out,
)
from napari_al.core.formats.manifest import MANIFEST_NAME, finish_export
from napari_al.core.formats.refusals import export_errors
from napari_al.core.images import IMAGE_EXTENSIONS


def _voc_text(el: ET.Element, path: str) -> str | None:
    child = el.find(path)
    if child is None or child.text is None:
        return None
    return child.text.strip()


def _voc_find_image(
    xml_path: Path, ann: ET.Element, img_dir: Path, rd: _Reader
) -> tuple[Path | None, str, bool]:
    """Locate the image of a VOC XML: ``(image or None, what was tried, paired by stem)``.

    The image is ``<img_dir>/<xml stem>.*`` first (as the VOC devkit pairs them), else
    ``<img_dir>/<filename>``, else an absolute ``<path>``. A ``<filename>`` that names another
    file than the image paired by stem (a stale one, e.g. in an XML copied from another) is
    reported in ``rd.warnings``; so is an image found only through ``<filename>``.
    """
    rel = rd.rel(xml_path)
    filename = _voc_text(ann, "filename")
    for ext in (*IMAGE_EXTENSIONS, ".zarr"):
        for e in (ext, ext.upper()):
            p = img_dir / f"{xml_path.stem}{e}"
            if _is_image_path(p):
                if filename and Path(filename).name not in (p.name, p.stem):
                    rd.warn(
                        f"{rel}: <filename> says {filename!r} but the annotation is paired with "
                        f"{rd.rel(p)} by its file stem (as the VOC devkit does)"
                    )
                return p, "", True
    tried = [img_dir / f"{xml_path.stem}.*"]
    if filename:
        p = img_dir / filename
        tried.append(p)
        if _is_image_path(p):
            rd.warn(
                f"{rel}: no image {xml_path.stem}.* in {rd.rel(img_dir)}; "
                f"using <filename> {filename!r}"
            )
            return p, "", False
    path_text = _voc_text(ann, "path")
    if path_text:
        p = Path(path_text)
        if p.is_absolute() and _is_image_path(p):
            return p, "", False
        tried.append(p)
    return None, ", ".join(str(t) for t in tried), False


_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")


def _parse_voc_xml(xml_path: Path, rd: _Reader) -> ET.Element:
    """The ``<annotation>`` root of a VOC XML file.

    The declared encoding is honoured: expat reads UTF-8/16, Latin-1 and ASCII itself; any
    other codec Python knows (``gb2312``, ``shift_jis``, ``windows-1252`` ...) is decoded first.
    Every failure is a FormatError naming the file.
    """
    rel = rd.rel(xml_path)
    try:
        data = xml_path.read_bytes()
    except OSError as e:
        raise FormatError(f"{rel}: cannot read ({e})") from None
    try:
        try:
            ann = ET.fromstring(data)
        except (ValueError, LookupError) as e:  # a multi-byte or non-expat declared encoding
            m = _XML_ENCODING.match(data)
            if m is None:
                raise FormatError(f"{rel}: cannot read ({e})") from None
            encoding = m.group(1).decode("ascii")
            try:
                text = data.decode(encoding)
            except LookupError:
                raise FormatError(f"{rel}: declares unknown encoding {encoding!r}") from None
            except UnicodeDecodeError as e2:
                raise FormatError(f"{rel}: not valid {encoding} text ({e2})") from None
            ann = ET.fromstring(text)
    except ET.ParseError as e:
        raise FormatError(f"{rel}: malformed XML ({e})") from None
    except FormatError:
        raise
    except Exception as e:  # expat's own limits (entity expansion, depth ...) and the like
        raise FormatError(f"{rel}: malformed XML ({type(e).__name__}: {e})") from None
    if ann.tag != "annotation":
        raise FormatError(f"{rel}: root element is <{ann.tag}>, not <annotation>")
    return ann


def _read_voc_xml(
    xml_path: Path, ann: ET.Element, image: Path, rd: _Reader, classes: list[str] | None
) -> ImageRecord:
    """The record of one parsed VOC XML paired with ``image``."""
    rel = rd.rel(xml_path)
    header = rd.size_of(image, rel)

    size = ann.find("size")
    w_text = None if size is None else _voc_text(size, "width")
    h_text = None if size is None else _voc_text(size, "height")
    if not w_text or not h_text:
        rd.warn(
            f"{rel}: size/width or size/height missing; using the image's {header[0]}x{header[1]}"
        )
        width, height = header
    elif _is_zero(w_text) and _is_zero(h_text):  # not filled in by the tool that wrote it
        rd.warn(f"{rel}: size is 0x0; using the image's {header[0]}x{header[1]}")
        width, height = header
    else:
        width = _positive_int(_parse_number(w_text, rel, "size/width"), rel, "size/width")
        height = _positive_int(_parse_number(h_text, rel, "size/height"), rel, "size/height")
        if (width, height) != header:
            raise FormatError(
                f"{rel}: size is {width}x{height} but image {rd.rel(image)} is "
                f"{header[0]}x{header[1]}",
                image,
            )

    rec = ImageRecord(path=image, width=width, height=height, annotated=True)
    rec.partial = _voc_flag(ann, "partial", rel)
    for i, el in enumerate(ann.findall("reviewed_region"), start=1):
        where = f"{rel}: reviewed_region {i}"
        try:
            xmin, ymin, xmax, ymax = _voc_edges(el, where, "")
            rec.reviewed_regions.append(
                _fix_region((xmin - 1, ymin - 1, xmax, ymax), width, height, where, rd)
            )
        except FormatError as e:
            rd.skip(e, "reviewed region")  # a lost region only leaves its area unreviewed
    for i, obj in enumerate(ann.findall("object"), start=1):
        where = f"{rel}: object {i}"
        try:
            box, difficult = _read_voc_object(obj, where, width, height, rd, classes)
            (rec.ignore_regions if difficult else rec.boxes).append(box)
        except FormatError as e:
            rd.skip(e, "object")
            rec.skipped_objects += 1
    return rec


def _is_zero(text: str) -> bool:
    try:
        return float(text) == 0
    except ValueError:
        return False


def _read_voc_object(
    obj: ET.Element, where: str, width: int, height: int, rd: _Reader, classes: list[str] | None
) -> tuple[BoxRecord, bool]:
    """One ``<object>``: its box and whether it is ``difficult`` (an ignore region)."""
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
    xmin, ymin, xmax, ymax = _voc_edges(bb, where, "bndbox/")
    if xmin > xmax:
        raise FormatError(f"{where}: box is inverted (xmin {_fmt(xmin)} > xmax {_fmt(xmax)})")
    if ymin > ymax:
        raise FormatError(f"{where}: box is inverted (ymin {_fmt(ymin)} > ymax {_fmt(ymax)})")
    x1, y1, x2, y2 = _fix_box((xmin - 1, ymin - 1, xmax, ymax), width, height, where, rd)
    return BoxRecord(x1, y1, x2, y2, name), _voc_flag(obj, "difficult", where)


def _voc_edges(el: ET.Element, where: str, prefix: str) -> tuple[float, float, float, float]:
    """``xmin, ymin, xmax, ymax`` children of ``el`` as numbers (VOC's 1-based inclusive
    pixels, as written); ``prefix`` names ``el`` in messages (``bndbox/``)."""
    vals = []
    for key in ("xmin", "ymin", "xmax", "ymax"):
        child = el.find(key)
        if child is None:
            raise FormatError(f"{where}: {prefix}{key} is missing")
        vals.append(_parse_number(child.text, where, f"{prefix}{key}"))
    xmin, ymin, xmax, ymax = vals
    return xmin, ymin, xmax, ymax


def _voc_flag(obj: ET.Element, key: str, where: str) -> bool:
    """A 0/1 flag of an object or annotation (missing or empty: 0)."""
    text = _voc_text(obj, key)
    if text is None or text.lower() in ("", "0", "false", "no"):
        return False
    if text.lower() in ("1", "true", "yes"):
        return True
    raise FormatError(f"{where}: <{key}> is {text!r}, not 0 or 1")


def _read_id_list(path: Path, rd: _Reader, known: set[str]) -> list[tuple[int, str]]:
    """(line number, id) pairs of an ImageSets list.

    The id is the whole line as written when it is a known id (a file stem may start or end
    with a space, which our export writes as it is), else stripped when that is a known id, so
    ids with spaces such as ``cell (1)`` (LabelImg) match; else its first token (the devkit's
    per-class lists carry ``id  1``); else the whole line, reported by the caller as unknown.
    """
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{rd.rel(path)}: cannot read ({e})") from None
    out = []
    for n, ln in enumerate(lines, 1):
        whole = ln.strip()
        if ln in known:
            out.append((n, ln))
        elif whole:
            first = whole.split()[0]
            out.append((n, whole if whole in known or first not in known else first))
    return out


def _voc_splits(root: Path, by_id: dict[str, ImageRecord], failed: set[str], rd: _Reader) -> None:
    """Set ``split`` from ``ImageSets/Main/{train,val,test,pool}.txt`` (or ``trainval.txt``).
    An image a train list names that has no annotation goes to the pool (with a warning): a
    training image nobody labelled yet is what the pool holds, where rank asks about it and
    review makes it a training image; in ``train`` it would be neither."""
    main = root / "ImageSets" / "Main"
    split_files = {s: main / f"{s}.txt" for s in ("train", "val", "test", "pool")}
    if not split_files["train"].is_file() and not split_files["val"].is_file():
        split_files["train"] = main / "trainval.txt"
    known = set(by_id) | failed
    listed: dict[str, str] = {}  # image id -> the split its list gave
    unlabelled: dict[str, list[str]] = {}  # train list -> its ids without annotation
    for split, path in split_files.items():
        if not path.is_file():
            continue
        for lineno, image_id in _read_id_list(path, rd, known):
            where = f"{rd.rel(path)}: line {lineno}"
            rec = by_id.get(image_id)
            try:
                if rec is None:
                    if image_id in failed:
                        continue
                    raise FormatError(f"{where}: image id {image_id!r} has no annotation or image")
                if listed.get(image_id, split) != split:
                    pooled = rec.split == "pool" and listed[image_id] == "train"
                    raise FormatError(
                        f"{where}: image id {image_id!r} is already in split {listed[image_id]!r}"
                        + (" (imported into the pool: it has no annotation)" if pooled else "")
                    )
            except FormatError as e:
                rd.skip(e, "line")
                continue
            first = image_id not in listed
            listed[image_id] = split
            if split == "train" and not rec.annotated and not rec.reviewed_regions:
                if first:
                    unlabelled.setdefault(rd.rel(path), []).append(image_id)
                rec.split = "pool"
            else:
                rec.split = split
    for train_list, listed_ids in unlabelled.items():
        ids = {id(by_id[i]): i for i in listed_ids}
        render = functools.partial(_list_pool_text, train_list, ids)
        note = ImageNote.of(render, [by_id[i] for i in listed_ids])
        if note is not None:  # the import restates it for the images it adds
            rd.warn(note)


@_one_error_type
def _voc_layout(root: Path, image_dir: str | Path | None) -> tuple[Path, Path]:
    """The annotation and image folders of a VOC dataset (see :func:`read_voc`)."""
    if _is_dir(root / "Annotations"):
        ann_dir = root / "Annotations"
    elif _is_dir(root / "annotations"):
        ann_dir = root / "annotations"
    elif any(p.suffix.lower() == ".xml" and _is_file(p) for p in root.iterdir()):
        ann_dir = root  # LabelImg: each XML beside its image
    else:
        raise FormatError(
            f"{root}: not a VOC folder (no Annotations/ folder); no annotations/ folder or .xml "
            "files beside the images either"
        )
    if image_dir is not None:
        img_dir = _abspath(image_dir)
        if not _is_dir(img_dir):
            raise FormatError(f"{img_dir}: image folder not found")
        return ann_dir, img_dir
    for name in ("JPEGImages", "images"):
        if _is_dir(root / name):
            return ann_dir, root / name
    return ann_dir, root if ann_dir == root else root / "JPEGImages"


def read_voc(
    root: str | Path,
    *,
    classes: list[str] | None = None,
    strict: bool = True,
    image_dir: str | Path | None = None,
) -> Dataset:
    """Read a Pascal VOC folder.

    Layout: ``Annotations/*.xml`` (or ``annotations/``, or LabelImg's XML files beside the
    images in ``root``), images in ``image_dir`` when given, else ``JPEGImages/``, else
    ``images/``, else (XML beside the images) ``root`` (paired by file stem as the VOC
    devkit does, else found by the XML's ``<filename>``, else by an absolute ``<path>``, which
    is how :func:`write_voc` references images it did not copy; a stale ``<filename>`` is
    reported, and two XMLs claiming one image are an error), optional
    ``ImageSets/Main/{train,val,test,pool}.txt`` (image ids; ``trainval.txt`` is used as train
    only when neither exists).

    Images with an XML are ``annotated=True``; images in the image folder without one are
    included unannotated (those no ``ImageSets`` list names go to the pool, named in one
    warning, as those a train list names). The class order is ``classes`` when given (other
    names are then errors), else ``classes.txt`` in the root when present (extra names appended
    sorted, with a warning), else the sorted names found. An object with ``<difficult>1`` is
    an ignore region (``ImageRecord.ignore_regions``), as the VOC devkit ignores it in
    evaluation. An annotation with napari-al's ``<partial>1</partial>`` is partly reviewed
    (``ImageRecord.partial``); its ``<reviewed_region>`` elements (``xmin``, ``ymin``,
    ``xmax``, ``ymax``, 1-based inclusive as a ``<bndbox>``) are the rectangles reviewed
    completely (``ImageRecord.reviewed_regions``, clipped to the image).
    """
    root = _abspath(root)
    if not _is_dir(root):
        raise FormatError(f"{root}: not a folder")
    ann_dir, img_dir = _voc_layout(root, image_dir)
    rd = _Reader(root, strict)

    xmls = sorted(p for p in ann_dir.iterdir() if p.suffix.lower() == ".xml" and p.is_file())
    by_id, failed = _voc_annotated(xmls, img_dir, rd, classes)
    if img_dir.is_dir():
        _voc_unannotated(img_dir, by_id, failed, rd)

    _voc_splits(root, by_id, failed, rd)
    unlisted = [r for _, r in sorted(by_id.items()) if r.split is None and not r.annotated]
    where = "" if img_dir == root else f"{rd.rel(img_dir)}/: "
    lacking = "no annotation (no .xml file) and no ImageSets list"
    note = _pool_note(unlisted, "image", lacking, where)
    if note is not None:
        rd.warn(note)
    names = sorted({b.label for rec in by_id.values() for b in (*rec.boxes, *rec.ignore_regions)})
    class_list = list(classes) if classes is not None else _voc_class_order(root, names, rd)
    images = [by_id[k] for k in sorted(by_id)]
    return rd.dataset(class_list, images, f"voc:{root}")


def _voc_annotated(
    xmls: list[Path], img_dir: Path, rd: _Reader, classes: list[str] | None
) -> tuple[dict[str, ImageRecord], set[str]]:
    """Records of the XML files by id (file stem), and the ids of the files that failed.

    Each image is annotated by one XML only: one paired with it by file stem wins over one
    that names it in ``<filename>``/``<path>``; any other is an error naming both files.
    """
    # pair every file first (ownership needs all pairs), then raise/skip in file order
    parsed: list[tuple[Path, ET.Element | None, Path | None, bool, FormatError | None]] = []
    for xml_path in xmls:
        try:
            ann = _parse_voc_xml(xml_path, rd)
            image, tried, by_stem = _voc_find_image(xml_path, ann, img_dir, rd)
            if image is None:
                raise FormatError(f"{rd.rel(xml_path)}: image not found (looked for {tried})")
        except FormatError as e:
            parsed.append((xml_path, None, None, False, e))
            continue
        parsed.append((xml_path, ann, _abspath(image), by_stem, None))
    owner: dict[Path, Path] = {}
    for xml_path, _ann, image, _by_stem, _err in sorted(parsed, key=lambda t: not t[3]):
        if image is not None:
            owner.setdefault(image, xml_path)
    by_id: dict[str, ImageRecord] = {}
    failed: set[str] = set()
    for xml_path, ann, image, _by_stem, err in parsed:
        try:
            if err is not None:
                raise err
            assert ann is not None and image is not None
            if owner[image] != xml_path:
                raise FormatError(
                    f"{rd.rel(xml_path)}: pairs with image {rd.rel(image)}, which "
                    f"{rd.rel(owner[image])} already annotates (stale <filename>?)"
                )
            by_id[xml_path.stem] = _read_voc_xml(xml_path, ann, image, rd, classes)
        except FormatError as e:
            rd.skip(e, "file")
            failed.add(xml_path.stem)
    return by_id, failed


def _voc_unannotated(
    img_dir: Path, by_id: dict[str, ImageRecord], failed: set[str], rd: _Reader
) -> None:
    """Add the images of ``img_dir`` that no XML annotates (nor failed to) as unannotated."""
    claimed = {rec.path for rec in by_id.values()}
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


def _voc_class_order(root: Path, names: list[str], rd: _Reader) -> list[str]:
    path = root / "classes.txt"
    if not path.is_file():
        return names
    try:
        listed = [
            ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()
        ]
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"classes.txt: cannot read ({e})") from None
    order = list(dict.fromkeys(listed))
    extra = [n for n in names if n not in order]
    if extra:
        what = f"class {extra[0]!r} is" if len(extra) == 1 else f"classes {extra} are"
        rd.warn(f"classes.txt: {what} used but not listed; appended")
    return order + extra


def _voc_xml(im: ImageRecord, image_path: Path, classes: list[str]) -> str:
    """The VOC XML of one image (integer 1-based inclusive coordinates); ignore regions are
    ``difficult`` objects, one per class for a region of no class."""
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
    if im.partial:  # napari-al's extension: partly reviewed (other tools ignore it)
        ET.SubElement(ann, "partial").text = "1"
    for region in im.reviewed_regions:  # napari-al's extension too: 1-based, as boxes
        el = ET.SubElement(ann, "reviewed_region")
        for key, v in zip(("xmin", "ymin", "xmax", "ymax"), _voc_box(region, im), strict=True):
            ET.SubElement(el, key).text = str(v)
    objects = [(b, b.label, "0") for b in im.boxes]
    for r in im.ignore_regions:
        objects += [(r, label, "1") for label in ([r.label] if r.label else classes)]
    for b, label, difficult in objects:
        xmin, ymin, xmax, ymax = _voc_box(b.xyxy(), im)
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = label
        ET.SubElement(obj, "pose").text = "Unspecified"
        touches = xmin <= 1 or ymin <= 1 or xmax >= im.width or ymax >= im.height
        ET.SubElement(obj, "truncated").text = "1" if touches else "0"
        ET.SubElement(obj, "difficult").text = difficult
        bb = ET.SubElement(obj, "bndbox")
        for key, v in (("xmin", xmin), ("ymin", ymin), ("xmax", xmax), ("ymax", ymax)):
            ET.SubElement(bb, key).text = str(v)
    ET.indent(ann, space="\t")
    return ET.tostring(ann, encoding="unicode") + "\n"


def _voc_box(xyxy: tuple[float, float, float, float], im: ImageRecord) -> tuple[int, ...]:
    """``xmin, ymin, xmax, ymax`` (VOC's 1-based inclusive whole pixels) of ``x1, y1, x2, y2``
    (image pixels, edges on integers): ``xmin = x1 + 1``, ``xmax = x2``, edges rounded to the
    nearest pixel edge; a sub-pixel box at the far edge still gets a pixel inside the image."""
    x1, y1, x2, y2 = xyxy
    xmin = min(_round_edge(x1), im.width - 1) + 1
    ymin = min(_round_edge(y1), im.height - 1) + 1
    return xmin, ymin, max(_round_edge(x2), xmin), max(_round_edge(y2), ymin)


def write_voc(
    dataset: Dataset,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    copy_images: bool = False,
    keep: Iterable[Path] = (),
) -> list[Path]:
    """Write a VOC folder; returns the files written.

    Writes ``Annotations/<stem>.xml`` for every annotated image (stems made unique with
    ``_2``...), ``ImageSets/Main/<split>.txt`` per split and ``classes.txt`` (class order).
    Without ``copy_images`` the XML's ``<path>`` holds the absolute image path (read back by
    :func:`read_voc`) and unannotated images are not exported (a line in ``dataset.warnings``
    says how many); with it images are copied to ``JPEGImages/`` (unannotated ones too).
    Coordinates are integers: non-integer boxes are rounded to the nearest pixel edge (a box
    narrower than a pixel becomes one pixel wide).
    Ignore regions are objects with ``<difficult>1`` (a region of no class once per class, so
    every class ignores it). A partly reviewed image (``ImageRecord.partial``) carries
    napari-al's ``<partial>1</partial>``, and each of its reviewed regions
    (``ImageRecord.reviewed_regions``) a ``<reviewed_region>`` with ``xmin``, ``ymin``,
    ``xmax``, ``ymax`` in the boxes' convention; other tools ignore both.

    The files written are recorded in ``.napari-al-export.json``; with ``overwrite`` the files
    of an earlier export in ``out_dir`` that this one does not write are removed, except the
    dataset's images and ``keep`` (:func:`~napari_al.core.formats.manifest.finish_export`,
    with a line in ``dataset.warnings``).
    """
    out = _abspath(out_dir)
    _check_labels(dataset)
    stems = _unique_stems(dataset.images, dataset.warnings if copy_images else None)
    plan: list[tuple[ImageRecord, str, Path]] = []
    unwritten = [im for im in dataset.images if not (im.annotated or copy_images)]
    if unwritten:
        dataset.warnings.append(unannotated_left_out(unwritten))
    for im, stem in zip(dataset.images, stems, strict=True):
        if not (im.annotated or copy_images):
            continue
        dest = out / "JPEGImages" / f"{stem}{im.path.suffix}" if copy_images else im.path
        plan.append((im, stem, dest))
    _check_line_names(dataset, "voc", [(im.path, dest) for im, _, dest in plan if im.annotated])
    targets = [out / "Annotations" / f"{stem}.xml" for im, stem, _ in plan if im.annotated]
    if copy_images:
        targets += [dest for _, _, dest in plan]
    splits = {s: [stem for im, stem, _ in plan if im.split == s] for s in SPLITS}
    split_paths = {s: out / "ImageSets" / "Main" / f"{s}.txt" for s, ids in splits.items() if ids}
    spaced = [i for ids in splits.values() for i in ids if len(i.split()) != 1 or i != i.strip()]
    if spaced:
        dataset.warnings.append(
            f"ImageSets/Main lists {len(spaced)} image {'id' if len(spaced) == 1 else 'ids'} with "
            f"spaces (e.g. {spaced[0]!r}), one per line as written: napari-al reads them back, "
            "tools that split the lists on whitespace (the VOC devkit) do not; rename the files "
            "without spaces for those"
        )
    targets += [*split_paths.values(), out / "classes.txt"]
    _check_targets(targets, overwrite)

    written = []
    with export_errors(out, out, overwrite), _undone_on_failure() as new:
        for im, stem, dest in plan:
            if copy_images:
                _copy_image(Path(im.path), new.file(dest))
                written.append(dest)
            if im.annotated:
                p = new.file(out / "Annotations" / f"{stem}.xml")
                _write_text(p, _voc_xml(im, dest, dataset.classes))
                written.append(p)
        new.folder(out / "Annotations")
        for s, p in split_paths.items():
            _write_text(new.file(p), "".join(f"{i}\n" for i in splits[s]))
            written.append(p)
        _write_text(new.file(out / "classes.txt"), "".join(f"{c}\n" for c in dataset.classes))
        written.append(out / "classes.txt")
        new.file(out / MANIFEST_NAME)
        keep = [*(im.path for im in dataset.images), *keep]
        finish_export(
            out,
            "voc",
            written,
            overwrite=overwrite,
            keep=keep,
            notes=dataset.warnings,
            replaced=new.replaced,
        )
    return written
