"""The Keys section: the annotation keys as a table (from :func:`napari_al.gui.keys.key_table`)."""

from __future__ import annotations

import html

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QGroupBox, QLabel, QVBoxLayout

from napari_al.gui.keys import key_table


class KeysSection(QGroupBox):
    """A read-only table of the keys and what they do."""

    def __init__(self) -> None:
        super().__init__("Keys")
        layout = QVBoxLayout(self)
        rows = "".join(
            f"<tr><td><b>{html.escape(k)}</b>&nbsp;&nbsp;</td><td>{html.escape(d)}</td></tr>"
            for k, d in key_table()
        )
        self.keys_label = QLabel(f"<table>{rows}</table>")
        self.keys_label.setWordWrap(True)
        self.keys_label.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.keys_label)
