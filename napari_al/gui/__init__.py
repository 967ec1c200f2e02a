"""napari / Qt front end: widgets, layers, key bindings and workers (thin over ``core``)."""

from __future__ import annotations
