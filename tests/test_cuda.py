"""The CUDA path: training with partial labels, rich predictions, scoring views, checkpoints.

The rest of the suite runs on the CPU (``tests/conftest.py``); these tests run only where
CUDA is present (a GPU workstation), and are skipped elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_al.core.engine import Detector, TrainingExample, checkpoints, select_device, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

CLASSES = ["RBC", "WBC", "Platelets"]


def _examples(n: int = 4, size: int = 160) -> list[TrainingExample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        xy = rng.uniform(0, size * 0.6, (5, 2))
        boxes = np.c_[xy, xy + rng.uniform(12, 40, (5, 2))].astype(np.float32)
        out.append(
            TrainingExample(
                image=img,
                boxes=boxes,
                labels=rng.integers(0, 3, 5),
                noisy=np.array([False, False, True, True, False]),
                background_boxes=np.array([[100, 100, 140, 140]], np.float32),
                ignore_regions=np.array([[0, 120, 40, 160]], np.float32),
                complete=i % 2 == 0,
            )
        )
    return out


@pytest.fixture(scope="module")
def trained() -> Detector:
    d = Detector(CLASSES, min_size=160, max_size=160, device="cuda", seed=0)
    res = train(d, _examples(), steps=4, batch_size=2, lambda_d=0.5)
    assert res.stopped_reason == "done" and res.steps == 4
    assert all(np.isfinite(res.losses))
    return d


def test_cuda_is_the_default_device_unless_pinned(monkeypatch) -> None:
    monkeypatch.delenv("NAPARI_AL_DEVICE", raising=False)
    assert select_device(None).type == "cuda"
    monkeypatch.setenv("NAPARI_AL_DEVICE", "cpu")
    assert select_device(None).type == "cpu"


def test_training_on_cuda_keeps_weights_on_the_gpu(trained: Detector) -> None:
    assert trained.device.type == "cuda"
    assert all(p.is_cuda for p in trained.model.parameters())


def test_rich_predictions_from_cuda_are_numpy(trained: Detector) -> None:
    imgs = [ex.image for ex in _examples(2)]
    for p in trained.predict(imgs, score_threshold=0.0):
        assert isinstance(p.boxes, np.ndarray) and p.boxes.dtype == np.float32
        assert p.probs.shape == (len(p), len(CLASSES) + 1)
        if len(p):
            np.testing.assert_allclose(p.probs.sum(1), 1.0, atol=1e-3)
            np.testing.assert_allclose(
                p.probs[np.arange(len(p)), p.labels + 1], p.scores, atol=1e-3
            )
        assert p.embedding.shape == (trained.embedding_dim,)


def test_scoring_views_on_cuda(trained: Detector) -> None:
    imgs = [ex.image for ex in _examples(2)]
    views = trained.scoring_views(imgs, mc_passes=4, flip=True, candidates=True, seed=1)
    for v in views:
        n = len(v.base)
        assert v.mc_probs is not None and v.mc_probs.shape == (4, n, len(CLASSES) + 1)
        assert np.isfinite(v.mc_probs).all()
        assert v.flipped is not None and v.candidates is not None


def test_cuda_checkpoint_loads_on_the_cpu(trained: Detector, tmp_path: Path) -> None:
    path = checkpoints.save(trained, tmp_path / "m.pt", metadata={"steps": 4})
    cpu, meta = checkpoints.load(path, device="cpu", amp=False)
    assert cpu.device.type == "cpu" and meta["steps"] == 4
    img = [_examples(1)[0].image]
    a = trained.predict(img, score_threshold=0.3)[0]
    b = cpu.predict(img, score_threshold=0.3)[0]
    # not bitwise (autocast and kernels differ), but the same detector
    if len(a) and len(b):
        np.testing.assert_allclose(a.embedding, b.embedding, rtol=0.05, atol=0.05)
