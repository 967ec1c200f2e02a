"""A ``--copy-images`` YOLO export always names the ``train`` and ``val`` that Ultralytics needs.

Found by a newcomer: a project without a ``val`` split wrote a data.yaml without ``val:``, which
Ultralytics refuses ("'train' and 'val' are required in all data YAMLs"); a project made from
plain images, reviewed in the viewer, keeps its images in ``pool`` and wrote neither. Every
input is generated here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from PIL import Image

from napari_al.cli import main
from napari_al.core.data import BoxRecord, Dataset, ImageRecord
from napari_al.core.formats import read_yolo
from napari_al.core.store import ProjectStore


def _project(tmp_path: Path, splits: list[str]) -> Path:
    """One complete image with a box per entry of ``splits`` (its split), one class."""
    project = tmp_path / "proj"
    project.mkdir()
    records = []
    for i, split in enumerate(splits):
        path = project / f"im{i}.png"
        Image.new("RGB", (64, 48), (i * 40, 100, 50)).save(path)
        records.append(ImageRecord(path, 64, 48, [BoxRecord(2, 2, 20, 20, "cell")], split, True))
    with ProjectStore.create(project) as store:
        store.import_dataset(Dataset(["cell"], records))
        for row in store.images():  # an import may move pool images to train: set them back
            store.set_split(row.id, splits[int(Path(row.path).stem[2:])])
            store.set_review_state(row.id, "complete")
    return project


def _entries(cfg: dict, key: str) -> list[str]:
    value = cfg[key]
    return value if isinstance(value, list) else [value]


def _ultralytics_images(out: Path, key: str) -> set[str]:
    """The images Ultralytics' check_det_dataset would read for ``key``: each entry resolved
    against data.yaml's ``path``; ``train`` and ``val`` are required."""
    cfg = yaml.safe_load((out / "data.yaml").read_text())
    assert "train" in cfg and "val" in cfg, cfg
    root = Path(cfg["path"])
    names: set[str] = set()
    for entry in _entries(cfg, key):
        folder = root / entry
        assert folder.is_dir(), entry
        names |= {p.name for p in folder.iterdir()}
    return names


@pytest.mark.parametrize(
    ("splits", "train", "val", "note"),
    [
        (["train", "train", "test"], {"im0.png", "im1.png"}, {"im0.png", "im1.png"}, "no val"),
        (["pool", "pool"], {"im0.png", "im1.png"}, {"im0.png", "im1.png"}, "no val"),
        (["train", "pool", "val"], {"im0.png", "im1.png"}, {"im2.png"}, "images/pool"),
    ],
    ids=["no-val", "pool-only", "train-pool-val"],
)
def test_the_data_yaml_names_train_and_val(
    tmp_path: Path, capsys, splits: list[str], train: set[str], val: set[str], note: str
) -> None:
    project = _project(tmp_path, splits)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["export", str(project), str(out), "--format", "yolo", "--copy-images"]) == 0
    err = capsys.readouterr().err
    assert _ultralytics_images(out, "train") == train
    assert _ultralytics_images(out, "val") == val
    assert note in err, err
    # napari-al reads its own export back: each image once, in its split, no error
    back = read_yolo(out)
    assert sorted((im.path.name, im.split) for im in back.images) == sorted(
        (f"im{i}.png", s) for i, s in enumerate(splits)
    )


def test_a_project_with_val_writes_no_note(tmp_path: Path, capsys) -> None:
    project = _project(tmp_path, ["train", "val"])
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["export", str(project), str(out), "--format", "yolo", "--copy-images"]) == 0
    assert "note:" not in capsys.readouterr().err
    cfg = yaml.safe_load((out / "data.yaml").read_text())
    assert cfg["train"] == "images/train" and cfg["val"] == "images/val"
    assert read_yolo(out).warnings == []


def test_a_val_entry_naming_the_train_images_is_read_once_as_train(tmp_path: Path) -> None:
    """Ultralytics' coco128.yaml has ``val: images/train2017``, the train images: they are
    read once, as train, with a warning (they were refused as 'listed in splits train and
    val')."""
    root = tmp_path / "coco128"
    (root / "images" / "train2017").mkdir(parents=True)
    (root / "labels" / "train2017").mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (64, 48)).save(root / "images" / "train2017" / f"{i}.png")
        (root / "labels" / "train2017" / f"{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train2017\nval: images/train2017\nnames:\n  0: cell\n"
    )
    back = read_yolo(root)
    assert sorted((im.path.name, im.split) for im in back.images) == [
        ("0.png", "train"),
        ("1.png", "train"),
    ]
    assert any("val" in w and "read once, as train" in w for w in back.warnings), back.warnings


def test_unreviewed_pool_images_are_never_in_train_or_val(tmp_path: Path, capsys) -> None:
    """``export --all --copy-images`` put the pool's unreviewed images under ``images/pool``,
    which data.yaml's train (and val, without a val split) names: Ultralytics trained on them
    as background, every object in them unlabelled (found by a newcomer). They go to
    ``images/unlabelled`` now, read back into the pool unannotated."""
    project = _project(tmp_path, ["train", "pool"])
    for i, name in enumerate(("u0.png", "u1.png")):
        Image.new("RGB", (64, 48), (9, 9 + i, 9)).save(project / name)
    assert main(["import", str(project), str(project / "u0.png"), "--format", "images"]) == 0
    assert main(["import", str(project), str(project / "u1.png"), "--format", "images"]) == 0
    out = tmp_path / "out"
    argv = ["export", str(project), str(out), "--format", "yolo", "--copy-images", "--all"]
    assert main(argv) == 0
    assert _ultralytics_images(out, "train") == {"im0.png", "im1.png"}
    assert _ultralytics_images(out, "val") == {"im0.png", "im1.png"}
    assert {p.name for p in (out / "images" / "unlabelled").iterdir()} == {"u0.png", "u1.png"}
    assert not (out / "labels" / "unlabelled").exists()
    back = {im.path.name: (im.split, im.annotated) for im in read_yolo(out).images}
    assert back["u0.png"] == back["u1.png"] == ("pool", False)
    assert back["im1.png"] == ("pool", True)
