"""Keep the viewer's image and box layers in step with the image being annotated."""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_al.core.images import read_image
from napari_al.gui.layers import boxes_layer_kwargs

if TYPE_CHECKING:
    import napari

    from napari_al.core.store import ProjectStore

IMAGE_LAYER = "image"
BOXES_LAYER = "boxes"


class ImageView:
    """Owns the ``image`` and ``boxes`` layers; replaces their contents on each image switch.

    Reusing the layers (instead of removing and adding) keeps the switch fast and keeps the
    user's layer settings (contrast, opacity) across images.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.image_id: int | None = None

    def show(self, store: ProjectStore, image_id: int) -> None:
        row = store.image(image_id)
        pixels = read_image(store.abs_path(row))
        class_names = {c.id: c.name for c in store.classes()}
        boxes = [
            (
                (b.x1, b.y1, b.x2, b.y2),
                class_names.get(b.class_id, "?"),
                b.score,
                b.status,
                b.source,
            )
            for b in store.boxes(image_id=image_id)
        ]
        data, kwargs = boxes_layer_kwargs(boxes, [c.name for c in store.classes()])
        name = kwargs.pop("name")
        if IMAGE_LAYER in self.viewer.layers:
            layer = self.viewer.layers[IMAGE_LAYER]
            layer.data = pixels
            layer.rgb = pixels.ndim == 3
            layer.reset_contrast_limits()
        else:
            self.viewer.add_image(pixels, name=IMAGE_LAYER, rgb=pixels.ndim == 3)
        if BOXES_LAYER in self.viewer.layers:
            self.viewer.layers.remove(BOXES_LAYER)
        self.viewer.add_shapes(data, name=BOXES_LAYER if name == "boxes" else name, **kwargs)
        self.image_id = image_id
        self.viewer.reset_view()
