"""Checkpoints: atomic save, weights_only load, identical predictions after a round trip."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_al.core.engine import Detector, checkpoints
from napari_al.core.evaluation import EvalResult

torch.set_num_threads(2)

CLASSES = ["RBC", "WBC", "Platelets"]


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(100, 140), (90, 90)]]


def _perturbed(seed: int = 0, **kw) -> Detector:
    """A detector whose weights differ from any freshly built one (as after training)."""
    d = Detector(CLASSES, min_size=128, max_size=160, seed=seed, **kw)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in d.model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 1e-3)
    return d


def _assert_same_predictions(a: Detector, b: Detector) -> None:
    imgs = _images()
    for pa, pb in zip(a.predict(imgs), b.predict(imgs), strict=True):
        assert len(pa) > 0
        for field in ("boxes", "labels", "scores", "probs", "features", "embedding", "proposals"):
            assert np.array_equal(getattr(pa, field), getattr(pb, field)), field


def test_round_trip_gives_identical_predictions(tmp_path: Path) -> None:
    d = _perturbed()
    metrics = EvalResult(map50=0.5, map=0.25, per_class={"RBC": {"ap50": 0.5, "ap": math.nan}})
    meta = {"data_hash": "abc123", "metrics": metrics, "steps": np.int64(120), "lr": 0.005}
    path = checkpoints.save(d, tmp_path / "model.pt", meta)
    loaded, got = checkpoints.load(path)
    _assert_same_predictions(d, loaded)
    assert loaded.arch == d.arch and loaded.classes == CLASSES
    assert loaded.config.min_size == 128 and loaded.config.max_size == 160
    assert got["data_hash"] == "abc123" and got["steps"] == 120
    assert got["arch"] == d.arch and got["classes"] == CLASSES
    assert got["min_size"] == 128 and got["max_size"] == 160
    assert got["metrics"]["map50"] == 0.5 and math.isnan(got["metrics"]["per_class"]["RBC"]["ap"])
    assert checkpoints.metrics_equal(got["metrics"], metrics.as_dict())
    assert checkpoints.read_metadata(path)["data_hash"] == "abc123"


def test_file_is_plain_data_for_weights_only_load(tmp_path: Path) -> None:
    path = checkpoints.save(_perturbed(), tmp_path / "m.pt", {"note": "x"})
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == checkpoints.FORMAT
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())


def test_scratch_model_with_batchnorm_round_trips(tmp_path: Path) -> None:
    d = _perturbed(pretrained_backbone=False)
    assert d.config.frozen_bn is False
    loaded, _ = checkpoints.load(checkpoints.save(d, tmp_path / "s.pt"))
    assert loaded.config.frozen_bn is False
    _assert_same_predictions(d, loaded)


def test_trainable_layers_survive_the_round_trip(tmp_path: Path) -> None:
    d = _perturbed()
    loaded, _ = checkpoints.load(checkpoints.save(d, tmp_path / "t.pt"))
    flags = {n: p.requires_grad for n, p in d.model.named_parameters()}
    assert flags == {n: p.requires_grad for n, p in loaded.model.named_parameters()}
    assert not all(flags.values())  # early backbone stages stay frozen


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "ckpt" / "model.pt"
    first = _perturbed(0)
    checkpoints.save(first, path, {"round": 1})
    second = _perturbed(1)
    checkpoints.save(second, path, {"round": 2})
    assert os.listdir(path.parent) == ["model.pt"]
    loaded, meta = checkpoints.load(path)
    assert meta["round"] == 2
    _assert_same_predictions(second, loaded)
    # a refused save leaves the previous file untouched and no temporary file behind
    with pytest.raises(TypeError):
        checkpoints.save(first, path, {"bad": object()})
    assert os.listdir(path.parent) == ["model.pt"]
    assert checkpoints.read_metadata(path)["round"] == 2


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_checkpoint_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    """A checkpoint is written through a temporary file (0o600 from mkstemp): it gets the mode
    any file the user creates gets, so a shared project's models are readable by the group."""
    old = os.umask(umask)
    try:
        path = checkpoints.save(_perturbed(0), tmp_path / "model.pt")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_metadata_must_be_plain() -> None:
    assert checkpoints.plain({"a": (1, 2.0), "p": Path("/x"), "n": np.float32(0.5)}) == {
        "a": [1, 2.0],
        "p": "/x",
        "n": 0.5,
    }
    with pytest.raises(TypeError):
        checkpoints.plain({1: "non-string key"})
    with pytest.raises(TypeError):
        checkpoints.plain({"f": lambda: 0})


def test_load_into_checks_arch_and_classes(tmp_path: Path) -> None:
    d = _perturbed()
    path = checkpoints.save(d, tmp_path / "m.pt")
    other = Detector(CLASSES, min_size=128, max_size=160, seed=3)
    checkpoints.load_into(other, path)
    _assert_same_predictions(d, other)
    with pytest.raises(ValueError):
        checkpoints.load_into(Detector(["x"], min_size=128, max_size=160), path)
    bogus = tmp_path / "bogus.pt"
    torch.save({"hello": torch.zeros(1)}, bogus)
    with pytest.raises(ValueError):
        checkpoints.load(bogus)


def test_model_version_is_declared_copied_and_not_checkpointed(tmp_path: Path) -> None:
    """``model_version`` is a declared attribute (0 = not trained in a project yet), kept by
    deepcopy; the store owns versions, so a checkpoint neither stores nor restores it."""
    import copy

    d = Detector(CLASSES, min_size=128, max_size=160)
    assert d.model_version == 0
    d.model_version = 7
    assert copy.deepcopy(d).model_version == 7
    path = checkpoints.save(d, tmp_path / "m.pt")
    loaded, meta = checkpoints.load(path)
    assert loaded.model_version == 0
    assert "model_version" not in meta
    checkpoints.load_into(d, path)
    assert d.model_version == 7
