"""Qt-free, napari-free core: data, store, detector, training, scoring, selection, evaluation.

Nothing under this package may import Qt or napari; long work takes a progress callback.
"""

from __future__ import annotations
