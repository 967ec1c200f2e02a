"""Turn core box records into napari Shapes layer data, features and styling.

The ``boxes`` layer holds the current image's boxes, one rectangle each, with the features
``box_id`` (the store's id; -1 for a shape not yet in the store), ``label`` (class name),
``score`` (NaN for human boxes), ``status``, ``source`` and ``caption`` (the text shown).
Edge colours are explicit per shape, from :data:`STATUS_COLORS`; rejected boxes are dimmed.
"""

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
    "rejected": "#9e9e9e",
    "pseudo": "#ab47bc",
}

#: Edge opacity per status (rejected boxes are shown dimmed; they can also be hidden).
STATUS_ALPHA: dict[str, float] = {"rejected": 0.45}

#: Feature columns of the boxes layer, in order.
FEATURE_COLUMNS = ("box_id", "label", "score", "status", "source", "caption")

#: Highlight kinds (the ``kind`` feature of the highlight layer) and their edge colours.
HIGHLIGHT_COLORS: dict[str, str] = {
    "region": "#ff4081",  # a ranked region: where annotation effort should go
    "missed": "#e040fb",  # a possibly missed object suggested by low-threshold candidates
    "query": "#ffea00",  # the queried box or image item
    "reviewed": "#00e676",  # a region marked complete (Shift+C): every object in it labelled
}


def boxes_layer_class() -> type:
    """:class:`BoxesLayer`, napari's Shapes layer with linear-time text placement.

    Built on first use so this module stays importable without napari.
    """
    global _BOXES_LAYER
    if _BOXES_LAYER is None:
        from napari.layers import Shapes

        class BoxesLayer(Shapes):
            """A Shapes layer whose text positions cost O(N), not O(N²).

            napari 0.9's ``Shapes._view_text_coords`` rebuilds the list of every shape's
            vertices once per shape in view (``self._data_view.data[i] for i in ...``), which
            costs ~30 ms at 200 boxes on every text refresh: each image switch, each key press
            and each mouse move while dragging. This builds the list once. Everything else,
            including the layer type seen by napari (``shapes``), is napari's own.
            """

            @property
            def _type_string(self) -> str:
                return "shapes"

            @property
            def _view_text_coords(self):  # type: ignore[no-untyped-def]
                try:
                    displayed = self._slice_input.displayed
                    data = self._data_view.data
                    coords = [data[i][:, displayed] for i in self._view_indices]
                    return self.text.compute_text_coords(
                        coords, self._slice_input.ndisplay, self._slice_input.order
                    )
                except AttributeError:  # napari internals moved: use napari's own version
                    return super()._view_text_coords

        _BOXES_LAYER = BoxesLayer
    return _BOXES_LAYER


_BOXES_LAYER: type | None = None

#: One row per box: (xyxy, class name, score or None, status, source).
BoxTuple = tuple[Sequence[float], str, "float | None", str, str]


def _hex_rgba(color: str, alpha: float = 1.0) -> np.ndarray:
    c = color.lstrip("#")
    return np.array([int(c[i : i + 2], 16) / 255.0 for i in (0, 2, 4)] + [alpha], np.float32)


#: RGBA edge colour per status.
STATUS_RGBA: dict[str, np.ndarray] = {
    s: _hex_rgba(c, STATUS_ALPHA.get(s, 1.0)) for s, c in STATUS_COLORS.items()
}
_FALLBACK_RGBA = np.array([1.0, 1.0, 1.0, 1.0], np.float32)


def status_rgba(status: str) -> np.ndarray:
    """The RGBA edge colour of a box with this status."""
    return STATUS_RGBA.get(status, _FALLBACK_RGBA)


def highlight_rgba(kind: str) -> np.ndarray:
    """The RGBA edge colour of a highlight of this kind."""
    return _hex_rgba(HIGHLIGHT_COLORS.get(kind, "#ffffff"))


def edge_colors(statuses: Sequence[str]) -> np.ndarray:
    """``(N, 4)`` RGBA edge colours for the statuses."""
    if len(statuses) == 0:
        return np.zeros((0, 4), np.float32)
    return np.stack([status_rgba(s) for s in statuses])


def caption(label: str, score: float | None) -> str:
    """The text shown next to a box: class name, and the score for model boxes."""
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return label
    return f"{label} {score:.2f}"


def box_features(
    box_ids: Sequence[int],
    labels: Sequence[str],
    scores: Sequence[float | None],
    statuses: Sequence[str],
    sources: Sequence[str],
) -> dict[str, list[Any]]:
    """The feature columns (as lists) of the boxes layer for these boxes."""
    sc = [float("nan") if s is None else float(s) for s in scores]
    return {
        "box_id": [int(i) for i in box_ids],
        "label": list(labels),
        "score": sc,
        "status": list(statuses),
        "source": list(sources),
        "caption": [caption(lab, s) for lab, s in zip(labels, sc, strict=True)],
    }


#: pandas dtype of each feature column (fixed, so empty layers accept string defaults).
FEATURE_DTYPES: dict[str, str] = {
    "box_id": "int64",
    "label": "object",
    "score": "float64",
    "status": "object",
    "source": "object",
    "caption": "object",
}


def features_frame(columns: dict[str, list[Any]] | None = None) -> Any:
    """The boxes layer's features as a DataFrame with fixed dtypes (empty when None)."""
    import pandas as pd

    columns = columns or {k: [] for k in FEATURE_DTYPES}
    return pd.DataFrame(
        {k: pd.Series(columns[k], dtype=dtype) for k, dtype in FEATURE_DTYPES.items()}
    )


def feature_defaults(label: str) -> dict[str, Any]:
    """Features a box the person draws gets before it reaches the store."""
    return {
        "box_id": -1,
        "label": label,
        "score": float("nan"),
        "status": "drawn",
        "source": "human",
        "caption": label,
    }


#: Text style of the boxes layer: class and score above each box's top-left corner.
BOX_TEXT: dict[str, Any] = {
    "string": "{caption}",
    "size": 8,
    "color": "white",
    "anchor": "upper_left",
}


def boxes_layer_kwargs(
    boxes: Sequence[BoxTuple], classes: Sequence[str], name: str = "boxes"
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Shapes data (napari rectangles) and layer keyword arguments for ``boxes``.

    Used by the sample-data contribution (boxes that are not in a store get ``box_id`` -1).
    """
    xyxy = np.array([b[0] for b in boxes], dtype=float).reshape(-1, 4)
    data = list(xyxy_to_napari(xyxy))
    statuses = [b[3] for b in boxes]
    features = box_features(
        [-1] * len(boxes),
        [b[1] for b in boxes],
        [b[2] for b in boxes],
        statuses,
        [b[4] for b in boxes],
    )
    default_label = classes[0] if classes else ""
    kwargs: dict[str, Any] = {
        "name": name,
        "shape_type": "rectangle",
        "features": features_frame(features),
        "feature_defaults": feature_defaults(default_label),
        "edge_color": edge_colors(statuses) if statuses else STATUS_COLORS["drawn"],
        "face_color": "transparent",
        "edge_width": 2,
        "text": dict(BOX_TEXT),
    }
    return data, kwargs
