"""What a newcomer hit on real data: each a one-line message that says what to do."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import tagged_image

from napari_al.cli import main
from napari_al.core.store import ProjectStore

TINY = ["--min-size", "128", "--max-size", "160", "--device", "cpu"]


@pytest.fixture
def test_only_project(tmp_path: Path, sample_dir: Path) -> Path:
    """The sample with its val images moved to test: no reviewed val split (as DeepPCB)."""
    proj = tmp_path / "proj"
    assert main(["init", str(proj)]) == 0
    assert main(["import", str(proj), str(sample_dir), "--format", "voc"]) == 0
    with ProjectStore.open(proj) as store:
        for row in store.images(split="val"):
            store.set_split(row.id, "test")
    return proj


def test_evaluate_names_the_splits_that_can_be_evaluated(test_only_project: Path, capsys):
    assert main(["evaluate", str(test_only_project), *TINY]) == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1
    assert "split 'val'" in err and "reviewed test" in err and "Traceback" not in err


def test_train_evaluate_without_val_saves_and_says_so(test_only_project: Path, capsys):
    assert main(["train", str(test_only_project), *TINY, "--steps", "1", "--evaluate"]) == 0
    out, err = capsys.readouterr()
    assert "saved model version 1" in out
    assert "no reviewed val images, so no evaluation" in err


def test_predict_without_a_trained_model_warns(tmp_path: Path, sample_dir: Path, capsys):
    pool = tmp_path / "pool"
    pool.mkdir()
    shutil.copy(sorted((sample_dir / "JPEGImages").glob("*.jpg"))[0], pool / "a.jpg")
    proj = tmp_path / "proj"
    assert main(["init", str(proj)]) == 0
    assert main(["import", str(proj), str(pool), "--format", "images"]) == 0
    assert main(["add-class", str(proj), "cell"]) == 0
    capsys.readouterr()
    assert main(["predict", str(proj), *TINY]) == 0
    assert "no trained model yet" in capsys.readouterr().err


def test_python_warnings_are_one_line(tmp_path: Path, capsys) -> None:
    """A multi-page TIFF read as its first page: 'warning: ...' without a source line."""
    folder = tmp_path / "tiffs"
    folder.mkdir()
    tifffile.imwrite(
        folder / "stack.tif", np.zeros((5, 32, 32), np.uint16), photometric="minisblack"
    )
    proj = tmp_path / "proj"
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["init", str(proj)]) == 0
        assert main(["import", str(proj), str(folder), "--format", "images"]) == 0
        assert main(["add-class", str(proj), "cell"]) == 0
        capsys.readouterr()
        assert main(["predict", str(proj), *TINY]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "page" in ln]
    assert lines and all(ln.startswith("warning: ") for ln in lines), err
    assert "return to_rgb_uint8" not in err


def _small_project(tmp_path: Path) -> Path:
    """Three images in the pool and class ``cell``: one human box and two predictions on
    the first image."""
    folder = tmp_path / "proj"
    for name in ("a.png", "b.png", "c.png"):
        tagged_image(folder / name)
    assert main(["init", str(folder)]) == 0
    assert main(["add-class", str(folder), "cell"]) == 0
    with ProjectStore.open(folder) as store:
        first = store.images()[0]
        cell = store.class_id("cell")
        store.draw_box(first.id, (1, 1, 20, 20), cell)
        preds = [((5, 5, 30, 30), cell, 0.9), ((30, 5, 60, 40), cell, 0.4)]
        store.replace_predictions(first.id, preds, model_version=None)
    return folder


def test_info_counts_human_boxes_and_predictions_apart(tmp_path: Path, capsys) -> None:
    proj = _small_project(tmp_path)
    capsys.readouterr()
    assert main(["info", str(proj)]) == 0
    out = capsys.readouterr().out
    assert "boxes: 1 human (accepted, corrected, drawn), 2 predictions still to review" in out
    assert "human boxes by class: cell 1\n" in out
    assert "image files: all 3 found and readable (checked: each file exists and its header " in out
    assert main(["info", str(proj), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["human_boxes"], info["predicted_boxes"], info["boxes"]) == (1, 2, 3)
    assert info["human_boxes_by_class"] == {"cell": 1}


def test_info_flags_missing_and_unreadable_image_files(tmp_path: Path, capsys) -> None:
    proj = _small_project(tmp_path)
    (proj / "b.png").unlink()
    (proj / "c.png").write_text("<html>404 Not Found</html>")
    capsys.readouterr()
    assert main(["info", str(proj)]) == 0
    out, err = capsys.readouterr()
    assert "image files:" not in out
    assert err.count("\n") == 1 and err.startswith("warning: image files: 1 missing (b.png); ")
    assert "1 unreadable (c.png: not a recognised image file" in err
    assert (
        "of 3 (checked: each file exists and its header reads, a TIFF's data lies inside the "
        "file; pixels not decoded)" in err
    )
    assert main(["info", str(proj), "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["image_files"]
    assert files["checked"] == 3 and files["missing"] == ["b.png"]
    assert [u["path"] for u in files["unreadable"]] == ["c.png"]


def test_add_class_refuses_an_empty_name_and_counts_in_words(tmp_path: Path, capsys) -> None:
    proj = tmp_path / "proj"
    assert main(["init", str(proj)]) == 0
    capsys.readouterr()
    assert main(["add-class", str(proj), "cell", " "]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "class name cannot be empty" in err
    with ProjectStore.open(proj) as store:
        assert store.classes() == []  # nothing added
    assert main(["add-class", str(proj), "cell"]) == 0
    assert capsys.readouterr().out.startswith("added 1 class; the project's classes: cell")
    assert main(["add-class", str(proj), "cell", "rbc", "wbc"]) == 0
    assert capsys.readouterr().out.startswith("added 2 classes (cell already there);")


def test_rank_prints_a_region_query_as_a_region(tmp_path: Path, capsys, monkeypatch) -> None:
    from napari_al import cli
    from napari_al.core import workflow
    from napari_al.core.selection import QueryItem

    proj = _small_project(tmp_path)
    image_id = 1
    items = [
        QueryItem(image_id, 0.9, unit="region", box=(0, 0, 32, 24), breakdown={"entropy": 0.9}),
        QueryItem(image_id, 0.5, unit="box", box=(5, 5, 30, 30), index=0, breakdown={"e": 0.5}),
    ]
    monkeypatch.setattr(cli, "_detector", lambda store, args: None)
    monkeypatch.setattr(workflow, "rank_pool", lambda *a, **k: items)
    capsys.readouterr()
    assert main(["rank", str(proj), "--unit", "region"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "a.png region [0, 0, 32, 24]" in out[0] and " box " not in out[0]
    assert "a.png box [5, 5, 30, 30]" in out[1]
