"""Fuzzing every reader with random and truncated bytes: only FormatError may escape (issue 16).

Each example starts from a small valid dataset generated here, replaces one of its files by
random bytes or by a truncated (or byte-flipped) copy of itself, and reads it strictly and
with ``strict=False``.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from napari_al.core.formats import FormatError, read_coco, read_image_folder, read_voc, read_yolo


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(buf, "JPEG")
    return buf.getvalue()


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(buf, "PNG")
    return buf.getvalue()


def _tiff() -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((48, 64), np.uint16))
    return buf.getvalue()


VOC_XML = (
    b'<?xml version="1.0" encoding="utf-8"?><annotation><filename>a.jpg</filename><size>'
    b"<width>64</width><height>48</height></size><object><name>cell</name><difficult>0"
    b"</difficult><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>"
    b"</object></annotation>"
)
COCO_JSON = json.dumps(
    {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 40], "iscrowd": 0},
            {
                "id": 2,
                "image_id": 1,
                "category_id": 1,
                "segmentation": {"size": [48, 64], "counts": "U?d0l0000kb1"},
            },
            {"id": 3, "image_id": 1, "category_id": 1, "segmentation": [[1, 2, 30, 2, 30, 40]]},
        ],
        "categories": [{"id": 1, "name": "cell"}],
    }
).encode()

#: reader, then the files of a valid dataset (path -> bytes); each is fuzzed in turn
DATASETS: dict[str, tuple[Callable, dict[str, bytes]]] = {
    "voc": (
        read_voc,
        {
            "Annotations/a.xml": VOC_XML,
            "JPEGImages/a.jpg": _jpeg(),
            "ImageSets/Main/train.txt": b"a\n",
            "classes.txt": b"cell\n",
        },
    ),
    "coco": (
        lambda root, strict: read_coco(root / "ann.json", strict=strict),
        {
            "ann.json": COCO_JSON,
            "a.jpg": _jpeg(),
        },
    ),
    "yolo": (
        read_yolo,
        {
            "data.yaml": b"train: train.txt\nval: images/val\nnames: {0: cell}\n",
            "train.txt": b"images/train/a.jpg\n",
            "images/train/a.jpg": _jpeg(),
            "labels/train/a.txt": b"0 0.5 0.5 0.25 0.25\n0 0.1 0.1 0.2 0.1 0.3 0.3\n",
            "images/val/b.png": _png(),
            "labels/val/b.txt": b"0 0.5 0.5 0.1 0.1 0.9\n",
        },
    ),
    "darknet": (
        read_yolo,
        {"obj.names": b"cell\n", "labels/a.txt": b"0 0.5 0.5 0.25 0.25\n", "images/a.jpg": _jpeg()},
    ),
    "obj.data": (
        read_yolo,
        {
            "obj.data": b"classes = 1\ntrain = train.txt\nvalid = data/valid.txt\nnames = my.names",
            "my.names": b"cell\n",
            "train.txt": b"obj/a.jpg\n",
            "valid.txt": b"./obj/b.jpg\n",
            "obj/a.jpg": _jpeg(),
            "obj/a.txt": b"0 0.5 0.5 0.25 0.25\n",
            "obj/b.jpg": _jpeg(),
        },
    ),
    "images": (
        read_image_folder,
        {"a.jpg": _jpeg(), "b.png": _png(), "c.tif": _tiff()},
    ),
}


#: values that have broken readers: huge numbers, wrong types, near-valid structures
TRICKY = [
    0, 1, -1, 64, 48, 0.5, 2**63, 10**400, -(10**400), 1e308, -1e308, True, None, "", "x",
    "a.jpg", "../" * 30 + "etc/passwd", "a\x00b", [], {}, [1, 2], [[1]], [[1, 2, 3, 4, 5, 6, 7]],
    {"a": 1}, {"size": [48, 64], "counts": "x"}, {"size": [48, 64], "counts": [1]},
    {"size": [48, 64], "counts": [3072]}, {"size": [48, 64], "counts": "\u00ff"},
    {"0": "a", "1": "b"}, {0.5: "a"}, {float("inf"): "a"}, ["a", "a"], [None], "1e999",
]  # fmt: skip
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**400), 10**400)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(TRICKY),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


def _mutations() -> st.SearchStrategy:
    """(how, argument): random bytes or text, a truncation point, byte flips, or (JSON files)
    one value of the document replaced by a random JSON value."""
    return st.one_of(
        st.tuples(st.just("random"), st.binary(max_size=300)),
        st.tuples(st.just("text"), st.text(max_size=200)),
        st.tuples(st.just("truncate"), st.floats(0, 1)),
        st.tuples(
            st.just("flip"),
            st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8),
        ),
        st.tuples(st.just("json"), st.tuples(st.floats(0, 1), JSON_VALUES)),
        st.tuples(st.just("json"), st.tuples(st.floats(0, 1), st.sampled_from(TRICKY))),
        st.tuples(st.just("xml"), st.tuples(st.floats(0, 1), st.sampled_from(TRICKY))),
        st.tuples(st.just("lines"), st.tuples(st.just(0), st.sampled_from(TRICKY))),
    )


def _replace_leaf(doc, pos: float, value):
    """``doc`` with the value at a position (0..1 over all its nodes) replaced by ``value``."""
    nodes: list[tuple[object, object]] = []

    def walk(node) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in list(items):
            nodes.append((node, k))
            if isinstance(v, (dict, list)):
                walk(v)

    walk(doc)
    if nodes:
        parent, key = nodes[min(int(pos * len(nodes)), len(nodes) - 1)]
        parent[key] = value  # type: ignore[index]
    return doc


def _mutate(data: bytes, how: str, arg) -> bytes:
    if how == "random":
        return arg
    if how == "text":
        return arg.encode("utf-8", "surrogatepass")
    if how == "truncate":
        return data[: int(arg * len(data))]
    if how == "xml":  # the text of one element replaced
        try:
            root = ET.fromstring(data)
        except ET.ParseError:
            return data
        nodes = list(root.iter())
        pos, value = arg
        nodes[min(int(pos * len(nodes)), len(nodes) - 1)].text = str(value)
        return ET.tostring(root)
    if how == "lines":  # a line file holding a tricky value
        return f"{arg[1]}\n".encode("utf-8", "surrogatepass")
    if how == "json":  # JSON files, and the YAML ones through YAML
        try:
            doc = json.loads(data)
        except ValueError:
            try:
                doc = yaml.safe_load(data)
            except yaml.YAMLError:
                return data
            if not isinstance(doc, (dict, list)):
                return data
            return yaml.safe_dump(_replace_leaf(doc, *arg)).encode()
        return json.dumps(_replace_leaf(doc, *arg)).encode()
    out = bytearray(data)
    for pos, value in arg:
        if out:
            out[min(int(pos * len(out)), len(out) - 1)] = value
    return bytes(out)


@pytest.mark.parametrize("kind", list(DATASETS))
@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")),
    deadline=None,
    derandomize=not os.environ.get("FUZZ_EXAMPLES"),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_only_format_error_escapes(kind: str, data) -> None:
    reader, files = DATASETS[kind]
    target = data.draw(st.sampled_from(sorted(files)), label="file")
    how, arg = data.draw(_mutations(), label="mutation")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for rel, content in files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(_mutate(content, how, arg) if rel == target else content)
        for strict in (True, False):
            try:
                reader(root, strict=strict)
            except FormatError as e:
                assert "\n" not in str(e).strip(), f"multi-line error: {e}"


def _read_quietly(reader: Callable, root: Path) -> None:
    for strict in (True, False):
        try:
            reader(root, strict=strict)
        except FormatError as e:
            assert "\n" not in str(e), f"multi-line error: {e}"


@pytest.mark.parametrize(
    ("kind", "target", "how"),
    [
        ("coco", "ann.json", "json"),
        ("yolo", "data.yaml", "json"),
        ("yolo", "train.txt", "lines"),
        ("yolo", "labels/train/a.txt", "lines"),
        ("darknet", "obj.names", "lines"),
        ("obj.data", "obj.data", "lines"),
        ("obj.data", "train.txt", "lines"),
        ("voc", "Annotations/a.xml", "xml"),
        ("voc", "ImageSets/Main/train.txt", "lines"),
        ("voc", "classes.txt", "lines"),
    ],
)
def test_every_tricky_value_at_every_position(kind: str, target: str, how: str) -> None:
    """Deterministic sweep beside the random one: each TRICKY value at each node."""
    reader, files = DATASETS[kind]
    failures = []
    for pos in np.linspace(0, 1, 41) if how != "lines" else [0.0]:
        for value in TRICKY:
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                for rel, content in files.items():
                    p = root / rel
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_bytes(_mutate(content, how, (pos, value)) if rel == target else content)
                try:
                    _read_quietly(reader, root)
                except Exception as e:
                    failures.append(f"{pos:.2f} {value!r:.30}: {type(e).__name__}: {e}"[:200])
    assert not failures, "\n".join(failures[:20])


def test_unforeseen_failure_is_a_format_error(tmp_path: Path, monkeypatch) -> None:
    """The safety net: a library raising something unforeseen still gives one FormatError."""
    import napari_al.core.formats.common as common

    (tmp_path / "a.png").write_bytes(_png())

    def boom(*_a, **_k):
        raise KeyError("surprise")

    monkeypatch.setattr(common, "image_size", boom)
    with pytest.raises(FormatError, match=r"cannot read \(KeyError: 'surprise'\)"):
        read_image_folder(tmp_path)


@pytest.mark.parametrize("kind", list(DATASETS))
def test_unmutated_datasets_read_cleanly(tmp_path: Path, kind: str) -> None:
    """The fuzzing starts from valid datasets: read strictly, without a warning."""
    reader, files = DATASETS[kind]
    for rel, content in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(content)
    ds = reader(tmp_path, strict=True)
    assert ds.images and not ds.warnings


TEXT_FILES = [
    (kind, rel)
    for kind, (_reader, files) in DATASETS.items()
    for rel in files
    if not rel.endswith((".jpg", ".png", ".tif"))
]


@pytest.mark.parametrize(("kind", "rel"), TEXT_FILES)
def test_a_utf8_byte_order_mark_changes_nothing(tmp_path: Path, kind: str, rel: str) -> None:
    """Found by a new user: a YOLO label file saved by a Windows editor (UTF-8 with a byte
    order mark) was refused ("class index is '\\ufeff0'"). Every text file of every format."""
    reader, files = DATASETS[kind]

    def read(root: Path, bom: bool) -> list:
        for name, content in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes((b"\xef\xbb\xbf" if bom and name == rel else b"") + content)
        ds = reader(root, strict=True)
        assert not ds.warnings
        return [(Path(r.path).name, [b.xyxy() for b in r.boxes], r.split) for r in ds.images]

    assert read(tmp_path / "bom", True) == read(tmp_path / "plain", False)
