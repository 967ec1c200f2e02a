"""Qt-free, napari-free core: data, store, scoring, selection, evaluation; ``engine``: the
detector, training, checkpoints and devices (the torch code of the core).

Nothing under this package may import Qt or napari; long work takes a progress callback.
"""

from __future__ import annotations
