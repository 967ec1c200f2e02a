"""Dataset import/export: BCCD, exact round trips, repairs, and malformed input."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.formats import (
    FormatError,
    detect_format,
    read_coco,
    read_dataset,
    read_image_folder,
    read_voc,
    read_yolo,
    write_coco,
    write_dataset,
    write_voc,
    write_yolo,
)

W, H = 64, 48


# ---- helpers ----------------------------------------------------------------------------------


def png(path: Path, w: int = W, h: int = H) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (10, 20, 30)).save(path)
    return path


def zero_byte(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def text_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not an image at all\n")
    return path


def truncated_jpeg(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (W, H)).save(path, format="JPEG")
    path.write_bytes(path.read_bytes()[:20])
    return path


def voc_obj(name: str | None = "cell", box=(11, 21, 30, 40), drop: str = "") -> str:
    name_xml = "" if name is None else f"<name>{name}</name>"
    fields = "".join(
        f"<{k}>{v}</{k}>"
        for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True)
        if k != drop
    )
    bnd = "" if drop == "bndbox" else f"<bndbox>{fields}</bndbox>"
    return f"<object>{name_xml}<difficult>0</difficult>{bnd}</object>"


def voc_xml(*objects: str, filename: str = "a.png", size=(W, H)) -> str:
    size_xml = (
        ""
        if size is None
        else f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    )
    return f"<annotation><filename>{filename}</filename>{size_xml}{''.join(objects)}</annotation>"


def voc_case(
    xml: str | None,
    image: str | None = "a.png",
    make_image: Callable[[Path], Path] = png,
    files: dict[str, str] | None = None,
) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        root = tmp / "voc"
        (root / "JPEGImages").mkdir(parents=True)
        if xml is not None:
            (root / "Annotations").mkdir()
            (root / "Annotations" / "a.xml").write_text(xml)
        if image:
            make_image(root / "JPEGImages" / image)
        for rel, text in (files or {}).items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        return root

    return build


def coco_base() -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 19, 20]}],
        "categories": [{"id": 1, "name": "cell"}],
    }


def coco_case(mutate: Callable[[dict], object] | None = None, raw: str | None = None):
    def build(tmp: Path) -> Path:
        root = tmp / "coco"
        png(root / "a.png")
        png(root / "b.png")
        data = coco_base()
        if mutate is not None:
            mutate(data)
        (root / "ann.json").write_text(raw if raw is not None else json.dumps(data))
        return root / "ann.json"

    return build


def yolo_case(
    label: str = "0 0.5 0.5 0.25 0.25\n",
    classes: str | None = "cell\n",
    make_image: Callable[[Path], Path] = png,
    files: dict[str, str] | None = None,
):
    def build(tmp: Path) -> Path:
        root = tmp / "yolo"
        make_image(root / "images" / "a.png")
        (root / "labels").mkdir(parents=True)
        (root / "labels" / "a.txt").write_text(label)
        if classes is not None:
            (root / "classes.txt").write_text(classes)
        for rel, text in (files or {}).items():
            (root / rel).write_text(text)
        return root

    return build


def images_case(make_bad: Callable[[Path], Path], name: str):
    def build(tmp: Path) -> Path:
        root = tmp / "imgs"
        png(root / "a.png")
        make_bad(root / "sub" / name)
        return root

    return build


def set_(path: list, value) -> Callable[[dict], None]:
    """A mutation setting ``data[path[0]][path[1]]... = value``."""

    def mutate(d: dict) -> None:
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return mutate


def del_(path: list) -> Callable[[dict], None]:
    def mutate(d: dict) -> None:
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]

    return mutate


def boxes_by_path(ds: Dataset) -> dict[str, tuple]:
    return {
        str(im.path): (
            im.width,
            im.height,
            im.split,
            im.annotated,
            [(b.x1, b.y1, b.x2, b.y2, b.label) for b in im.boxes],
        )
        for im in ds.images
    }


def snapshot(root: Path) -> dict[str, tuple[int, float]]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def bccd(bccd_dir: Path) -> Dataset:
    return read_voc(bccd_dir)


# ---- BCCD -------------------------------------------------------------------------------------


def test_bccd_counts_and_splits(bccd: Dataset) -> None:
    assert len(bccd.images) == 364
    assert bccd.n_boxes == 4888
    assert bccd.classes == ["Platelets", "RBC", "WBC"]  # sorted names (VOC has no class list)
    assert Counter(b.label for im in bccd.images for b in im.boxes) == {
        "RBC": 4155,
        "WBC": 372,
        "Platelets": 361,
    }
    assert Counter(im.split for im in bccd.images) == {"train": 205, "val": 87, "test": 72}
    assert all(im.annotated and (im.width, im.height) == (640, 480) for im in bccd.images)
    assert all(im.path.is_absolute() and im.path.is_file() for im in bccd.images)
    assert bccd.warnings == []  # every BCCD box fits the image under the VOC convention


def test_bccd_quirks(bccd: Dataset) -> None:
    boxes = [b for im in bccd.images for b in im.boxes]
    assert all(0 <= b.x1 < b.x2 <= 640 and 0 <= b.y1 < b.y2 <= 480 for b in boxes)
    # the README's 545 "border" boxes are those reaching the right or bottom edge
    assert sum(b.x2 == 640 or b.y2 == 480 for b in boxes) == 545
    assert sum(b.x1 == 0 or b.y1 == 0 or b.x2 == 640 or b.y2 == 480 for b in boxes) == 1131
    # the README's 2 "degenerate" boxes (xmin == xmax, ymin == ymax) are 1 x 1 px boxes
    tiny = [b for b in boxes if b.x2 - b.x1 <= 1 or b.y2 - b.y1 <= 1]
    assert sorted((b.x1, b.y1, b.x2, b.y2) for b in tiny) == [
        (180, 328, 181, 329),
        (503, 336, 504, 337),
    ]


def test_bccd_voc_coco_yolo_voc_round_trip_is_exact(bccd: Dataset, tmp_path: Path) -> None:
    write_coco(bccd, tmp_path / "coco" / "instances.json")
    coco = read_coco(tmp_path / "coco" / "instances.json")
    write_yolo(coco, tmp_path / "yolo")
    yolo = read_yolo(tmp_path / "yolo")
    write_voc(yolo, tmp_path / "voc")
    voc = read_voc(tmp_path / "voc")
    want = boxes_by_path(bccd)
    for ds in (coco, yolo, voc):
        assert ds.classes == bccd.classes
        assert ds.warnings == []
        assert boxes_by_path(ds) == want  # floats compared exactly


def test_bccd_voc_to_voc_files_identical(bccd: Dataset, bccd_dir: Path, tmp_path: Path) -> None:
    write_voc(bccd, tmp_path / "voc")

    def objects(xml: Path) -> list:
        root = ET.parse(xml).getroot()
        return [
            (
                o.findtext("name"),
                *(o.findtext(f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")),
            )
            for o in root.findall("object")
        ]

    originals = sorted((bccd_dir / "Annotations").glob("*.xml"))
    assert len(originals) == 364
    for xml in originals:
        assert objects(tmp_path / "voc" / "Annotations" / xml.name) == objects(xml)
    for split in ("train", "val", "test"):
        got = (tmp_path / "voc" / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        want = (bccd_dir / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        assert sorted(got) == sorted(want)


# ---- round trips of what the formats can represent --------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> Dataset:
    """Three images: float boxes with scores, a negative, an unannotated image, several splits."""
    src = tmp_path / "src"
    a, b, c = png(src / "a.png"), png(src / "x" / "b.png", 50, 40), png(src / "c.png")
    return Dataset(
        classes=["cell", "dirt"],
        images=[
            ImageRecord(
                a,
                W,
                H,
                [BoxRecord(0, 0, 64, 48, "cell"), BoxRecord(1.25, 2.5, 10.75, 20.125, "dirt", 0.9)],
                "train",
                True,
            ),
            ImageRecord(b, 50, 40, [], "val", True),
            ImageRecord(c, W, H, [], None, False),
        ],
    )


def test_coco_round_trip_keeps_floats_scores_flags(small: Dataset, tmp_path: Path) -> None:
    write_coco(small, tmp_path / "j" / "out.json")
    back = read_coco(tmp_path / "j" / "out.json")
    assert back.classes == small.classes
    assert boxes_by_path(back) == boxes_by_path(small)
    assert [b.score for b in back.images[0].boxes] == [None, 0.9]
    data = json.loads((tmp_path / "j" / "out.json").read_text())
    assert data["annotations"][1]["bbox"] == [1.25, 2.5, 9.5, 17.625]
    assert Path(data["images"][0]["file_name"]).is_absolute()  # images outside the JSON folder
    write_coco(small, tmp_path / "in.json")
    data = json.loads((tmp_path / "in.json").read_text())
    assert data["images"][1]["file_name"] == "src/x/b.png"  # images under the JSON folder


def test_coco_file_names_relative_to_image_root(small: Dataset, tmp_path: Path) -> None:
    write_coco(small, tmp_path / "ann" / "c.json", image_root=tmp_path / "src")
    names = [
        im["file_name"] for im in json.loads((tmp_path / "ann" / "c.json").read_text())["images"]
    ]
    assert names == ["a.png", "x/b.png", "c.png"]
    back = read_coco(tmp_path / "ann" / "c.json", image_root=tmp_path / "src")
    assert boxes_by_path(back) == boxes_by_path(small)
    with pytest.raises(FormatError, match=r"image file 'a\.png' not found"):
        read_coco(tmp_path / "ann" / "c.json")


@pytest.mark.parametrize("copy_images", [False, True])
def test_yolo_round_trip(small: Dataset, tmp_path: Path, copy_images: bool) -> None:
    write_yolo(small, tmp_path / "y", copy_images=copy_images)
    back = read_yolo(tmp_path / "y")
    assert back.classes == small.classes and back.warnings == []
    by_name = {im.path.name: im for im in back.images}
    assert sorted(by_name) == ["a.png", "b.png", "c.png"]
    for im in small.images:
        got = by_name[im.path.name]
        assert (got.width, got.height, got.split, got.annotated) == (
            im.width,
            im.height,
            im.split,
            im.annotated,
        )
        assert [b.label for b in got.boxes] == [b.label for b in im.boxes]
        for g, w in zip(got.boxes, im.boxes, strict=True):
            assert g.xyxy() == pytest.approx(w.xyxy(), abs=1e-6)
            assert g.score == w.score
    if copy_images:
        assert (tmp_path / "y" / "images" / "train" / "a.png").is_file()
        assert (tmp_path / "y" / "labels" / "val" / "b.txt").read_text() == ""
        assert not (tmp_path / "y" / "labels" / "unassigned" / "c.txt").exists()


def test_voc_copy_images_round_trip(small: Dataset, tmp_path: Path) -> None:
    write_voc(small, tmp_path / "v", copy_images=True)
    back = read_voc(tmp_path / "v")
    assert [p.name for p in sorted((tmp_path / "v" / "JPEGImages").iterdir())] == [
        "a.png",
        "b.png",
        "c.png",
    ]
    by_name = {im.path.name: im for im in back.images}
    assert by_name["c.png"].annotated is False
    assert by_name["b.png"].annotated is True and by_name["b.png"].boxes == []
    # VOC stores integer pixels: the float box is rounded to the nearest edges
    assert [b.xyxy() for b in by_name["a.png"].boxes] == [(0, 0, 64, 48), (1, 3, 11, 20)]
    assert back.classes == ["cell", "dirt"]  # order kept through classes.txt


def test_stem_collisions(tmp_path: Path) -> None:
    a, b = png(tmp_path / "p" / "img.png"), png(tmp_path / "q" / "img.png")
    ds = Dataset(
        ["c"], [ImageRecord(a, W, H, [], "train", True), ImageRecord(b, W, H, [], None, True)]
    )
    with pytest.raises(FormatError, match="shares the file-name stem 'img'"):
        write_yolo(ds, tmp_path / "y")
    write_yolo(ds, tmp_path / "y2", copy_images=True)
    assert len(read_yolo(tmp_path / "y2").images) == 2
    write_voc(ds, tmp_path / "v")
    assert sorted(p.name for p in (tmp_path / "v" / "Annotations").iterdir()) == [
        "img.xml",
        "img_2.xml",
    ]
    assert sorted(str(im.path) for im in read_voc(tmp_path / "v").images) == sorted(
        [str(a), str(b)]
    )


def test_writers_refuse_unknown_labels(small: Dataset, tmp_path: Path) -> None:
    small.images[0].boxes.append(BoxRecord(1, 1, 2, 2, "ghost"))
    for fmt in ("voc", "coco", "yolo"):
        with pytest.raises(FormatError, match="label 'ghost'"):
            write_dataset(small, tmp_path / fmt, fmt)
        assert not (tmp_path / fmt).exists()


@pytest.mark.parametrize("fmt", ["voc", "coco", "yolo"])
def test_writers_refuse_to_overwrite(small: Dataset, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out"
    written = write_dataset(small, out, fmt)
    assert written and all(p.is_file() for p in written)
    before = snapshot(out)
    with pytest.raises(FileExistsError) as info:
        write_dataset(small, out, fmt)
    assert "already exists" in str(info.value) and "overwrite=True" in str(info.value)
    assert any(str(p) in str(info.value) for p in written)
    assert snapshot(out) == before
    write_dataset(small, out, fmt, overwrite=True)


def test_refused_export_writes_nothing(small: Dataset, tmp_path: Path) -> None:
    out = tmp_path / "voc"
    out.mkdir()
    (out / "classes.txt").write_text("old\n")
    with pytest.raises(FileExistsError, match=r"classes\.txt: already exists"):
        write_voc(small, out)
    assert sorted(p.name for p in out.iterdir()) == ["classes.txt"]


def _interrupt_the_nth_write(monkeypatch: pytest.MonkeyPatch, n: int) -> list[int]:
    """Ctrl+C (KeyboardInterrupt) right after the ``n``-th text file or image copy is written
    (its temporary file, or its copy, is on disk then); returns the call counter."""
    import shutil

    calls = [0]
    real_write, real_copy = Path.write_text, shutil.copy2

    def count(result):
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: count(real_write(self, *a, **k)))
    monkeypatch.setattr(shutil, "copy2", lambda *a, **k: count(real_copy(*a, **k)))
    return calls


@pytest.mark.parametrize(
    ("fmt", "copy_images"), [("voc", False), ("voc", True), ("yolo", False), ("yolo", True)]
)
def test_an_interrupted_export_leaves_the_folder_as_it_was(
    small: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, copy_images: bool
) -> None:
    """Whatever write Ctrl+C lands on, an export completes or leaves no file of it behind: not
    in a new folder (removed), not in an existing one (its own files untouched)."""
    writer = {"voc": write_voc, "yolo": write_yolo}[fmt]
    with monkeypatch.context() as m:
        calls = _interrupt_the_nth_write(m, 0)
        writer(small, tmp_path / "count", copy_images=copy_images)
        total = calls[0]
    assert total >= 4
    for n in range(1, total + 1):
        fresh, existing = tmp_path / f"new{n}" / "out", tmp_path / f"old{n}"
        fresh.parent.mkdir()
        png(existing / "mine" / "keep.png")
        (existing / "notes.txt").write_text("mine\n")
        before = snapshot(existing)
        for out in (fresh, existing):
            with monkeypatch.context() as m:
                _interrupt_the_nth_write(m, n)
                with pytest.raises(KeyboardInterrupt):
                    writer(small, out, copy_images=copy_images)
        assert not fresh.exists() and (tmp_path / f"new{n}").is_dir(), n
        assert snapshot(existing) == before, n
        assert sorted(p.name for p in existing.iterdir()) == ["mine", "notes.txt"], n


def test_an_interrupted_coco_export_leaves_no_file(
    small: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "c" / "ann.json"
    with monkeypatch.context() as m:
        _interrupt_the_nth_write(m, 1)
        with pytest.raises(KeyboardInterrupt):
            write_coco(small, out)
    assert not (tmp_path / "c").exists()
    assert write_coco(small, out) == [out] and out.is_file()


def test_a_copied_yolo_export_is_read_where_it_is_not_where_it_was_written(
    small: Dataset, tmp_path: Path
) -> None:
    """An export with copy_images names its own absolute folder in data.yaml ``path:``; a
    copy of it elsewhere, the original still there, used to import the original's images."""
    import shutil

    write_yolo(small, tmp_path / "first", copy_images=True)
    shutil.copytree(tmp_path / "first", tmp_path / "moved")
    back = read_yolo(tmp_path / "moved")
    assert back.images and all(
        Path(im.path).is_relative_to(tmp_path / "moved") for im in back.images
    ), [im.path for im in back.images]
    assert any("a moved or copied dataset" in w for w in back.warnings), back.warnings

    def by_name(ds: Dataset) -> dict[str, tuple]:
        return {Path(k).name: v for k, v in boxes_by_path(ds).items()}

    assert by_name(back) == by_name(read_yolo(tmp_path / "first"))
    assert not any("moved" in w for w in read_yolo(tmp_path / "first").warnings)


def test_an_image_folder_names_the_image_files_it_cannot_read(tmp_path: Path) -> None:
    """A .webp or a microscope's .czi among the images was left out without a word."""
    png(tmp_path / "imgs" / "a.png")
    (tmp_path / "imgs" / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "sub" / "b.webp")
    (tmp_path / "imgs" / "scan.CZI").write_bytes(b"vendor bytes")
    (tmp_path / "imgs" / ".hidden.czi").write_bytes(b"x")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image type")
    ds = read_image_folder(tmp_path / "imgs")
    assert [Path(im.path).name for im in ds.images] == ["a.png"]
    notes = [w for w in ds.warnings if "does not read" in w]
    assert len(notes) == 1 and "left out 2 files" in notes[0] and "scan.CZI" in notes[0], notes
    assert "convert them to TIFF or PNG" in notes[0]
    png(tmp_path / "only" / "c.png")
    assert not read_image_folder(tmp_path / "only").warnings
    (tmp_path / "only" / "scan.czi").write_bytes(b"vendor bytes")
    (note,) = read_image_folder(tmp_path / "only").warnings
    assert "left out 1 file " in note and "convert it to TIFF" in note and "import it" in note


def test_write_dataset_coco_into_folder(small: Dataset, tmp_path: Path) -> None:
    assert write_dataset(small, tmp_path / "c", "coco") == [tmp_path / "c" / "annotations.json"]


@pytest.mark.parametrize("fmt", ["voc", "coco", "yolo", "images"])
def test_readers_write_nothing(small: Dataset, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "d"
    if fmt == "images":
        path = tmp_path / "src"
    else:
        write_dataset(small, path, fmt, **({} if fmt == "coco" else {"copy_images": True}))
        if fmt == "coco":
            path = path / "annotations.json"
    before = snapshot(tmp_path)
    ds = read_dataset(path, fmt)
    assert len(ds.images) >= 2
    assert snapshot(tmp_path) == before


def test_detect_format(small: Dataset, tmp_path: Path) -> None:
    write_voc(small, tmp_path / "v")
    write_yolo(small, tmp_path / "y")
    write_coco(small, tmp_path / "c.json")
    assert detect_format(tmp_path / "v") == "voc"
    assert detect_format(tmp_path / "y") == "yolo"
    assert detect_format(tmp_path / "c.json") == "coco"
    assert detect_format(tmp_path / "src") == "images"
    assert len(read_dataset(tmp_path / "y").images) == 3
    with pytest.raises(ValueError, match="unknown format"):
        read_dataset(tmp_path / "v", "pascal")


def test_read_image_folder(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    png(root / "b.png")
    png(root / "a" / "z.TIF".lower())
    png(root / "a" / "y.JPG")
    png(root / ".hidden.png")
    png(root / ".cache" / "x.png")
    (root / "notes.txt").write_text("hi")
    ds = read_image_folder(root)
    assert [im.path.relative_to(root).as_posix() for im in ds.images] == [
        "a/y.JPG",
        "a/z.tif",
        "b.png",
    ]
    assert all(not im.annotated and im.split is None and im.boxes == [] for im in ds.images)
    assert ds.classes == []


# ---- repairs ----------------------------------------------------------------------------------


def test_voc_repairs_are_recorded(tmp_path: Path) -> None:
    root = voc_case(voc_xml(voc_obj(box=(0, -4, 70, 20)), voc_obj(box=(5, 5, 10, 10)), size=None))(
        tmp_path
    )
    ds = read_voc(root)
    (im,) = ds.images
    assert (im.width, im.height) == (W, H)
    assert [b.xyxy() for b in im.boxes] == [(0, 0, 64, 20), (4, 4, 10, 10)]
    assert any(
        "size/width or size/height missing; using the image's 64x48" in w for w in ds.warnings
    )
    assert any(
        "Annotations/a.xml: object 1: box [-1, -5, 70, 20] clipped to the 64x48 image: "
        "[0, 0, 64, 20]" in w
        for w in ds.warnings
    )


@pytest.mark.parametrize(("partial", "noted"), [(None, True), (False, False), (True, False)])
def test_coco_reviewed_regions_without_partial_are_noted(
    tmp_path: Path, partial: bool | None, noted: bool
) -> None:
    """Regions on a record that does not say ``partial`` read as a complete image (the
    documented rule), with a note: the rest of that image would train as background. Our
    export says ``"partial": false`` aloud for a complete image with regions, so its own files
    read back without the note."""

    def mutate(d: dict) -> None:
        d["images"][0]["reviewed_regions"] = [[0, 0, 32, 24]]
        if partial is not None:
            d["images"][0]["partial"] = partial

    ds = read_coco(coco_case(mutate)(tmp_path))
    assert ds.images[0].partial is bool(partial)
    said = [w for w in ds.warnings if "reviewed_regions without" in w]
    assert bool(said) is noted
    if noted:
        assert said[0].startswith("ann.json: images[0]: ") and '"partial": true' in said[0]
    out = tmp_path / "again.json"
    write_coco(ds, out)
    entry = json.loads(out.read_text())["images"][0]
    assert entry["partial"] is bool(partial) and entry["reviewed_regions"] == [[0, 0, 32, 24]]
    again = read_coco(out)
    assert not [w for w in again.warnings if "reviewed_regions without" in w]
    assert again.images[0].partial is bool(partial)


def test_coco_zero_size_widened_and_missing_size_read(tmp_path: Path) -> None:
    def mutate(d: dict) -> None:
        d["annotations"] = [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 6, 0, 10]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [64, 6, 0, 0]},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [-3, 40, 10, 20]},
        ]
        del d["images"][0]["width"]

    ds = read_coco(coco_case(mutate)(tmp_path))
    assert [b.xyxy() for b in ds.images[0].boxes] == [(5, 6, 6, 16), (63, 6, 64, 7), (0, 40, 7, 48)]
    text = "\n".join(ds.warnings)
    assert "annotations[0] (id 1): box [5, 6, 5, 16] zero width widened to 1 px" in text
    assert "zero height widened to 1 px" in text and "clipped to the 64x48 image" in text
    assert "images[0]: width/height missing" in text


def test_yolo_partly_outside_polygon_and_score(tmp_path: Path) -> None:
    label = "0 0.9375 0.5 0.25 0.5\n0 0.25 0.25 0.5 0.25 0.25 0.5 0.5 0.5\n0 0.5 0.5 0.5 0.5 0.7\n"
    ds = read_yolo(yolo_case(label)(tmp_path))
    boxes = ds.images[0].boxes
    assert [b.xyxy() for b in boxes] == [(52, 12, 64, 36), (16, 12, 32, 24), (16, 12, 48, 36)]
    assert [b.score for b in boxes] == [None, None, 0.7]
    assert any("labels/a.txt: line 1: box" in w and "clipped" in w for w in ds.warnings)


def test_yolo_data_yaml_layouts(tmp_path: Path) -> None:
    root = tmp_path / "rf"  # Roboflow-style: train/images, valid/images, names as a list
    png(root / "train" / "images" / "a.png")
    png(root / "valid" / "images" / "b.png")
    (root / "train" / "labels").mkdir(parents=True)
    (root / "train" / "labels" / "a.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text(
        "train: train/images\nval: valid/images\nnc: 2\nnames: ['a', 'b']\n"
    )
    ds = read_yolo(root)
    assert ds.classes == ["a", "b"]
    assert [(im.path.name, im.split, im.annotated, len(im.boxes)) for im in ds.images] == [
        ("a.png", "train", True, 1),
        ("b.png", "val", False, 0),
    ]


def test_non_strict_skips_bad_files_and_boxes(tmp_path: Path) -> None:
    root = voc_case(voc_xml(voc_obj(), voc_obj(box=("abc", 1, 2, 3)), voc_obj(box=(3, 3, 9, 9))))(
        tmp_path
    )
    png(root / "JPEGImages" / "b.png")
    (root / "Annotations" / "b.xml").write_text("<annotation><object>")
    png(root / "JPEGImages" / "c.png")  # no XML: unannotated
    with pytest.raises(FormatError, match="object 2: bndbox/xmin is 'abc'"):
        read_voc(root)
    ds = read_voc(root, strict=False)
    assert [(im.path.name, im.annotated, len(im.boxes)) for im in ds.images] == [
        ("a.png", True, 2),
        ("c.png", False, 0),
    ]  # b.png is left out, not turned into an unannotated image
    assert any(
        "object 2: bndbox/xmin is 'abc', not a number (object skipped)" in w for w in ds.warnings
    )
    assert any(
        "Annotations/b.xml: malformed XML" in w and "(file skipped)" in w for w in ds.warnings
    )


def test_voc_explicit_classes_and_classes_txt(tmp_path: Path) -> None:
    root = voc_case(voc_xml(voc_obj("b"), voc_obj("a")), files={"classes.txt": "b\nz\n"})(tmp_path)
    ds = read_voc(root)
    assert ds.classes == ["b", "z", "a"]
    assert any("classes.txt: class 'a' is used but not listed" in w for w in ds.warnings)
    assert read_voc(root, classes=["a", "b"]).classes == ["a", "b"]


# ---- malformed input --------------------------------------------------------------------------

OK = voc_obj()


def case(id_: str, fmt: str, build, *parts: str, fatal: bool = False, **kwargs):
    """One malformed input: the reader must raise FormatError with all ``parts`` in the message.

    ``fatal``: the problem is structural, so even ``strict=False`` raises.
    """
    return pytest.param(fmt, build, kwargs, list(parts), fatal, id=id_)


MALFORMED = [
    case(
        "voc-malformed-xml",
        "voc",
        voc_case("<annotation><object>"),
        "Annotations/a.xml: malformed XML",
    ),
    case(
        "voc-root-element",
        "voc",
        voc_case("<notvoc/>"),
        "Annotations/a.xml: root element is <notvoc>",
    ),
    case(
        "voc-missing-field",
        "voc",
        voc_case(voc_xml(voc_obj(drop="ymax"))),
        "Annotations/a.xml: object 1: bndbox/ymax is missing",
    ),
    case(
        "voc-missing-bndbox",
        "voc",
        voc_case(voc_xml(voc_obj(drop="bndbox"))),
        "Annotations/a.xml: object 1: <bndbox> is missing",
    ),
    case(
        "voc-non-numeric",
        "voc",
        voc_case(voc_xml(OK, voc_obj(box=("abc", 1, 5, 5)))),
        "Annotations/a.xml: object 2: bndbox/xmin is 'abc', not a number",
    ),
    case(
        "voc-nan",
        "voc",
        voc_case(voc_xml(voc_obj(box=(1, "nan", 5, 5)))),
        "Annotations/a.xml: object 1: bndbox/ymin is 'nan', not a finite number",
    ),
    case(
        "voc-empty-coordinate",
        "voc",
        voc_case(voc_xml(voc_obj(box=(1, 1, "", 5)))),
        "Annotations/a.xml: object 1: bndbox/xmax is empty",
    ),
    case(
        "voc-inverted",
        "voc",
        voc_case(voc_xml(voc_obj(box=(30, 5, 11, 9)))),
        "Annotations/a.xml: object 1: box is inverted (xmin 30 > xmax 11)",
    ),
    case(
        "voc-fully-outside",
        "voc",
        voc_case(voc_xml(voc_obj(box=(70, 5, 80, 10)))),
        "Annotations/a.xml: object 1: box [69, 4, 80, 10] lies entirely outside the 64x48 image",
    ),
    case(
        "voc-empty-name",
        "voc",
        voc_case(voc_xml(voc_obj(" "))),
        "Annotations/a.xml: object 1: <name> is empty",
    ),
    case(
        "voc-missing-name",
        "voc",
        voc_case(voc_xml(voc_obj(None))),
        "Annotations/a.xml: object 1: <name> is missing",
    ),
    case(
        "voc-unknown-class",
        "voc",
        voc_case(voc_xml(voc_obj("dog"))),
        "Annotations/a.xml: object 1: class 'dog' is not one of ['cell']",
        classes=["cell"],
    ),
    case(
        "voc-size-mismatch",
        "voc",
        voc_case(voc_xml(OK, size=(100, 100))),
        "Annotations/a.xml: size is 100x100 but image JPEGImages/a.png is 64x48",
    ),
    case(
        "voc-size-non-numeric",
        "voc",
        voc_case(voc_xml(OK, size=("wide", 48))),
        "Annotations/a.xml: size/width is 'wide', not a number",
    ),
    case(
        "voc-size-zero",
        "voc",
        voc_case(voc_xml(OK, size=(64, 0))),
        "Annotations/a.xml: size/height is 0, not a positive integer",
    ),
    case(
        "voc-missing-image",
        "voc",
        voc_case(voc_xml(OK), image=None),
        "Annotations/a.xml: image not found",
    ),
    case(
        "voc-zero-byte-image",
        "voc",
        voc_case(voc_xml(OK), make_image=zero_byte),
        "Annotations/a.xml: JPEGImages/a.png: empty file (0 bytes)",
    ),
    case(
        "voc-truncated-jpeg",
        "voc",
        voc_case(voc_xml(OK, filename="a.jpg"), image="a.jpg", make_image=truncated_jpeg),
        "Annotations/a.xml: JPEGImages/a.jpg: not a recognised image file",
    ),
    case(
        "voc-text-as-png",
        "voc",
        voc_case(voc_xml(OK), make_image=text_file),
        "Annotations/a.xml: JPEGImages/a.png: not a recognised image file",
    ),
    case(
        "voc-split-unknown-id",
        "voc",
        voc_case(voc_xml(OK), files={"ImageSets/Main/train.txt": "a\nzzz\n"}),
        "ImageSets/Main/train.txt: line 2: image id 'zzz' has no annotation or image",
    ),
    case(
        "voc-split-twice",
        "voc",
        voc_case(
            voc_xml(OK), files={"ImageSets/Main/train.txt": "a\n", "ImageSets/Main/val.txt": "a\n"}
        ),
        "ImageSets/Main/val.txt: line 1: image id 'a' is already in split 'train'",
    ),
    case(
        "voc-no-annotations",
        "voc",
        voc_case(None),
        "voc: not a VOC folder (no Annotations/ folder)",
        fatal=True,
    ),
    case("coco-not-json", "coco", coco_case(raw="{"), "ann.json: not valid JSON", fatal=True),
    case(
        "coco-top-level-list",
        "coco",
        coco_case(raw="[]"),
        "ann.json: top level is a list, not an object",
        fatal=True,
    ),
    case(
        "coco-missing-images",
        "coco",
        coco_case(del_(["images"])),
        "ann.json: 'images' is missing or not a list",
        fatal=True,
    ),
    case(
        "coco-image-missing-key",
        "coco",
        coco_case(del_(["images", 0, "file_name"])),
        "ann.json: images[0]: key 'file_name' is missing",
    ),
    case(
        "coco-ann-missing-key",
        "coco",
        coco_case(del_(["annotations", 0, "bbox"])),
        "ann.json: annotations[0] (id 1): key 'bbox' is missing",
    ),
    case(
        "coco-category-missing-key",
        "coco",
        coco_case(del_(["categories", 0, "name"])),
        "ann.json: categories[0]: key 'name' is missing",
    ),
    case(
        "coco-bbox-string",
        "coco",
        coco_case(set_(["annotations", 0, "bbox"], ["1", 2, 3, 4])),
        "ann.json: annotations[0] (id 1): bbox[0] is '1', not a number",
    ),
    case(
        "coco-width-string",
        "coco",
        coco_case(set_(["images", 0, "width"], "64")),
        "ann.json: images[0]: width is '64', not a number",
    ),
    case(
        "coco-bool-id",
        "coco",
        coco_case(set_(["images", 0, "id"], True)),
        "ann.json: images[0]: id is True, not an integer or string id",
    ),
    case(
        "coco-duplicate-image-id",
        "coco",
        coco_case(
            lambda d: d["images"].append({"id": 1, "file_name": "b.png", "width": W, "height": H})
        ),
        "ann.json: images[0]: duplicate image id 1 (2 images share it)",
    ),
    case(
        "coco-duplicate-annotation-id",
        "coco",
        coco_case(lambda d: d["annotations"].append(dict(d["annotations"][0]))),
        "ann.json: annotations[1] (id 1): duplicate annotation id 1",
    ),
    case(
        "coco-dangling-image-id",
        "coco",
        coco_case(set_(["annotations", 0, "image_id"], 99)),
        "ann.json: annotations[0] (id 1): image_id 99 matches no image",
    ),
    case(
        "coco-dangling-category-id",
        "coco",
        coco_case(set_(["annotations", 0, "category_id"], 7)),
        "ann.json: annotations[0] (id 1): category_id 7 matches no category",
    ),
    case(
        "coco-bbox-length",
        "coco",
        coco_case(set_(["annotations", 0, "bbox"], [1, 2, 3])),
        "ann.json: annotations[0] (id 1): bbox has 3 values, expected 4",
    ),
    case(
        "coco-negative-width",
        "coco",
        coco_case(set_(["annotations", 0, "bbox"], [1, 2, -3, 4])),
        "ann.json: annotations[0] (id 1): bbox [1, 2, -3, 4] has a negative width or height",
    ),
    case(
        "coco-bbox-outside",
        "coco",
        coco_case(set_(["annotations", 0, "bbox"], [100, 2, 3, 4])),
        "ann.json: annotations[0] (id 1): box [100, 2, 103, 6]",
        "lies entirely outside the 64x48 image",
    ),
    case(
        "coco-missing-image-file",
        "coco",
        coco_case(set_(["images", 0, "file_name"], "nope.png")),
        "ann.json: images[0]: image file 'nope.png' not found",
    ),
    case(
        "coco-size-mismatch",
        "coco",
        coco_case(set_(["images", 0, "width"], 65)),
        "ann.json: images[0]: width x height is 65x48 but image 'a.png' is 64x48",
    ),
    case(
        "coco-bad-split",
        "coco",
        coco_case(set_(["images", 0, "split"], "training")),
        "ann.json: images[0]: split is 'training', not one of",
    ),
    case(
        "yolo-too-few-fields",
        "yolo",
        yolo_case("0 0.5 0.5 0.1\n"),
        "labels/a.txt: line 1: has 4 fields, expected 5 (class cx cy w h)",
    ),
    case(
        "yolo-class-out-of-range",
        "yolo",
        yolo_case("5 0.5 0.5 0.1 0.1\n"),
        "labels/a.txt: line 1: class index 5 is out of range (1 classes: 0..0)",
    ),
    case(
        "yolo-class-not-integer",
        "yolo",
        yolo_case("1.5 0.5 0.5 0.1 0.1\n"),
        "labels/a.txt: line 1: class index '1.5' is not an integer",
    ),
    case(
        "yolo-non-numeric",
        "yolo",
        yolo_case("0 0.5 0.5 0.1 0.1\n0 0.5 x 0.1 0.1\n"),
        "labels/a.txt: line 2: cy is 'x', not a number",
    ),
    case(
        "yolo-outside-unit-square",
        "yolo",
        yolo_case("0 1.5 0.5 0.2 0.2\n"),
        "labels/a.txt: line 1: box",
        "lies entirely outside the 64x48 image",
    ),
    case(
        "yolo-negative-size",
        "yolo",
        yolo_case("0 0.5 0.5 -0.1 0.1\n"),
        "labels/a.txt: line 1: width/height -0.1/0.1 is negative",
    ),
    case(
        "yolo-label-without-image",
        "yolo",
        yolo_case(files={"labels/b.txt": "0 0.5 0.5 0.1 0.1\n"}),
        "labels/b.txt: no image found for this label file",
    ),
    case(
        "yolo-zero-byte-image",
        "yolo",
        yolo_case(make_image=zero_byte),
        "images/a.png: empty file (0 bytes)",
    ),
    case(
        "yolo-no-class-names", "yolo", yolo_case(classes=None), "no class names found", fatal=True
    ),
    case(
        "yolo-bad-yaml",
        "yolo",
        yolo_case(files={"data.yaml": "names: [a, b\n"}),
        "data.yaml: not valid YAML",
        fatal=True,
    ),
    case(
        "yolo-names-keys-gap",
        "yolo",
        yolo_case(files={"data.yaml": "names: {0: a, 2: b}\n"}),
        "data.yaml: names keys are [0, 2], expected 0..1",
        fatal=True,
    ),
    case(
        "images-text-as-png",
        "images",
        images_case(text_file, "b.png"),
        "sub/b.png: not a recognised image file",
    ),
    case(
        "images-truncated-jpeg",
        "images",
        images_case(truncated_jpeg, "c.jpg"),
        "sub/c.jpg: not a recognised image file",
    ),
    case(
        "images-zero-byte",
        "images",
        images_case(zero_byte, "d.tif"),
        "sub/d.tif: empty file (0 bytes)",
    ),
]


@pytest.mark.parametrize(("fmt", "build", "kwargs", "parts", "fatal"), MALFORMED)
def test_malformed_input(tmp_path: Path, fmt, build, kwargs, parts, fatal) -> None:
    path = build(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(FormatError) as info:
        read_dataset(path, fmt, **kwargs)
    msg = str(info.value)
    for part in parts:
        assert part in msg, msg
    # lenient mode: either the same problem is reported as a warning, or it is fatal anyway
    if fatal:
        with pytest.raises(FormatError):
            read_dataset(path, fmt, strict=False, **kwargs)
    else:
        ds = read_dataset(path, fmt, strict=False, **kwargs)
        assert any(all(p in w for p in parts) and "skipped)" in w for w in ds.warnings), ds.warnings
    assert snapshot(tmp_path) == before


def test_enough_malformed_cases() -> None:
    assert len(MALFORMED) >= 25
    assert {c.values[0] for c in MALFORMED} == {"voc", "coco", "yolo", "images"}


def test_yolo_without_data_yaml_takes_splits_from_folders(tmp_path: Path) -> None:
    root = tmp_path / "y"
    png(root / "images" / "train" / "a.png")
    png(root / "images" / "val" / "b.png")
    png(root / "images" / "c.png")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "classes.txt").write_text("cell\n")
    ds = read_yolo(root)
    assert [(im.path.name, im.split, im.annotated) for im in ds.images] == [
        ("c.png", None, False),
        ("a.png", "train", True),
        ("b.png", "val", False),
    ]
    assert ds.images[1].boxes[0].xyxy() == (16, 12, 48, 36)


def test_voc_export_notes_image_ids_with_spaces_in_its_imagesets_lists(tmp_path: Path) -> None:
    """ImageSets lists hold one id per line; the VOC devkit splits them on whitespace, so an
    id with a space (``cell (1)``) is written as it is, read back by napari-al, and named in a
    note; ids without spaces make no note."""
    spaced = png(tmp_path / "img" / "cell (1).png")
    plain = png(tmp_path / "img" / "plain.png")

    def dataset(*paths: Path) -> Dataset:
        images = [
            ImageRecord(p, W, H, [BoxRecord(1, 2, 20, 30, "cell")], split="train", annotated=True)
            for p in paths
        ]
        return Dataset(["cell"], images)

    with_space = dataset(spaced, plain)
    write_voc(with_space, tmp_path / "voc")
    (note,) = [w for w in with_space.warnings if "ImageSets/Main" in w]
    assert "1 image id with spaces (e.g. 'cell (1)')" in note and "devkit" in note
    lines = (tmp_path / "voc" / "ImageSets" / "Main" / "train.txt").read_text().splitlines()
    assert sorted(lines) == ["cell (1)", "plain"]
    back = read_voc(tmp_path / "voc")
    assert sorted(im.path.name for im in back.images if im.split == "train") == [
        "cell (1).png",
        "plain.png",
    ]
    without = dataset(plain)
    write_voc(without, tmp_path / "voc2")
    assert not [w for w in without.warnings if "ImageSets/Main" in w]
