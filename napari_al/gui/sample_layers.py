"""napari's sample-data contribution: the shipped BCCD sample as an image and a boxes layer."""

from __future__ import annotations

from typing import Any

from napari_al.sample import sample_dir


def bccd_sample_layers() -> list[tuple[Any, dict[str, Any], str]]:
    """napari sample data: the first sample image with its ground-truth boxes."""
    from napari_al.core.formats import read_voc
    from napari_al.core.images import read_image
    from napari_al.gui.layers import boxes_layer_kwargs

    dataset = read_voc(sample_dir())
    record = dataset.images[0]
    image = read_image(record.path)
    boxes = [(b.xyxy(), b.label, b.score, "accepted", "import") for b in record.boxes]
    data, kwargs = boxes_layer_kwargs(boxes, dataset.classes)
    return [
        (image, {"name": record.path.stem}, "image"),
        (data, kwargs, "shapes"),
    ]
