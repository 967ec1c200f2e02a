"""OME-Zarr (OME-NGFF 0.4 on zarr v2, 0.5 on zarr v3) images: one image wherever an image file
is (folder import, sizes, whole reads, file identity), and read window by window when large,
as a tiled TIFF is (windows, pyramid, display levels, intensity limits, tiled prediction)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from large_image_helpers import fake_infer_raw
from PIL import Image

from napari_al.core import lazy_images, ome_zarr
from napari_al.core.images import (
    ImageReadError,
    check_pixels,
    file_sha256,
    find_images,
    image_size,
    intensity_limits,
    read_image,
    scale_to_uint8,
)
from napari_al.core.lazy_images import (
    LazyImage,
    WindowReader,
    open_display,
    open_rgb,
    reads_lazily,
)

RNG = np.random.default_rng(0)


def write_ome_zarr(
    path: Path,
    data: np.ndarray,
    axes: str,
    *,
    zarr_format: int = 3,
    levels: int = 2,
    chunk: int = 32,
) -> list[np.ndarray]:
    """Write ``data`` (axes named by the letters of ``axes``, y and x last) as an OME-Zarr
    image with ``levels`` levels, each sampled every 2 px from the one before (level ``k`` is
    ``data[..., ::2**k, ::2**k]``), chunks of ``chunk`` x ``chunk`` px; NGFF 0.4 attributes
    for zarr v2, 0.5 for v3. Returns the levels written."""
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    arrays, datasets = [], []
    for k in range(levels):
        a = data[..., :: 2**k, :: 2**k]
        z = group.create_array(
            str(k), shape=a.shape, chunks=(1,) * (a.ndim - 2) + (chunk, chunk), dtype=a.dtype
        )
        z[...] = a
        arrays.append(a)
        scale = [1.0] * (a.ndim - 2) + [2.0**k, 2.0**k]
        datasets.append(
            {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    kinds = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
    entry = {"axes": [{"name": n, "type": kinds[n]} for n in axes], "datasets": datasets}
    if zarr_format == 2:
        group.attrs["multiscales"] = [{"version": "0.4", **entry}]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [entry]}
    return arrays


#: (axes, array written, what read_image gives): greyscale uint16 with singleton t and z,
#: RGB uint8 channels first, RGBA (alpha dropped), a single channel (c of 1).
def _cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    grey = RNG.integers(0, 60_000, (100, 130), dtype=np.uint16)
    rgb = RNG.integers(0, 256, (3, 90, 70), dtype=np.uint8)
    rgba = RNG.integers(0, 256, (4, 40, 50), dtype=np.uint8)
    one = RNG.integers(0, 256, (1, 40, 50), dtype=np.uint8)
    return [
        ("tzyx", grey[None, None], grey),
        ("yx", grey, grey),
        ("cyx", rgb, np.moveaxis(rgb, 0, -1)),
        ("tczyx", rgb[None, :, None], np.moveaxis(rgb, 0, -1)),
        ("cyx", rgba, np.moveaxis(rgba[:3], 0, -1)),
        ("cyx", one, one[0]),
    ]


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("case", range(6))
def test_sizes_levels_windows_and_whole_reads(tmp_path: Path, zarr_format: int, case: int) -> None:
    axes, data, want = _cases()[case]
    path = tmp_path / "img.ome.zarr"
    write_ome_zarr(path, data, axes, zarr_format=zarr_format)
    h, w = want.shape[:2]
    assert image_size(path) == (w, h)
    check_pixels(path)
    got = read_image(path)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    with ome_zarr.OmeZarrImage(path) as image:
        assert isinstance(image, LazyImage)
        assert image.shape == want.shape and image.dtype == want.dtype
        assert image.levels == [(h, w), (-(-h // 2), -(-w // 2))]
        np.testing.assert_array_equal(image[7:33, 11:45], want[7:33, 11:45])
        np.testing.assert_array_equal(
            image.read(slice(3, 20), slice(2, 25), 1), want[::2, ::2][3:20, 2:25]
        )


def test_windows_are_decoded_chunk_by_chunk(tmp_path: Path) -> None:
    """A window reads only the chunks under it: of 16 chunks (4 x 4 of 32 px), a 20 x 20 px
    window inside one chunk decodes that one."""
    path = tmp_path / "img.zarr"
    data = RNG.integers(0, 256, (128, 128), dtype=np.uint8)
    write_ome_zarr(path, data, "yx", levels=1)
    for chunk in list((path / "0" / "c").rglob("*")):
        if chunk.is_file() and chunk.parts[-2:] != ("1", "1"):
            chunk.write_bytes(b"not a chunk")  # any read of it fails
    with ome_zarr.OmeZarrImage(path) as image:
        np.testing.assert_array_equal(image[40:60, 35:60], data[40:60, 35:60])
        with pytest.raises(ImageReadError, match="cannot decode the window"):
            image[0:10, 0:10]


def test_a_large_one_is_read_lazily_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over LAZY_PIXELS (lowered here), the readers that a large tiled TIFF goes through read
    it by windows: ``open_rgb`` (uint16 scaled by limits estimated on the small level),
    ``WindowReader`` and ``open_display`` (a multiscale list), never whole."""
    monkeypatch.setattr(lazy_images, "LAZY_PIXELS", 64 * 64)
    monkeypatch.setattr(lazy_images, "LIMIT_SAMPLE_PIXELS", 50 * 50)
    data = RNG.integers(100, 5000, (1, 200, 260), dtype=np.uint16)
    path = tmp_path / "img.ome.zarr"
    levels = write_ome_zarr(path, data, "zyx")
    grey = data[0]

    def whole(*a, **k):
        raise AssertionError("read whole")

    monkeypatch.setattr(ome_zarr, "read_ome_zarr", whole)
    assert reads_lazily(path)
    limits = intensity_limits(levels[1][0])  # the level of >= LIMIT_SAMPLE_PIXELS pixels
    want = np.repeat(scale_to_uint8(grey, limits)[..., None], 3, axis=2)
    with open_rgb(path) as view:
        assert view.shape == (200, 260, 3) and view.limits == limits
        np.testing.assert_array_equal(view[50:120, 60:200], want[50:120, 60:200])
    window = WindowReader(path).read(-10, 190, 30, 230)
    assert window.shape == (40, 40, 3)
    np.testing.assert_array_equal(window[10:], 0)  # outside the image: black
    np.testing.assert_array_equal(window[:, :10], 0)
    np.testing.assert_array_equal(window[:10, 10:], want[190:200, 0:30])
    shown = open_display(path)
    try:
        assert isinstance(shown, LazyImage)
        display = shown.display_levels(smallest_side=40)
        assert isinstance(display, list) and len(display) == 4  # 2 stored, 2 sampled
        assert [tuple(d.shape) for d in display] == [(200, 260), (100, 130), (50, 65), (25, 33)]
        np.testing.assert_array_equal(np.asarray(display[0][10:90, 20:140]), grey[10:90, 20:140])
        np.testing.assert_array_equal(np.asarray(display[3]), grey[::8, ::8])
    finally:
        shown.close()


def test_rgb_display_levels_keep_channels_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lazy_images, "LAZY_PIXELS", 64 * 64)
    data = RNG.integers(0, 256, (3, 120, 100), dtype=np.uint8)
    path = tmp_path / "rgb.zarr"
    write_ome_zarr(path, data, "cyx", zarr_format=2)
    rgb = np.moveaxis(data, 0, -1)
    shown = open_display(path)
    assert isinstance(shown, LazyImage)
    levels = shown.display_levels(smallest_side=50)
    assert [tuple(d.shape) for d in levels] == [(120, 100, 3), (60, 50, 3), (30, 25, 3)]
    np.testing.assert_array_equal(np.asarray(levels[1]), rgb[::2, ::2])
    with open_rgb(path) as view:
        assert view.limits is None
        np.testing.assert_array_equal(view[5:70, 8:90], rgb[5:70, 8:90])


@pytest.mark.parametrize(
    ("axes", "shape"),
    [("zyx", (5, 40, 40)), ("cyx", (2, 40, 40)), ("tyx", (3, 40, 40)), ("xy", (40, 40))],
)
def test_unsupported_axes_are_one_line_errors(tmp_path: Path, axes: str, shape: tuple) -> None:
    path = tmp_path / "bad.ome.zarr"
    write_ome_zarr(path, np.zeros(shape, np.uint8), axes, levels=1)
    for read in (image_size, read_image, check_pixels, ome_zarr.OmeZarrImage):
        with pytest.raises(ImageReadError) as info:
            read(path)
        msg = str(info.value)
        assert "\n" not in msg and msg.startswith(str(path))
        found = ", ".join(f"{a}={s}" for a, s in zip(axes, shape, strict=True))
        assert f"unsupported OME-Zarr axes ({found})" in msg
    assert not reads_lazily(path)


def test_a_zarr_without_multiscales_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "plain.zarr"
    zarr.open_group(str(path), mode="w").create_array("0", shape=(10, 10), dtype="u1")
    with pytest.raises(ImageReadError, match="not an OME-Zarr image"):
        image_size(path)
    # listed, so that a folder import names it and what is missing, never silently skipped
    (tmp_path / "empty.zarr").mkdir()
    assert find_images(tmp_path) == [tmp_path / "empty.zarr", path]
    from napari_al.core.formats import read_image_folder

    dataset = read_image_folder(tmp_path, strict=False)
    assert dataset.images == []
    assert len(dataset.warnings) == 2
    assert all("not an OME-Zarr image" in w for w in dataset.warnings), dataset.warnings


def test_folder_import_finds_it_as_one_image(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``napari-al init`` of a folder with one .ome.zarr and one PNG: 2 images, the zarr
    directory never entered (a PNG inside it is not an image of the folder)."""
    from napari_al.cli import main
    from napari_al.core.formats import read_image_folder
    from napari_al.core.store import ProjectStore

    folder = tmp_path / "proj"
    folder.mkdir()
    data = RNG.integers(0, 256, (3, 60, 80), dtype=np.uint8)
    write_ome_zarr(folder / "scan.ome.zarr", data, "cyx", zarr_format=2)
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(folder / "b.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "scan.ome.zarr" / "thumb.png")
    dataset = read_image_folder(folder)
    assert [(Path(r.path).name, r.width, r.height) for r in dataset.images] == [
        ("b.png", 40, 30),
        ("scan.ome.zarr", 80, 60),
    ]
    assert main(["init", str(folder)]) == 0
    assert "2 images" in capsys.readouterr().out
    with ProjectStore.open(folder) as store:
        rows = sorted(store.images(), key=lambda r: r.path)
        assert [(r.path, r.width, r.height) for r in rows] == [
            ("b.png", 40, 30),
            ("scan.ome.zarr", 80, 60),
        ]
        assert store.check_files()["unreadable"] == []
        np.testing.assert_array_equal(read_image(store.abs_path(rows[1])), np.moveaxis(data, 0, -1))


def test_every_folder_scan_finds_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The scans of the dataset readers (YOLO's image folders) and of ``init`` on a labelled
    dataset (the images the labels do not name join the pool) find an OME-Zarr as one image,
    and none enters it."""
    from napari_al.cli import main
    from napari_al.core.formats.common import _iter_images
    from napari_al.core.store import ProjectStore

    folder = tmp_path / "voc"
    (folder / "JPEGImages").mkdir(parents=True)
    (folder / "Annotations").mkdir()
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(folder / "JPEGImages" / "a.png")
    (folder / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><size><width>40</width><height>30</height>"
        "<depth>3</depth></size><object><name>cell</name><bndbox><xmin>2</xmin><ymin>2</ymin>"
        "<xmax>10</xmax><ymax>10</ymax></bndbox></object></annotation>"
    )
    data = RNG.integers(0, 256, (60, 80), dtype=np.uint8)
    write_ome_zarr(folder / "JPEGImages" / "scan.ome.zarr", data, "yx")
    Image.fromarray(data[:8, :8]).save(folder / "JPEGImages" / "scan.ome.zarr" / "x.png")
    names = [p.name for p in _iter_images(folder / "JPEGImages")]
    assert names == ["a.png", "scan.ome.zarr"]
    assert main(["init", str(folder)]) == 0
    capsys.readouterr()
    with ProjectStore.open(folder) as store:
        rows = {Path(r.path).name: r for r in store.images()}
    assert set(rows) == {"a.png", "scan.ome.zarr"}
    assert (rows["scan.ome.zarr"].width, rows["scan.ome.zarr"].height) == (80, 60)


def test_file_identity_covers_metadata_and_the_coarsest_level(tmp_path: Path) -> None:
    from napari_al.core.store import file_sha256 as store_sha256

    data = RNG.integers(0, 256, (64, 64), dtype=np.uint8)
    a = tmp_path / "a.zarr"
    write_ome_zarr(a, data, "yx")
    b = tmp_path / "b.zarr"
    shutil.copytree(a, b)
    digest = file_sha256(a)
    assert len(digest) == 64 and digest == file_sha256(b) == store_sha256(b)
    other = data.copy()
    other[::2, ::2] ^= 1  # every pixel of level 1 changes
    c = tmp_path / "c.zarr"
    write_ome_zarr(c, other, "yx")
    assert file_sha256(c) != digest
    d = tmp_path / "d.zarr"
    write_ome_zarr(d, data, "yx", chunk=16)  # the same pixels in another chunk layout
    assert file_sha256(d) != digest


def test_a_large_one_predicts_window_by_window_in_image_coordinates(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 5000 x 5000 px OME-Zarr (25 Mpx, over LAZY_PIXELS; only the chunks under its squares
    are stored) imports with ``init`` and predicts tile by tile, never read whole: the perfect
    detector's boxes are the squares, in full-image pixels."""
    from napari_al.cli import main
    from napari_al.core import workflow
    from napari_al.core.engine import Detector
    from napari_al.core.store import ProjectStore

    folder = tmp_path / "slide"
    folder.mkdir()
    side = 5000
    squares = [(300, 250, 40), (2010, 1000, 50), (4500, 4700, 60)]  # x, y, side
    group = zarr.open_group(str(folder / "slide.ome.zarr"), mode="w")
    for k in range(2):
        n = -(-side // 2**k)
        z = group.create_array(str(k), shape=(1, n, n), chunks=(1, 512, 512), dtype="u1")
        for x, y, s in squares:
            step = 2**k
            z[0, -(-y // step) : -(-(y + s) // step), -(-x // step) : -(-(x + s) // step)] = 255
    axes = [{"name": "z", "type": "space"}, {"name": "y"}, {"name": "x"}]
    datasets = [{"path": "0"}, {"path": "1"}]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}

    def whole(*a, **k):
        raise AssertionError("the whole image was read")

    monkeypatch.setattr(ome_zarr, "read_ome_zarr", whole)
    monkeypatch.setattr(Detector, "infer_raw", fake_infer_raw)
    assert main(["init", str(folder)]) == 0
    assert "1 image" in capsys.readouterr().out
    detector = Detector(["cell"], min_size=1024, max_size=1024, seed=0, device="cpu")
    with ProjectStore.open(folder) as store:
        store.add_class("cell")
        (row,) = store.images()
        assert (row.path, row.width, row.height) == ("slide.ome.zarr", side, side)
        workflow.predict_images(store, detector, tiles=workflow.TileSettings(tile_above=4096))
        boxes = sorted(b.xyxy for b in store.boxes(image_id=row.id, statuses=("predicted",)))
    assert boxes == sorted((x, y, x + s, y + s) for x, y, s in squares)


@pytest.mark.parametrize(
    ("fmt", "copy"),
    [("coco", False), ("voc", False), ("voc", True), ("yolo", False), ("yolo", True)],
)
def test_export_and_import_round_trip(tmp_path: Path, fmt: str, copy: bool) -> None:
    """A project holding an OME-Zarr image exports it in every format (named by the label
    files, or copied whole with ``copy_images``) and the export imports back with its box
    (newcomer report: the readers looked for files only, and a copy raised IsADirectoryError)."""
    from napari_al.core.annotator import Annotator
    from napari_al.core.project import export_dataset, import_into, open_or_init
    from napari_al.core.store import ProjectStore

    folder = tmp_path / "proj"
    folder.mkdir()
    data = RNG.integers(0, 256, (3, 60, 80), dtype=np.uint8)
    write_ome_zarr(folder / "scan.ome.zarr", data, "cyx")
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(folder / "b.png")
    box = (10.0, 12.0, 30.0, 40.0)
    with open_or_init(folder) as store:
        cell = store.add_class("cell")
        ann = Annotator(store)
        for row in store.images():
            ann.draw(row.id, box, cell)
            ann.complete_image(row.id)
    out = tmp_path / f"export-{fmt}"
    options = {"copy_images": True} if copy else {}
    with ProjectStore.open(folder) as store:
        export_dataset(store, out, fmt, **options)
    if copy:
        copied = [p for p in out.rglob("*.zarr") if p.is_dir()]
        assert len(copied) == 1
        np.testing.assert_array_equal(read_image(copied[0]), np.moveaxis(data, 0, -1))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    source = out / "annotations.json" if fmt == "coco" else out
    with open_or_init(fresh) as store:
        import_into(store, source, fmt)
    with ProjectStore.open(fresh) as store:
        rows = {Path(r.path).name: r for r in store.images()}
        assert set(rows) == {"scan.ome.zarr", "b.png"}
        zrow = rows["scan.ome.zarr"]
        assert (zrow.width, zrow.height, zrow.review_state) == (80, 60, "complete")
        assert [b.xyxy for b in store.boxes(image_id=zrow.id)] == [box]


@pytest.mark.gui
def test_the_viewer_shows_a_large_one_multiscale_and_a_drawn_box_lands_in_place(  # type: ignore[no-untyped-def]
    make_napari_viewer, tmp_path: Path, qtbot
) -> None:
    """A 5,000 x 5,000 px OME-Zarr (two stored levels) opened through the widget: a multiscale
    layer of its stored levels plus sampled ones, read window by window; a box drawn on it is
    stored in image pixels, and every level shows the image under it."""
    from gui_helpers import open_widget

    from napari_al.cli import main
    from napari_al.core.boxes import xyxy_to_napari

    folder = tmp_path / "slide"
    folder.mkdir()
    side, (x, y, rw, rh) = 5000, (3120, 410, 64, 40)
    data = np.zeros((3, side, side), np.uint8)
    data[:, y : y + rh, x : x + rw] = np.array([255, 200, 40], np.uint8)[:, None, None]
    write_ome_zarr(folder / "slide.ome.zarr", data, "cyx", chunk=512)
    del data
    assert main(["init", str(folder)]) == 0
    assert main(["add-class", str(folder), "cell"]) == 0
    _viewer, w = open_widget(make_napari_viewer, folder, show=True)
    c, view, store = w.controller, w.controller.view, w.store
    (row,) = store.images()
    c.show_image(row.id)
    qtbot.wait(300)
    layer = view.image_layer
    assert layer.multiscale and view._lazy is not None
    assert view._lazy.levels == [(side, side), (2500, 2500)]  # the stored pyramid
    assert [lv.shape[:2] for lv in layer.data][:2] == [(side, side), (2500, 2500)]
    assert max(layer.data[-1].shape[:2]) <= 2048  # sampled levels down to a screenful
    xyxy = (float(x), float(y), float(x + rw), float(y + rh))
    view.boxes_layer.add(xyxy_to_napari([xyxy]), shape_type="rectangle")
    qtbot.waitUntil(lambda: len(store.boxes(image_id=row.id)) == 1, timeout=5000)
    (drawn,) = store.boxes(image_id=row.id)
    assert (drawn.xyxy, drawn.status) == (xyxy, "drawn")
    for k, level in enumerate(layer.data):  # under it, every level is the rectangle
        s = 2**k
        window = np.asarray(level[-(-y // s) : -(-(y + rh) // s), -(-x // s) : -(-(x + rw) // s)])
        assert window.size and (window == (255, 200, 40)).all(), k
