"""Turn core box records into napari Shapes layer data, features and styling."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_al.core.boxes import xyxy_to_napari

#: Edge colour per box status: unreviewed predictions stand out, human labels are calm.
STATUS_COLORS: dict[str, str] = {
    "predicted": "#ffb000",
    "accepted": "#00c853",
    "corrected": "#2979ff",
    "drawn": "#00e5ff",
    "rejected": "#757575",
    "pseudo": "#ab47bc",
}

#: One row per box: (xyxy, class name, score or None, status, source).
BoxTuple = tuple[Sequence[float], str, "float | None", str, str]


def caption(label: str, score: float | None) -> str:
    """The text shown next to a box: class name, and the score for model boxes."""
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return label
    return f"{label} {score:.2f}"


def boxes_layer_kwargs(
    boxes: Sequence[BoxTuple], classes: Sequence[str], name: str = "boxes"
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Shapes data (napari rectangles) and layer keyword arguments for ``boxes``."""
    xyxy = np.array([b[0] for b in boxes], dtype=float).reshape(-1, 4)
    data = list(xyxy_to_napari(xyxy))
    labels = [b[1] for b in boxes]
    scores = [float("nan") if b[2] is None else float(b[2]) for b in boxes]
    statuses = [b[3] for b in boxes]
    features = {
        "label": labels,
        "score": scores,
        "status": statuses,
        "source": [b[4] for b in boxes],
        "caption": [caption(lab, s) for lab, s in zip(labels, scores, strict=True)],
    }
    default_label = classes[0] if classes else ""
    kwargs: dict[str, Any] = {
        "name": name,
        "shape_type": "rectangle",
        "features": features,
        "feature_defaults": {
            "label": default_label,
            "score": float("nan"),
            "status": "drawn",
            "source": "human",
            "caption": default_label,
        },
        "edge_color": [STATUS_COLORS.get(s, "#ffffff") for s in statuses] or "#00e5ff",
        "face_color": "transparent",
        "edge_width": 2,
        "text": {"string": "{caption}", "size": 8, "color": "white", "anchor": "upper_left"},
    }
    return data, kwargs
