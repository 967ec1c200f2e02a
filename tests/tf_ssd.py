"""A TensorFlow-free reference for the ``coco-mnv2`` conversion (tests only).

:class:`FrozenGraph` evaluates the nodes of TF's frozen ``ssd_mobilenet_v2_coco_2018_03_29``
graph itself, op by op (Conv2D, DepthwiseConv2dNative, the unfused BatchNorm arithmetic,
Relu6, residual Adds, BiasAdd), in torch (NHWC, float32), following the graph's own edges: so
the converted torchvision body can be compared with what the graph computes, and the graph's
SSD extra layers and box predictors can run on top of the converted body.

:func:`ssd_detections` adds what the graph computes with ops we do not evaluate: the anchors
of TF's ``ssd_anchor_generator`` (6 layers, scales 0.2-0.95, aspect ratios 1, 2, 1/2, 3, 1/3
plus the interpolated scale; 3 anchors in the lowest layer) and the Faster R-CNN box coder
(scale factors 10, 10, 5, 5), with sigmoid class scores (91 columns, 0 = background, 1 =
person), as configured in the TF Object Detection API's ``ssd_mobilenet_v2_coco.config``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

BODY = "FeatureExtractor/MobilenetV2/"
#: The two body outputs the SSD reads: block 14's expansion (stride 16) and the last conv.
EXPANSION_14 = BODY + "expanded_conv_13/expansion_output"
BODY_OUT = BODY + "Conv_1/Relu6"
INPUT = "Preprocessor/sub"  # the image scaled to [-1, 1], NHWC
NUM_CLASSES = 91  # COCO ids 1-90 and background 0
PERSON = 1


def tf_same_pad(x: Tensor, k: tuple[int, int], stride: int) -> Tensor:
    """NCHW ``x`` padded as TF's "SAME" does: ceil(in / stride) outputs, the odd pixel of the
    padding at the bottom/right."""
    pads: list[int] = []
    for size, kk in zip(reversed(x.shape[-2:]), reversed(k), strict=True):
        total = max((math.ceil(size / stride) - 1) * stride + kk - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class FrozenGraph:
    """The nodes and constants of a frozen TF graph, evaluated without TensorFlow."""

    def __init__(self, path: str | Path) -> None:
        from tensorboard.compat.proto import graph_pb2
        from tensorboard.util import tensor_util

        graph = graph_pb2.GraphDef()
        graph.ParseFromString(Path(path).read_bytes())
        self.nodes = {n.name: n for n in graph.node}
        self.consts = {
            n.name: torch.from_numpy(np.array(tensor_util.make_ndarray(n.attr["value"].tensor)))
            for n in graph.node
            if n.op == "Const" and n.name.startswith((BODY, "BoxPredictor_"))
        }

    def _inputs(self, name: str) -> list[str]:
        return [i.split(":")[0] for i in self.nodes[name].input if not i.startswith("^")]

    def evaluate(self, outputs: list[str], feeds: dict[str, Tensor]) -> dict[str, Tensor]:
        """The values of ``outputs`` given ``feeds`` (NHWC tensors by node name)."""
        values: dict[str, Tensor] = dict(feeds)
        stack = list(outputs)
        while stack:  # iterative depth-first: the body is hundreds of nodes deep
            name = stack[-1]
            if name in values:
                stack.pop()
                continue
            missing = [i for i in self._inputs(name) if i not in values]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            values[name] = self._op(name, [values[i] for i in self._inputs(name)])
        return {n: values[n] for n in outputs}

    def _op(self, name: str, xs: list[Tensor]) -> Tensor:
        node = self.nodes[name]
        op = node.op
        if op == "Const":
            return self.consts[name].float()
        if op == "Identity":
            return xs[0]
        if op in ("Add", "AddV2", "BiasAdd"):
            return xs[0] + xs[1]
        if op == "Mul":
            return xs[0] * xs[1]
        if op == "Sub":
            return xs[0] - xs[1]
        if op == "Rsqrt":
            return torch.rsqrt(xs[0])
        if op == "Relu6":
            return torch.clamp(xs[0], 0.0, 6.0)
        if op in ("Conv2D", "DepthwiseConv2dNative"):
            assert node.attr["padding"].s == b"SAME", name
            stride = int(node.attr["strides"].list.i[1])
            x, w = xs[0].permute(0, 3, 1, 2), xs[1]
            if op == "Conv2D":  # [kh, kw, in, out] -> [out, in, kh, kw]
                w, groups = w.permute(3, 2, 0, 1), 1
            else:  # [kh, kw, in, 1] -> [in, 1, kh, kw]
                w, groups = w.permute(2, 3, 0, 1), int(x.shape[1])
            x = tf_same_pad(x, tuple(w.shape[-2:]), stride)
            return F.conv2d(x, w.contiguous(), None, stride, 0, 1, groups).permute(0, 2, 3, 1)
        raise NotImplementedError(f"{name}: op {op}")


def ssd_anchors(shapes: list[tuple[int, int]]) -> Tensor:
    """(A, 4) anchors (y_center, x_center, height, width), normalised, in the order of the box
    predictors' outputs (layer, row, column, anchor) - TF's ``create_ssd_anchors``."""
    n, min_scale, max_scale = len(shapes), 0.2, 0.95
    scales = [min_scale + (max_scale - min_scale) * i / (n - 1) for i in range(n)] + [1.0]
    out = []
    for layer, (h, w) in enumerate(shapes):
        if layer == 0:
            specs = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            specs = [(scales[layer], a) for a in (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)]
            specs.append((math.sqrt(scales[layer] * scales[layer + 1]), 1.0))
        scale = np.array([s for s, _ in specs])
        root = np.sqrt([a for _, a in specs])
        yy, xx, aa = np.meshgrid(
            (np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, np.arange(len(specs)), indexing="ij"
        )
        hs, ws = (scale / root)[aa.ravel()], (scale * root)[aa.ravel()]
        out.append(np.stack([yy.ravel(), xx.ravel(), hs, ws], axis=1))
    return torch.from_numpy(np.concatenate(out)).float()


def ssd_detections(graph: FrozenGraph, body_outputs: dict[str, Tensor]) -> dict[str, Any]:
    """The SSD's decoded boxes (A, 4) xyxy normalised to [0, 1] and sigmoid scores (A, 91),
    computed by the graph's extra layers and box predictors on ``body_outputs`` (NHWC
    :data:`EXPANSION_14` and :data:`BODY_OUT`)."""
    names = [
        f"BoxPredictor_{i}/{head}/BiasAdd"
        for i in range(6)
        for head in ("BoxEncodingPredictor", "ClassPredictor")
    ]
    out = graph.evaluate(names, body_outputs)
    codes, logits, shapes = [], [], []
    for i in range(6):
        box = out[f"BoxPredictor_{i}/BoxEncodingPredictor/BiasAdd"]
        shapes.append((int(box.shape[1]), int(box.shape[2])))
        codes.append(box.reshape(-1, 4))
        logits.append(out[f"BoxPredictor_{i}/ClassPredictor/BiasAdd"].reshape(-1, NUM_CLASSES))
    anchors = ssd_anchors(shapes)
    ty, tx, th, tw = (torch.cat(codes) / torch.tensor([10.0, 10.0, 5.0, 5.0])).unbind(1)
    yc, xc = ty * anchors[:, 2] + anchors[:, 0], tx * anchors[:, 3] + anchors[:, 1]
    h, w = th.exp() * anchors[:, 2], tw.exp() * anchors[:, 3]
    boxes = torch.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], dim=1)
    return {"boxes": boxes, "scores": torch.sigmoid(torch.cat(logits)), "shapes": shapes}
