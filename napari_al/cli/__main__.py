"""``python -m napari_al.cli``: the ``napari-al`` command."""

from __future__ import annotations

from napari_al.cli import main

raise SystemExit(main())
