"""What a newcomer hit on real data: each a one-line message that says what to do."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

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
