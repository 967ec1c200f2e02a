"""COCO detection JSON: ``images``, ``annotations``, ``categories``."""

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
    _check_targets,
    _fix_box,
    _fix_region,
    _fmt_box,
    _inside,
    _is_image_path,
    _json_number,
    _one_error_type,
    _positive_int,
    _Reader,
    _undone_on_failure,
    _write_text,
)
from napari_al.core.formats.manifest import MANIFEST_NAME, finish_export
from napari_al.core.formats.refusals import export_errors


def _coco_id(value: Any, where: str, field: str) -> int | str:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise FormatError(f"{where}: {field} is {value!r}, not an integer or string id")
    return value


@_one_error_type
def read_coco(
    json_path: str | Path, image_root: str | Path | None = None, *, strict: bool = True
) -> Dataset:
    """Read a COCO detection JSON file.

    ``file_name`` may be absolute or relative to ``image_root`` (default: the JSON file's
    folder). Classes follow the category ids in ascending order. Without an ``annotations``
    key (an image-info file) all images are unannotated; otherwise every listed image is
    annotated (COCO annotations are exhaustive, so an image with no annotations is a reviewed
    negative). This package's optional extensions are read when present: an image's ``split``,
    ``annotated``, ``partial`` (partly reviewed) and ``reviewed_regions`` (``[[x1, y1, x2,
    y2], ...]`` image pixels, clipped to the image) keys and an annotation's ``score``. An
    annotation without ``bbox`` (or with an empty one) takes the extent of its
    ``segmentation``: polygons by their vertices, RLE masks (compressed or not) by
    pycocotools' ``toBbox``. An ``iscrowd = 1``
    annotation is an ignore region (``ImageRecord.ignore_regions``), as COCOeval ignores it.
    """
    json_path = _abspath(json_path)
    root = json_path.parent
    base = _abspath(image_root) if image_root is not None else root
    rd = _Reader(root, strict)
    name = rd.rel(json_path)
    data = _load_coco_json(json_path, name)
    has_annotations = "annotations" in data
    anns = data.get("annotations", [])
    cat_names = _read_coco_categories(data.get("categories", []), name, rd)
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
            found = _read_coco_annotation(ann, where, records, bad_images, cat_names, seen_ann, rd)
        except FormatError as e:
            rd.skip(e, "annotation")
            image_id = ann.get("image_id") if isinstance(ann, dict) else None
            if type(image_id) in (int, str) and image_id in records:
                records[image_id].skipped_objects += 1
            continue
        if found is not None:
            rec, box, crowd = found
            (rec.ignore_regions if crowd else rec.boxes).append(box)
    return rd.dataset(classes, list(records.values()), f"coco:{json_path}")


def _load_coco_json(json_path: Path, name: str) -> dict[str, Any]:
    """The parsed JSON with its top-level structure checked (always raises; never skipped)."""
    try:
        with open(json_path, encoding="utf-8-sig") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FormatError(f"{name}: file not found") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, int limits
        raise FormatError(f"{name}: not valid JSON ({e})") from None
    except OSError as e:
        raise FormatError(f"{name}: cannot read ({e})") from None
    if not isinstance(data, dict):
        raise FormatError(f"{name}: top level is a {type(data).__name__}, not an object")
    if not isinstance(data.get("images"), list):
        raise FormatError(f"{name}: 'images' is missing or not a list")
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise FormatError(f"{name}: 'annotations' is not a list")
    if not isinstance(data.get("categories", []), list):
        raise FormatError(f"{name}: 'categories' is not a list")
    if anns and "categories" not in data:
        raise FormatError(f"{name}: 'categories' is missing")
    return data


def _read_coco_categories(cats: list[Any], name: str, rd: _Reader) -> dict[int | str, str]:
    """Category id -> stripped name; bad categories are errors (skipped when not strict)."""
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
    return cat_names


def _read_coco_annotation(
    ann: Any,
    where: str,
    records: dict[int | str, ImageRecord],
    bad_images: set[Any],
    cat_names: dict[int | str, str],
    seen_ann: set[Any],
    rd: _Reader,
) -> tuple[ImageRecord, BoxRecord, bool] | None:
    """The image, box and ``iscrowd`` flag of one annotation (a crowd annotation is an ignore
    region); ``None`` when its image was skipped already."""
    if not isinstance(ann, dict):
        raise FormatError(f"{where}: is a {type(ann).__name__}, not an object")
    if "id" in ann:
        where = f"{where} (id {ann['id']!r})"
    for key in ("id", "image_id", "category_id"):
        if key not in ann:
            raise FormatError(f"{where}: key '{key}' is missing")
    aid = _coco_id(ann["id"], where, "id")
    if aid in seen_ann:
        raise FormatError(f"{where}: duplicate annotation id {aid!r}")
    seen_ann.add(aid)
    image_id = _coco_id(ann["image_id"], where, "image_id")
    if image_id in bad_images:
        return None  # its image was skipped (and reported) already
    rec = records.get(image_id)
    if rec is None:
        raise FormatError(f"{where}: image_id {image_id!r} matches no image")
    cid = _coco_id(ann["category_id"], where, "category_id")
    label = cat_names.get(cid)
    if label is None:
        raise FormatError(f"{where}: category_id {cid!r} matches no category")
    bbox = ann.get("bbox")
    if bbox is None or bbox == []:
        if ann.get("segmentation") in (None, [], {}):
            raise FormatError(f"{where}: key 'bbox' is missing and there is no segmentation")
        bbox = _coco_segmentation_bbox(ann["segmentation"], rec, where)
    if not isinstance(bbox, list) or len(bbox) != 4:
        n = len(bbox) if isinstance(bbox, list) else type(bbox).__name__
        raise FormatError(f"{where}: bbox has {n} values, expected 4 [x, y, width, height]")
    x, y, w, h = (_json_number(v, where, f"bbox[{k}]") for k, v in enumerate(bbox))
    if w < 0 or h < 0:
        raise FormatError(f"{where}: bbox {_fmt_box(bbox)} has a negative width or height")
    score = None
    if ann.get("score") is not None:
        score = _json_number(ann["score"], where, "score")
    crowd = ann.get("iscrowd", 0)
    if crowd not in (0, 1):  # True/False compare equal to 1/0: accepted
        raise FormatError(f"{where}: iscrowd is {crowd!r}, not 0 or 1")
    x1, y1, x2, y2 = _fix_box((x, y, x + w, y + h), rec.width, rec.height, where, rd)
    return rec, BoxRecord(x1, y1, x2, y2, label, score), bool(crowd)


def _check_compressed_counts(counts: str, where: str) -> None:
    """Refuse a compressed RLE string pycocotools' C parser would read past its end.

    COCO's compressed counts use 6 bits per character, ASCII 48-111 ('0'-'o'), bit 0x20 meaning
    "the number goes on" (``rleToString`` in pycocotools' ``maskApi.c``). ``rleFrString`` does
    not check either: a last character with that bit set (or a character outside the alphabet
    that looks like it) makes it read past the string's end and write past its own buffer, a
    heap overflow that can abort the process later. Raises FormatError naming the annotation.
    """
    bad = next((c for c in counts if not 48 <= ord(c) <= 111), None)
    if bad is not None:
        raise FormatError(
            f"{where}: segmentation counts hold {bad!r}, not a compressed RLE character ('0'-'o')"
        )
    if counts and (ord(counts[-1]) - 48) & 0x20:
        raise FormatError(f"{where}: segmentation counts end in the middle of a number")


def _coco_segmentation_bbox(seg: Any, rec: ImageRecord, where: str) -> list[float]:
    """``[x, y, width, height]`` of a segmentation: a polygon list's vertex extent (as COCO's
    own boxes are made), or an RLE mask's extent by pycocotools' ``toBbox``."""
    if isinstance(seg, list):
        coords = []
        for k, poly in enumerate(seg):
            if not isinstance(poly, list) or len(poly) < 4 or len(poly) % 2:
                raise FormatError(
                    f"{where}: segmentation[{k}] is not a polygon [x1, y1, x2, y2, ...]"
                )
            coords += [_json_number(v, where, f"segmentation[{k}]") for v in poly]
        xs, ys = coords[0::2], coords[1::2]
        return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise FormatError(f"{where}: segmentation is neither polygons nor an RLE mask")
    if seg["size"] != [rec.height, rec.width]:
        raise FormatError(
            f"{where}: segmentation size is {seg['size']!r}, the image is "
            f"[{rec.height}, {rec.width}] (height, width)"
        )
    counts = seg["counts"]
    import pycocotools.mask as mask_util

    if isinstance(counts, list):
        if not all(type(c) is int and c >= 0 for c in counts):
            raise FormatError(f"{where}: segmentation counts are not non-negative integers")
        if sum(counts) != rec.height * rec.width:
            raise FormatError(f"{where}: segmentation counts do not cover the image")
        rle = mask_util.frPyObjects(seg, rec.height, rec.width)
    elif isinstance(counts, str) and counts.isascii():
        _check_compressed_counts(counts, where)
        rle = {"size": [rec.height, rec.width], "counts": counts.encode("ascii")}
    else:
        raise FormatError(f"{where}: segmentation counts are {type(counts).__name__}, not RLE")
    try:
        x, y, w, h = (float(v) for v in mask_util.toBbox(rle))
    except Exception as e:
        raise FormatError(f"{where}: segmentation RLE cannot be decoded ({e})") from None
    if not (w > 0 and h > 0 and x >= 0 and y >= 0):
        raise FormatError(f"{where}: segmentation mask is empty")
    if x + w > rec.width or y + h > rec.height:
        raise FormatError(f"{where}: segmentation RLE is malformed (extends past the image)")
    return [x, y, w, h]


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
    if not _is_image_path(path):
        raise FormatError(f"{where}: image file {fname!r} not found (looked at {path})")
    header = rd.size_of(path, where)
    if "width" in im and "height" in im:
        w = _positive_int(_json_number(im["width"], where, "width"), where, "width")
        h = _positive_int(_json_number(im["height"], where, "height"), where, "height")
        if (w, h) != header:
            raise FormatError(
                f"{where}: width x height is {w}x{h} but image {fname!r} is "
                f"{header[0]}x{header[1]}",
                path,
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
    partial = im.get("partial", False)
    if not isinstance(partial, bool):
        raise FormatError(f"{where}: partial is {partial!r}, not true/false")
    rec = ImageRecord(path=path, width=w, height=h, split=split, annotated=annotated)
    rec.partial = annotated and partial
    rec.reviewed_regions = _read_coco_regions(im.get("reviewed_regions", []), where, w, h, rd)
    if rec.reviewed_regions and annotated and "partial" not in im:
        rd.warn(
            f'{where}: reviewed_regions without "partial": imported as complete (every '
            'object labelled, the rest of the image trains as background); add "partial": true '
            "to keep only its regions reviewed"
        )
    return rec, iid


def _read_coco_regions(
    regions: Any, where: str, width: int, height: int, rd: _Reader
) -> list[tuple[float, float, float, float]]:
    """napari-al's ``reviewed_regions`` of an image: ``[[x1, y1, x2, y2], ...]`` in image
    pixels (xyxy, not COCO's xywh), each clipped to the image; a malformed one is an error
    (skipped when not strict: a lost region only leaves its area unreviewed)."""
    if not isinstance(regions, list):
        raise FormatError(f"{where}: reviewed_regions is {regions!r}, not a list")
    out = []
    for k, region in enumerate(regions):
        at = f"{where}: reviewed_regions[{k}]"
        try:
            if not isinstance(region, list) or len(region) != 4:
                raise FormatError(f"{at}: is {region!r}, not [x1, y1, x2, y2]")
            x1, y1, x2, y2 = (_json_number(v, at, f"[{j}]") for j, v in enumerate(region))
            out.append(_fix_region((x1, y1, x2, y2), width, height, at, rd))
        except FormatError as e:
            rd.skip(e, "reviewed region")
    return out


def _json_num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


def write_coco(
    dataset: Dataset,
    json_path: str | Path,
    *,
    overwrite: bool = False,
    image_root: str | Path | None = None,
    keep: Iterable[Path] = (),
) -> list[Path]:
    """Write a COCO detection JSON file; returns ``[json_path]``.

    Category ids are 1..C in class order; image ids 1..N; ``bbox = [x1, y1, x2 - x1, y2 - y1]``
    with ``area`` and ``iscrowd = 0``; ignore regions are written with ``iscrowd = 1`` (a region
    of no class once per category, so every category ignores it). ``file_name`` is relative
    to ``image_root`` when given (every image must lie under it), else relative to the JSON
    file's folder for images under it and absolute otherwise, so no image is copied.
    Extensions: ``split`` (when set), ``annotated: false`` for unannotated images,
    ``partial: true`` for partly reviewed ones, ``reviewed_regions`` (``[[x1, y1, x2, y2],
    ...]``, image pixels, xyxy) for images with regions reviewed completely, and ``score``
    for scored boxes; other tools ignore them (note that they would treat unannotated and
    partly reviewed images as exhaustively annotated).

    The file is recorded in ``.napari-al-export.json`` beside it; with ``overwrite`` the files
    an earlier export (of any format) in its folder wrote and this one does not are removed,
    except the dataset's images and ``keep``
    (:func:`~napari_al.core.formats.manifest.finish_export`, with a line in
    ``dataset.warnings``).
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
        elif im.partial or im.reviewed_regions:
            entry["partial"] = im.partial  # false said aloud: regions of a complete image
        if im.reviewed_regions:
            entry["reviewed_regions"] = [[_json_num(v) for v in r] for r in im.reviewed_regions]
        images.append(entry)
        objects = [(b, b.label, 0) for b in im.boxes]
        for r in im.ignore_regions:
            objects += [(r, label, 1) for label in ([r.label] if r.label else dataset.classes)]
        for b, label, crowd in objects:
            aid += 1
            w, h = b.x2 - b.x1, b.y2 - b.y1
            a: dict[str, Any] = {
                "id": aid,
                "image_id": iid,
                "category_id": index[label] + 1,
                "bbox": [_json_num(b.x1), _json_num(b.y1), _json_num(w), _json_num(h)],
                "area": _json_num(w * h),
                "iscrowd": crowd,
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
    with export_errors(json_path, json_path.parent, overwrite), _undone_on_failure() as new:
        _write_text(new.file(json_path), json.dumps(data))
        new.file(json_path.parent / MANIFEST_NAME)
        keep = [*(im.path for im in dataset.images), *keep]
        finish_export(
            json_path.parent,
            "coco",
            [json_path],
            overwrite=overwrite,
            keep=keep,
            notes=dataset.warnings,
            replaced=new.replaced,
        )
    return [json_path]
