"""Importing and exporting datasets: Pascal VOC, COCO, YOLO and plain image folders.

Every reader returns a :class:`~napari_al.core.data.Dataset` with boxes in this package's
convention (``[x1, y1, x2, y2]``, pixel edges on integers, see :mod:`napari_al.core.boxes`) and
absolute image paths; readers never write anything. Writers refuse to replace an existing file
unless ``overwrite=True`` (they check every target before writing the first one).

Errors and repairs
------------------
Malformed input raises :class:`FormatError` whose message names the file (relative to the
dataset root), the record or field and the problem, e.g.
``"Annotations/x.xml: object 3: bndbox/xmin is 'abc', not a number"``. With ``strict=True``
(the default) a reader raises on the first one; with ``strict=False`` it skips the bad box
(a bad box is dropped; the rest of its image is kept, and the image's
``ImageRecord.skipped_objects`` counts it, so the importer can leave the image partly
reviewed instead of training the dropped object as background) or the bad file (the image
is left out of the import entirely, never turned into an unlabeled image) and reports each
skip in ``Dataset.warnings``. Structural problems (no ``Annotations/`` folder, a JSON file
that does not parse) always raise.

Repairs, applied in both modes and recorded in ``Dataset.warnings``:

- a box partly outside the image is clipped to it (a box entirely outside is an error);
- a box of zero width or height is widened to 1 px (towards the inside of the image), so no
  annotated object is lost; a negative width/height or ``xmin > xmax`` is an error;
- a missing image size (VOC ``<size>``, or one of ``0x0``; COCO ``width``/``height``) is read
  from the image header. A size that disagrees with the image header is an error (the boxes
  would not fit).

Pixel conventions
-----------------
- VOC ``xmin, ymin, xmax, ymax`` are 1-based inclusive pixel indices: ``x1 = xmin - 1``,
  ``x2 = xmax`` (and back on export, as integers: non-integer boxes are rounded to the nearest
  pixel edge). BCCD's two "degenerate" boxes (``xmin == xmax``, ``ymin == ymax``) are therefore
  1 x 1 px boxes, kept as they are.
- COCO ``bbox`` is ``[x, y, width, height]`` in pixel edges: ``x1 = x``, ``x2 = x + width``.
- YOLO is ``class cx cy w h`` normalised by the image size. Values are written with Python's
  shortest round-trip ``repr``; on reading, a coordinate within 1e-6 px of an integer is snapped
  to it, so integer boxes survive a YOLO round trip exactly.

An export the file system refuses (no permission, a read-only or full disk) raises
:class:`ExportFileError`, an OSError whose text names the export's target, the cause, the file
it was writing and the fix, never a temporary file (:mod:`~napari_al.core.formats.refusals`).
An export into the project's own folder, or one whose copied images would land on the
project's images, raises :class:`ExportIntoProjectError` (a ValueError) before writing.

Layouts are described on each reader and writer.
"""

from __future__ import annotations

from napari_al.core.formats.coco import read_coco, write_coco
from napari_al.core.formats.common import FormatError
from napari_al.core.formats.dispatch import (
    READ_FORMATS,
    WRITE_FORMATS,
    detect_format,
    read_dataset,
    write_dataset,
)
from napari_al.core.formats.folder import read_image_folder
from napari_al.core.formats.refusals import ExportFileError, ExportIntoProjectError
from napari_al.core.formats.voc import read_voc, write_voc
from napari_al.core.formats.yolo import read_yolo, write_yolo

__all__ = [
    "READ_FORMATS",
    "WRITE_FORMATS",
    "ExportFileError",
    "ExportIntoProjectError",
    "FormatError",
    "detect_format",
    "read_coco",
    "read_dataset",
    "read_image_folder",
    "read_voc",
    "read_yolo",
    "write_coco",
    "write_dataset",
    "write_voc",
    "write_yolo",
]
