"""The dock widget: open a project, browse its images, show each image with its boxes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QLabel,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_al.core.store import ProjectStore
from napari_al.gui.viewer_state import ImageView

if TYPE_CHECKING:
    import napari


class ActiveLearningWidget(QWidget):
    """Dock widget of napari-al: the Project section (open a folder, list its images)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.store: ProjectStore | None = None
        self.view = ImageView(viewer)

        self.open_button = QPushButton("Open project folder…")
        self.open_button.clicked.connect(self._choose_folder)
        self.project_label = QLabel("No project open")
        self.project_label.setWordWrap(True)
        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        self.image_list = QListWidget()
        self.image_list.currentRowChanged.connect(self._on_row_changed)

        project_box = QGroupBox("Project")
        project_layout = QVBoxLayout(project_box)
        project_layout.addWidget(self.open_button)
        project_layout.addWidget(self.project_label)
        project_layout.addWidget(self.summary_label)
        project_layout.addWidget(QLabel("Images"))
        project_layout.addWidget(self.image_list)

        layout = QVBoxLayout(self)
        layout.addWidget(project_box)
        self._image_ids: list[int] = []

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a napari-al project folder")
        if folder:
            self.open_project(folder)

    def open_project(self, project_dir: str | Path) -> None:
        """Open (or create from a plain image folder) the project and list its images."""
        from napari_al.core.project import open_or_init

        if self.store is not None:
            self.store.close()
        self.store = open_or_init(Path(project_dir))
        self.project_label.setText(str(Path(project_dir).resolve()))
        self.refresh()
        if self._image_ids:
            self.image_list.setCurrentRow(0)

    def refresh(self) -> None:
        """Re-read the image list and the counts from the store."""
        if self.store is None:
            return
        info = self.store.info()
        self.summary_label.setText(
            f"{info['images']} images, {info['boxes']} boxes, "
            f"classes: {', '.join(info['classes']) or '(none)'}"
        )
        rows = self.store.images()
        self._image_ids = [row.id for row in rows]
        self.image_list.blockSignals(True)
        self.image_list.clear()
        for row in rows:
            self.image_list.addItem(f"{Path(row.path).name}  [{row.split}, {row.review_state}]")
        self.image_list.blockSignals(False)

    def _on_row_changed(self, row: int) -> None:
        if self.store is None or not 0 <= row < len(self._image_ids):
            return
        self.show_image(self._image_ids[row])

    def show_image(self, image_id: int) -> None:
        """Show one image of the project with its boxes."""
        assert self.store is not None
        self.view.show(self.store, image_id)

    def closeEvent(self, event) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
        super().closeEvent(event)
