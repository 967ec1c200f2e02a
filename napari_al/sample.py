"""The shipped BCCD sample: its location and the napari sample-data contribution."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: Environment variable that points at a BCCD-style VOC folder to use instead of the shipped one.
SAMPLE_ENV = "NAPARI_AL_SAMPLE_DIR"


def sample_dir() -> Path:
    """The folder of the 16-image BCCD sample (VOC layout).

    It lives in the repository's ``sample_data/`` beside the package (an editable install or a
    clone); ``NAPARI_AL_SAMPLE_DIR`` overrides it.
    """
    override = os.environ.get(SAMPLE_ENV)
    if override:
        path = Path(override)
    else:
        path = Path(__file__).resolve().parent.parent / "sample_data" / "bccd_sample"
    if not (path / "Annotations").is_dir():
        raise FileNotFoundError(
            f"BCCD sample not found at {path}: run from a clone of napari-al (editable install) "
            f"or set {SAMPLE_ENV} to a VOC folder"
        )
    return path


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
