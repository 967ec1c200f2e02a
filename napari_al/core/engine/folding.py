"""Batch norm folded into the convolution before it, for inference.

In inference a batch norm with fixed statistics (torchvision's ``FrozenBatchNorm2d``, which the
pretrained backbones use, or ``BatchNorm2d`` in eval mode) is an affine map per channel, so it
can be folded into the weights and bias of the convolution that feeds it (Jacob et al. 2018,
"Quantization and training of neural networks for efficient integer-arithmetic-only inference",
section 3.2; the weights come from torch's own ``torch.nn.utils.fusion.fuse_conv_bn_weights``).
The network then computes the same function (to float rounding, about 1e-6 relative) without
the norm's two full-size temporaries per layer (``x * scale`` and ``+ shift``): on a 960 x 1,280
px window of the default ``fasterrcnn_mobilenet_v2_fpn`` these are 112 MB each at the first
layers, and the passes of a 4,800 x 6,400 px image took about 20 % less time and 60-210 MB less
peak memory on a 2-core CPU (``docs/large-images.md``, run 18).

:class:`FoldedBackbone` keeps one folded copy of a detector's backbone and builds it again when
any of the backbone's weights or buffers changed (training, loading weights, moving devices), so
training always sees the unfolded model and inference always the current weights.

Which norms are folded: a norm whose input is exactly the output of a ``Conv2d`` and of nothing
else, which holds for the module just before it in an ``nn.Sequential`` (torchvision's
``Conv2dNormActivation``, ResNet's ``downsample``) and in torchvision's
``IntermediateLayerGetter`` (a backbone body running its children in order: ResNet's
``conv1, bn1``), and for ``convK, bnK`` in torchvision's ResNet blocks. Any other norm is left as
it is.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.ops.misc import FrozenBatchNorm2d

_RUN_IN_ORDER = (nn.Sequential, IntermediateLayerGetter)
_NAMED_PAIRS = (BasicBlock, Bottleneck, ResNet)


def _foldable_norm(module: nn.Module) -> bool:
    if isinstance(module, FrozenBatchNorm2d):
        return True
    return isinstance(module, nn.BatchNorm2d) and module.running_mean is not None


def conv_norm_pairs(module: nn.Module) -> Iterator[tuple[nn.Module, str, nn.Conv2d, nn.Module]]:
    """``(parent, norm's name in parent, conv, norm)`` for every foldable norm in ``module``
    whose input is exactly a convolution's output (the rule in the module doc)."""
    for parent in module.modules():
        names = list(parent._modules)
        for i, name in enumerate(names):
            norm = parent._modules[name]
            if norm is None or not _foldable_norm(norm):
                continue
            conv: nn.Module | None = None
            if isinstance(parent, _RUN_IN_ORDER) and i > 0:
                conv = parent._modules[names[i - 1]]
            elif isinstance(parent, _NAMED_PAIRS) and name.startswith("bn"):
                conv = parent._modules.get("conv" + name[2:])
            if isinstance(conv, nn.Conv2d) and conv.out_channels == norm.running_mean.numel():
                yield parent, name, conv, norm


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``module`` for inference, each norm of :func:`conv_norm_pairs` folded into its
    convolution and replaced by ``nn.Identity``; ``module`` is not changed. Returns the copy (in
    eval mode, no gradients) and how many norms were folded."""
    folded = copy.deepcopy(module).eval()
    pairs = list(conv_norm_pairs(folded))
    for parent, name, conv, norm in pairs:
        weight, bias = fuse_conv_bn_weights(
            conv.weight,
            conv.bias,
            norm.running_mean,
            norm.running_var,
            norm.eps,
            norm.weight,
            norm.bias,
        )
        conv.weight, conv.bias = weight, bias
        parent._modules[name] = nn.Identity()
    folded.requires_grad_(False)
    return folded, len(pairs)


def _version(t: Tensor) -> int:
    # inference tensors (made under torch.inference_mode) keep no version counter
    return -1 if t.is_inference() else t._version


def _state_key(module: nn.Module) -> tuple:
    """Changes whenever a weight or buffer of ``module`` is replaced, moved or written in place
    (an optimiser's step, ``load_state_dict``, ``.to(device)``): tensors' storage and version."""
    tensors: list[Tensor] = [*module.parameters(), *module.buffers()]
    return (id(module), *((t.data_ptr(), _version(t), t.dtype) for t in tensors))


class FoldedBackbone:
    """The folded copy of a backbone (:func:`fold_batchnorm`), built on first use and again
    after the backbone's weights changed. Not thread-safe against training the same model while
    predicting with it (neither is the model itself)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._folded: nn.Module | None = None
        self.folded_norms = 0

    def __call__(self, backbone: nn.Module) -> nn.Module:
        """The folded copy of ``backbone`` as its weights are now."""
        key = _state_key(backbone)
        if self._folded is None or key != self._key:
            self._folded = None  # the old copy's memory goes before the new one is made
            with torch.inference_mode(False):  # plain tensors, usable in and out of it
                self._folded, self.folded_norms = fold_batchnorm(backbone)
            self._key = key
        return self._folded

    def __deepcopy__(self, memo: dict) -> FoldedBackbone:
        return FoldedBackbone()  # a copied detector folds its own backbone when it predicts

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def clear(self) -> None:
        """Drop the copy (its memory), e.g. before training."""
        self._key, self._folded, self.folded_norms = None, None, 0
