"""Keep the viewer's layers in step with the image being annotated.

Three layers, created once and reused for every image (switching images replaces their
contents in one go, which keeps the switch fast and keeps the user's layer settings):

- ``image``: the pixels; an image read lazily (a large tiled TIFF,
  :func:`~napari_al.core.lazy_images.reads_lazily`) is a multiscale layer over its pyramid
  (:meth:`~napari_al.core.lazy_images.LazyImage.display_levels`), read window by window as
  napari draws it, never whole; every other image is read whole as before;
- ``boxes``: one Shapes layer with the image's boxes (features ``box_id``, ``label``,
  ``score``, ``status``, ``source``, ``caption``; edge colour by status; see
  :mod:`napari_al.gui.layers`);
- ``highlights``: ranked regions, possibly missed objects and the queried item, in a distinct
  style; not editable in spirit (edits to it are ignored). The box the keys act on is shown
  selected in the boxes layer.

Changes the program makes to the boxes layer happen inside :meth:`ImageView.programmatic`, so
the layer-event handlers can tell them from the person's edits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core.boxes import camera_fit, napari_to_xyxy, xyxy_to_napari
from napari_al.core.data import REGION_SOURCE
from napari_al.core.lazy_images import LazyImage, open_display
from napari_al.gui.layers import (
    BOX_TEXT,
    box_features,
    boxes_layer_class,
    caption,
    edge_colors,
    feature_defaults,
    features_frame,
    highlight_rgba,
    status_rgba,
)

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Shapes

    from napari_al.core.store import BoxRow, ImageRow, ProjectStore

IMAGE_LAYER = "image"
BOXES_LAYER = "boxes"
HIGHLIGHT_LAYER = "highlights"

#: Coordinates closer than this (pixels) count as unchanged (napari stores float32).
GEOMETRY_TOLERANCE = 1e-3

Highlight = tuple[Sequence[float], str, str]  # (xyxy, kind, text)


def camera(viewer: napari.viewer.Viewer) -> Any:
    """The viewer's camera model (``viewer.scene.camera`` since napari 0.9, where
    ``viewer.camera`` is deprecated; ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    cam = getattr(scene, "camera", None)
    return cam if cam is not None else viewer.camera


def canvas_size(viewer: napari.viewer.Viewer) -> tuple[int, int]:
    """The canvas size in screen pixels, ``(height, width)``: ``viewer.canvas.size`` (napari
    0.9, kept in step with the Qt canvas), ``viewer._canvas_size`` on older napari."""
    size = getattr(getattr(viewer, "canvas", None), "size", None)
    if size is None:
        size = viewer._canvas_size
    return int(size[0]), int(size[1])


def visible_rect(viewer: napari.viewer.Viewer) -> tuple[float, float, float, float]:
    """The part of the scene the canvas shows, ``(x1, y1, x2, y2)`` in data pixels (2D)."""
    cam = camera(viewer)
    h, w = canvas_size(viewer)
    cy, cx = (float(v) for v in tuple(cam.center)[-2:])
    half_h, half_w = h / 2 / cam.zoom, w / 2 / cam.zoom
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


class ImageView:
    """Owns the ``image``, ``boxes`` and ``highlights`` layers of one viewer."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.image_id: int | None = None
        self.image_row: ImageRow | None = None
        self.class_names: dict[int, str] = {}
        self.show_rejected = True
        #: Whether a ``predicted`` box is drawn (human boxes always are); the controller sets
        #: the workflow's rule (``workflow.verify_rule(store).shows``).
        self.shows_prediction: Callable[[BoxRow], bool] = lambda row: True
        self.show_highlights = True
        self.current_class = ""
        self._programmatic = 0
        self._boxes_layer: Shapes | None = None
        self._highlight_layer: Shapes | None = None
        self._image_layer: Image | None = None
        #: The large image the image layer reads from (None: the layer holds its pixels).
        self._lazy: LazyImage | None = None
        self._regions: list[Highlight] = []
        self._missed: list[Highlight] = []
        self._query: list[Highlight] = []
        #: Called with the new boxes layer whenever one is created (to connect its events).
        self.on_boxes_layer: Callable[[Shapes], None] | None = None
        #: Seconds the last :meth:`show` took, by part (read, image, boxes, total).
        self.last_timing: dict[str, float] = {}
        #: The camera (center, zoom) of the last :meth:`fit`, while nobody moved it since.
        self._fitted: tuple[tuple[float, ...], float] | None = None
        size_event = getattr(getattr(getattr(viewer, "canvas", None), "events", None), "size", None)
        self._size_event = size_event
        if size_event is not None:  # napari 0.9: the canvas model follows the Qt canvas
            size_event.connect(self._on_canvas_resized)

    # -- programmatic changes ------------------------------------------------------------

    @contextmanager
    def programmatic(self) -> Iterator[None]:
        """Changes made inside are the program's, not the person's (events are ignored)."""
        self._programmatic += 1
        try:
            yield
        finally:
            self._programmatic -= 1

    @property
    def busy(self) -> bool:
        """True while the program itself changes the boxes layer."""
        return self._programmatic > 0

    # -- layers ---------------------------------------------------------------------------

    def _alive(self, layer: Any) -> bool:
        return layer is not None and layer in self.viewer.layers

    @property
    def image_layer(self) -> Image | None:
        return self._image_layer if self._alive(self._image_layer) else None

    @property
    def boxes_layer(self) -> Shapes:
        """The boxes layer (re-created if the person deleted it)."""
        if not self._alive(self._boxes_layer):
            with self.programmatic():
                layer = boxes_layer_class()(
                    name=BOXES_LAYER,
                    ndim=2,
                    shape_type="rectangle",
                    edge_width=2,
                    edge_color=status_rgba("drawn"),
                    face_color="transparent",
                    features=features_frame(),
                    feature_defaults=feature_defaults(self.current_class),
                    text=dict(BOX_TEXT),
                )
                self.viewer.add_layer(layer)
            layer.current_edge_width = 2
            layer.mode = "select"
            self._boxes_layer = layer
            self._keep_order()
            if self.on_boxes_layer is not None:
                self.on_boxes_layer(layer)
        assert self._boxes_layer is not None
        return self._boxes_layer

    @property
    def highlight_layer(self) -> Shapes:
        """The highlights layer (re-created if deleted)."""
        if not self._alive(self._highlight_layer):
            self._highlight_layer = self.viewer.add_shapes(
                name=HIGHLIGHT_LAYER,
                ndim=2,
                shape_type="rectangle",
                edge_width=3,
                face_color="transparent",
                features={"kind": [], "text": []},
                text={"string": "{text}", "size": 8, "color": "#ffea00", "anchor": "lower_left"},
                opacity=0.9,
            )
            self._highlight_layer.visible = self.show_highlights
            self._keep_order()
        return self._highlight_layer

    def _keep_order(self) -> None:
        """image below boxes below highlights; the boxes layer stays the active one."""
        layers = self.viewer.layers
        image, boxes, marks = (
            layer if self._alive(layer) else None
            for layer in (self._image_layer, self._boxes_layer, self._highlight_layer)
        )
        if image is not None and boxes is not None and layers.index(image) > layers.index(boxes):
            layers.move(layers.index(image), layers.index(boxes))
        if marks is not None and boxes is not None and layers.index(marks) < layers.index(boxes):
            layers.move(layers.index(marks), len(layers))
        if boxes is not None:
            layers.selection.active = boxes

    def activate_boxes(self) -> None:
        """Make the boxes layer the active one (the keys 1-9 are bound on it)."""
        self.viewer.layers.selection.active = self.boxes_layer

    # -- showing an image ----------------------------------------------------------------

    def show(
        self,
        store: ProjectStore,
        image_id: int,
        pixels: np.ndarray | None = None,
        reset_view: bool = True,
    ) -> dict[str, float]:
        """Show an image with its boxes; returns the time taken by part (seconds).
        ``pixels``: the image as read (None: read from its file by
        :func:`~napari_al.core.lazy_images.open_display`, lazily when it is large)."""
        t0 = time.perf_counter()
        row = store.image(image_id)
        source: np.ndarray | LazyImage = (
            open_display(store.abs_path(row)) if pixels is None else pixels
        )
        boxes = store.boxes(image_id=image_id)
        self.class_names = {c.id: c.name for c in store.classes()}
        t1 = time.perf_counter()
        self._set_image(source)
        t2 = time.perf_counter()
        self.image_id = int(image_id)
        self.image_row = row
        self._regions, self._missed, self._query = [], [], []
        self.set_boxes(boxes)
        t3 = time.perf_counter()
        self._render_highlights()
        if reset_view:
            self.fit()
        self.activate_boxes()
        t4 = time.perf_counter()
        self.last_timing = {
            "read_s": t1 - t0,
            "image_s": t2 - t1,
            "boxes_s": t3 - t2,
            "total_s": t4 - t0,
        }
        return self.last_timing

    def fit(self) -> None:
        """Fit the image to the canvas (``viewer.reset_view``). Until the person pans or
        zooms, the image is fitted again whenever the canvas changes size: the window is laid
        out after the first image is shown (the dock widget, the window's final size), and a
        fit to the canvas's size before that would show the image zoomed in and cropped."""
        self.viewer.reset_view()
        cam = camera(self.viewer)
        self._fitted = (tuple(float(v) for v in cam.center), float(cam.zoom))

    def _on_canvas_resized(self, event: Any = None) -> None:
        if self._fitted is None or self.image_layer is None:
            return
        cam = camera(self.viewer)
        center, zoom = self._fitted
        if np.allclose(tuple(cam.center), center) and np.isclose(cam.zoom, zoom):
            self.fit()
        else:
            self._fitted = None  # the person moved the camera: leave it where it is

    def close(self) -> None:
        """Stop following the canvas size (the layers stay in the viewer)."""
        if self._size_event is not None:
            self._size_event.disconnect(self._on_canvas_resized)
            self._size_event = None
        self._fitted = None

    def _set_image(self, source: np.ndarray | LazyImage) -> None:
        """Put an image into the image layer: its pixels, or a large image's levels as a
        multiscale layer (the layer is reused when its kind fits; image pixels coordinates,
        scale 1, either way). The large image shown before, if any, is closed."""
        try:
            data: Any = source.display_levels() if isinstance(source, LazyImage) else source
        except BaseException:
            if isinstance(source, LazyImage):
                source.close()
            raise
        multiscale = isinstance(source, LazyImage)
        first = data[0] if multiscale else data
        rgb = first.ndim == 3 and first.shape[-1] in (3, 4)
        layer = self.image_layer
        if (
            layer is not None
            and bool(layer.rgb) == rgb
            and bool(layer.multiscale) == multiscale
            and layer.ndim == first.ndim - int(rgb)
        ):
            layer.data = data
            layer.reset_contrast_limits()
        else:
            if layer is not None:
                self.viewer.layers.remove(layer)
            self._image_layer = self.viewer.add_image(
                data, name=IMAGE_LAYER, rgb=rgb, multiscale=multiscale
            )
            self._keep_order()
        previous, self._lazy = self._lazy, source if multiscale else None
        if previous is not None and previous is not source:
            previous.close()

    @property
    def multiscale(self) -> bool:
        """Whether the image on screen is a large image shown as a multiscale layer (its
        pixels are never all in memory: read its windows from the file)."""
        return self._lazy is not None and self.image_layer is not None

    def visible(self, row: BoxRow) -> bool:
        """Whether a box is drawn: rejected ones unless hidden, predictions by
        :attr:`shows_prediction`; never a region answered "no" (the ``question`` layer's,
        not a box)."""
        if row.source == REGION_SOURCE:
            return False
        if row.status == "rejected":
            return self.show_rejected
        if row.status == "predicted":
            return self.shows_prediction(row)
        return True

    def set_boxes(self, boxes: Iterable[BoxRow]) -> None:
        """Replace the boxes layer's contents by these boxes, in one go."""
        rows = [b for b in boxes if self.visible(b)]
        layer = self.boxes_layer
        names = self.class_names
        labels = [names.get(b.class_id, "?") for b in rows]
        features = box_features(
            [b.id for b in rows],
            labels,
            [b.score for b in rows],
            [b.status for b in rows],
            [b.source for b in rows],
        )
        with self.programmatic():
            layer.selected_data = set()
            text_visible = layer.text.visible
            layer.text.visible = False  # one text layout at the end, not one per step
            try:
                if len(layer.data):
                    layer.data = []
                if rows:
                    xyxy = np.array([b.xyxy for b in rows], dtype=float)
                    layer.add(
                        list(xyxy_to_napari(xyxy)),
                        shape_type="rectangle",
                        edge_width=2,
                        edge_color=edge_colors([b.status for b in rows]),
                        face_color="transparent",
                    )
                layer.features = features_frame(features)
                layer.feature_defaults = feature_defaults(self.current_class)
            finally:
                layer.text.visible = text_visible

    def reload(self, store: ProjectStore) -> None:
        """Re-read the current image's boxes from the store (after undo, rescoring...)."""
        if self.image_id is None:
            return
        self.class_names = {c.id: c.name for c in store.classes()}
        keep = set(self.selected_box_ids())
        self.set_boxes(store.boxes(image_id=self.image_id))
        if keep:
            self.select_boxes(keep)

    # -- box ids <-> shapes --------------------------------------------------------------

    def box_ids(self) -> np.ndarray:
        """The ``box_id`` feature of each shape (-1: not in the store)."""
        layer = self.boxes_layer
        if "box_id" not in layer.features or len(layer.features) == 0:
            return np.zeros(0, np.int64)
        return layer.features["box_id"].to_numpy(dtype=np.int64, na_value=-1)

    def index_of(self, box_id: int) -> int | None:
        """The shape index of a box, or None when it is not shown."""
        hits = np.flatnonzero(self.box_ids() == int(box_id))
        return int(hits[0]) if hits.size else None

    def selected_box_ids(self) -> list[int]:
        """The store ids of the selected shapes (ordered by shape index)."""
        ids = self.box_ids()
        return [int(ids[i]) for i in sorted(self.boxes_layer.selected_data) if ids[i] >= 0]

    def select_boxes(self, box_ids: Iterable[int]) -> None:
        idx = {i for i in (self.index_of(b) for b in box_ids) if i is not None}
        with self.programmatic():
            self.boxes_layer.selected_data = idx

    def shape_xyxy(self, index: int) -> tuple[float, float, float, float]:
        """The box of shape ``index`` in image pixels (rotations reduced by min/max)."""
        b = napari_to_xyxy([self.boxes_layer.data[index]])[0]
        return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))

    # -- one box --------------------------------------------------------------------------

    def sync_box(self, row: BoxRow | None, box_id: int, force: bool = False) -> None:
        """Make the shape of ``box_id`` match its store state ``row`` (None: deleted).

        Adds, removes, moves and restyles one shape; the others are untouched. ``force``
        re-creates the shape (e.g. to turn a drawn ellipse into the rectangle it stands for).
        """
        layer = self.boxes_layer
        index = self.index_of(box_id)
        visible = row is not None and row.image_id == self.image_id and self.visible(row)
        with self.programmatic():
            if not visible:
                if index is not None:
                    layer.remove([index])
                return
            assert row is not None
            label = self.class_names.get(row.class_id, "?")
            if index is not None and (
                force
                or layer.shape_type[index] != "rectangle"
                or not self._same_geometry(index, row.xyxy)
            ):
                selected = index in layer.selected_data
                layer.remove([index])
                index = None
            else:
                selected = False
            if index is None:
                layer.add(
                    [xyxy_to_napari([row.xyxy])[0]],
                    shape_type="rectangle",
                    edge_width=2,
                    edge_color=status_rgba(row.status),
                    face_color="transparent",
                )
                index = len(layer.data) - 1
                if selected:
                    layer.selected_data = {index}
            self._set_features(index, row, label)

    def _same_geometry(self, index: int, xyxy: Sequence[float]) -> bool:
        return bool(
            np.allclose(self.shape_xyxy(index), np.asarray(xyxy, float), atol=GEOMETRY_TOLERANCE)
        )

    def _set_features(self, index: int, row: BoxRow, label: str) -> None:
        layer = self.boxes_layer
        feats = layer.features
        score = float("nan") if row.score is None else float(row.score)
        values = {
            "box_id": int(row.id),
            "label": label,
            "score": score,
            "status": row.status,
            "source": row.source,
            "caption": caption(label, score),
        }
        for col, value in values.items():
            feats.at[feats.index[index], col] = value
        colors = np.array(layer.edge_color, copy=True)
        if index < len(colors):
            colors[index] = status_rgba(row.status)
            layer.edge_color = colors
        layer.refresh_text()

    def set_current_class(self, name: str) -> None:
        """The class a newly drawn box gets."""
        self.current_class = name
        if self._alive(self._boxes_layer):
            self.boxes_layer.feature_defaults = feature_defaults(name)

    # -- highlights -----------------------------------------------------------------------

    def set_overlays(
        self,
        regions: Sequence[Highlight] = (),
        missed: Sequence[Highlight] = (),
        query: Sequence[Highlight] = (),
    ) -> None:
        """Replace the highlighted regions, possibly missed suggestions and queried item."""
        self._regions, self._missed, self._query = list(regions), list(missed), list(query)
        self._render_highlights()

    @property
    def highlights(self) -> list[Highlight]:
        return [*self._regions, *self._missed, *self._query]

    def _render_highlights(self) -> None:
        items = self.highlights
        if not items and not self._alive(self._highlight_layer):
            return  # no need to create the layer yet
        layer = self.highlight_layer
        if len(layer.data):
            layer.data = []
        if items:
            xyxy = np.array([it[0] for it in items], dtype=float)
            colors = np.stack([highlight_rgba(k) for _, k, _ in items])
            layer.add(
                list(xyxy_to_napari(xyxy)),
                shape_type="rectangle",
                edge_width=3,
                edge_color=colors,
                face_color="transparent",
            )
            layer.features = {"kind": [k for _, k, _ in items], "text": [t for _, _, t in items]}
        self._keep_order()

    def set_highlights_visible(self, visible: bool) -> None:
        self.show_highlights = bool(visible)
        if self._alive(self._highlight_layer):
            self.highlight_layer.visible = self.show_highlights

    def center_on(self, xyxy: Sequence[float], zoom: bool = False) -> None:
        """Centre the camera on a box ``(x1, y1, x2, y2)`` (image pixels) and, with ``zoom``,
        zoom so that it spans half the canvas (:func:`~napari_al.core.boxes.camera_fit`)."""
        center, fit_zoom = camera_fit(xyxy, canvas_size(self.viewer), margin=2.0)
        cam = camera(self.viewer)
        cam.center = center
        if zoom:
            cam.zoom = fit_zoom
        self._fitted = None

    def bring_into_view(self, xyxy: Sequence[float]) -> None:
        """Show the whole box: nothing moves when it is on the canvas already; otherwise the
        camera centres on it, zooming out only as far as needed to fit it (with a margin)."""
        if self.in_view(xyxy):
            return
        self.center_on(xyxy)
        if not self.in_view(xyxy):
            _, fit_zoom = camera_fit(xyxy, canvas_size(self.viewer), margin=1.2)
            cam = camera(self.viewer)
            cam.zoom = float(min(cam.zoom, fit_zoom))

    def in_view(self, xyxy: Sequence[float]) -> bool:
        """Whether the whole box ``(x1, y1, x2, y2)`` (data pixels) is on the canvas."""
        vx1, vy1, vx2, vy2 = visible_rect(self.viewer)
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        return vx1 <= x1 and x2 <= vx2 and vy1 <= y1 and y2 <= vy2
