"""Training and evaluation leave out an unreadable image, as prediction and ranking do.

Found by a new user: one corrupt or truncated training image (or a missing val image) stopped
``napari-al train`` / ``evaluate`` with an error and nothing saved, although ``info`` says
training and prediction skip such files. Every image is generated here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from napari_al.cli import main
from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.store import ProjectStore

TINY = ["--min-size", "64", "--max-size", "80", "--device", "cpu"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Four complete train images and two complete val images, one class; no model."""
    root = tmp_path / "p"
    recs = []
    for i, split in enumerate(["train"] * 4 + ["val"] * 2):
        path = root / f"im{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (i * 40, 100, 50)).save(path, quality=95)
        recs.append(ImageRecord(path, 64, 48, [BoxRecord(4, 4, 30, 30, "cell")], split, True))
    with ProjectStore.create(root) as store:
        store.import_dataset(Dataset(["cell"], recs), allow_duplicates=True)
    return root


def test_train_leaves_out_corrupt_truncated_and_missing_images(project: Path, capsys) -> None:
    (project / "im0.jpg").write_bytes(b"junk")  # not an image any more
    data = (project / "im1.jpg").read_bytes()
    (project / "im1.jpg").write_bytes(data[: len(data) // 2])  # a truncated download
    (project / "im2.jpg").unlink()  # moved away
    capsys.readouterr()
    assert main(["train", str(project), *TINY, "--steps", "1"]) == 0
    out, err = capsys.readouterr()
    assert "saved model version 1" in out
    for name in ("im0.jpg", "im1.jpg", "im2.jpg"):
        line = next(ln for ln in err.splitlines() if name in ln)
        assert line.startswith("warning: skipped unreadable image") and "re-save" in line
    assert "im3.jpg" not in err
    with ProjectStore.open(project) as store:
        metrics = store.model_versions()[-1].metrics
    assert metrics["examples"] == 1  # im3 only


def test_evaluate_leaves_out_a_missing_val_image_and_writes_strict_json(
    project: Path, capsys
) -> None:
    assert main(["train", str(project), *TINY, "--steps", "1"]) == 0
    (project / "im4.jpg").unlink()
    assert main(["add-class", str(project), "debris"]) == 0  # no ground truth: its AP is NaN
    capsys.readouterr()
    assert main(["evaluate", str(project), *TINY, "--json"]) == 0
    out, err = capsys.readouterr()

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    result = json.loads(out, parse_constant=refuse)  # NaN/Infinity would be refused here
    assert result["images"] == 1 and "skipped unreadable image" in err and "im4.jpg" in err
    assert result["per_class"]["debris"]["ap50"] is None  # NaN written as null
    (project / "im5.jpg").unlink()
    assert main(["evaluate", str(project), *TINY]) == 1
    err = capsys.readouterr().err
    assert "none of the 2 reviewed val images can be read" in err


def test_json_output_turns_nan_into_null() -> None:
    """An AP with no ground truth is NaN: strict JSON has no NaN, so it is written as null."""
    import numpy as np

    from napari_al.cli.common import json_text

    text = json_text({"ap": float("nan"), "n": np.int64(3), "x": [np.float32(0.5), np.inf]})
    assert json.loads(text) == {"ap": None, "n": 3, "x": [0.5, None]}


@pytest.mark.parametrize("with_other_image", [False, True])
def test_init_names_an_unreadable_image_of_a_voc_folder_once(
    tmp_path: Path, capsys, with_other_image: bool
) -> None:
    """A text file named ``JPEGImages/garbage.jpg`` in a VOC folder: the VOC reader skipped it
    and the scan for images no XML names read it again, so init warned of it twice."""
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    Image.new("RGB", (32, 24), (9, 9, 9)).save(root / "JPEGImages" / "a.jpg")
    (root / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><object><name>cell</name><bndbox><xmin>2</xmin>"
        "<ymin>2</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>"
    )
    (root / "JPEGImages" / "garbage.jpg").write_text("garbage")
    if with_other_image:  # the scan then reads the folder again
        Image.new("RGB", (32, 24), (90, 9, 9)).save(root / "b.png")
    assert main(["init", str(root)]) == 0
    err = capsys.readouterr().err
    assert err.count("garbage.jpg") == 1, err


def test_info_finds_a_tiled_tiff_truncated_after_import(tmp_path: Path, capsys) -> None:
    """``info``'s file check reads a TIFF's strip and tile offsets (not its pixels): a tiled
    TIFF truncated after import is named unreadable, as prediction will find it (a newcomer's
    ``info`` said "all found and readable" and ``predict`` then skipped the file)."""
    import numpy as np
    import tifffile

    root = tmp_path / "p"
    root.mkdir()
    path = root / "large.tif"
    pixels = np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    tifffile.imwrite(path, pixels, tile=(256, 256), compression="zlib")
    with ProjectStore.create(root) as store:
        store.import_dataset(Dataset(["cell"], [ImageRecord(path, 800, 600, [])]))
    assert main(["info", str(root)]) == 0
    assert "image files: all 1 found and readable" in capsys.readouterr().out
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    main(["info", str(root)])
    out, err = capsys.readouterr()
    assert "found and readable" not in out
    line = next(ln for ln in (out + err).splitlines() if "large.tif" in ln)
    assert "truncated" in line
