"""The shipped BCCD sample: where it is (its napari sample-data contribution is
:func:`napari_al.gui.sample_layers.bccd_sample_layers`)."""

from __future__ import annotations

import os
from pathlib import Path

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
