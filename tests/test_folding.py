"""Batch norm folded into convolutions for inference (napari_al.core.engine.folding)."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from napari_al.core.data import ARCHS
from napari_al.core.engine import Detector
from napari_al.core.engine.build import build_model
from napari_al.core.engine.folding import FoldedBackbone, conv_norm_pairs, fold_batchnorm

torch.set_num_threads(2)

NORMS = (FrozenBatchNorm2d, nn.BatchNorm2d)


def _randomise_norms(module: nn.Module, seed: int = 0) -> int:
    """Give every norm statistics far from the identity (a fresh norm folds to nothing)."""
    g = torch.Generator().manual_seed(seed)
    n = 0
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, NORMS) and m.running_mean is not None:
                c = m.running_mean.numel()
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                n += 1
    return n


def _norms(module: nn.Module) -> int:
    return sum(isinstance(m, NORMS) for m in module.modules())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("frozen_bn", [True, False])
def test_every_backbone_norm_folds_and_the_features_stay(arch: str, frozen_bn: bool) -> None:
    model, _ = build_model(arch, 2, pretrained_backbone=False, frozen_bn=frozen_bn, seed=0)
    backbone = model.backbone.eval()
    norms = _randomise_norms(backbone)
    assert norms > 0
    folded, count = fold_batchnorm(backbone)
    assert count == norms, f"{arch}: {norms - count} norms not folded"
    assert _norms(folded) == 0 and _norms(backbone) == norms  # the original is untouched
    assert not any(p.requires_grad for p in folded.parameters())
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want, got = backbone(x), folded(x)
    if isinstance(want, torch.Tensor):
        want, got = {"0": want}, {"0": got}
    assert list(want) == list(got)
    for key in want:
        scale = want[key].abs().max().item()
        assert torch.allclose(got[key], want[key], atol=1e-4 * scale, rtol=1e-4), (arch, key)


def test_a_norm_not_fed_by_a_convolution_is_left_alone() -> None:
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), FrozenBatchNorm2d(4))
    pre = nn.Sequential(FrozenBatchNorm2d(3), nn.Conv2d(3, 4, 3), FrozenBatchNorm2d(4))
    widths = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(5, track_running_stats=False))
    for module in (seq, pre, widths):
        _randomise_norms(module)
    assert list(conv_norm_pairs(seq)) == []
    assert [name for _, name, _, _ in conv_norm_pairs(pre)] == ["2"]
    assert list(conv_norm_pairs(widths)) == []
    folded, count = fold_batchnorm(pre)
    assert count == 1 and isinstance(folded[0], FrozenBatchNorm2d)
    x = torch.rand(2, 3, 9, 9)
    with torch.no_grad():
        assert torch.allclose(folded(x), pre(x), atol=1e-5)


def test_the_copy_follows_the_weights() -> None:
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), FrozenBatchNorm2d(4)).eval()
    _randomise_norms(backbone)
    cache = FoldedBackbone()
    x = torch.rand(1, 3, 8, 8)
    first = cache(backbone)
    assert cache(backbone) is first  # nothing changed: the same copy
    with torch.no_grad():
        backbone[0].weight.mul_(2.0)  # an optimiser's step writes in place
    second = cache(backbone)
    assert second is not first
    with torch.no_grad():
        assert torch.allclose(second(x), backbone(x), atol=1e-5)
    backbone.load_state_dict({k: v * 0.5 for k, v in backbone.state_dict().items()})
    with torch.no_grad():
        assert torch.allclose(cache(backbone)(x), backbone(x), atol=1e-5)
    cache.clear()
    assert cache.folded_norms == 0
    assert copy.deepcopy(cache)._folded is None
    assert pickle.loads(pickle.dumps(cache))._folded is None


def test_detector_predictions_follow_training_and_match_the_unfolded_model() -> None:
    det = Detector(["cell", "debris"], min_size=96, max_size=128, seed=0)
    _randomise_norms(det.model.backbone)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    tensors = det.image_tensors([image])
    folded = det.infer_raw(tensors, 0.0, 50)[0]
    assert det._inference_backbone.folded_norms == _norms(det.model.backbone) > 0
    assert _norms(det.inference_backbone()) == 0
    # the same pass through the unfolded backbone
    det._inference_backbone = lambda backbone: backbone  # type: ignore[assignment]
    plain = det.infer_raw(tensors, 0.0, 50)[0]
    assert torch.allclose(folded.embedding, plain.embedding, atol=1e-4)
    assert torch.allclose(folded.scores, plain.scores, atol=1e-4)
    det._inference_backbone = FoldedBackbone()
    # a training step changes the backbone's weights: inference sees the new ones
    before = det.infer_raw(tensors, 0.0, 50)[0].embedding.clone()
    with torch.no_grad():
        for p in det.model.backbone.parameters():
            if p.requires_grad:
                p.add_(0.05)
    after = det.infer_raw(tensors, 0.0, 50)[0].embedding
    assert not torch.allclose(before, after)
    det._inference_backbone = lambda backbone: backbone  # type: ignore[assignment]
    assert torch.allclose(det.infer_raw(tensors, 0.0, 50)[0].embedding, after, atol=1e-4)
