"""The Project section: open or create a project, import and export, classes, the image list."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
)

from napari_al.core.store import ProjectStore, StoreError
from napari_al.gui.notify import NO_CLASS_HINT, notify_import, notify_user
from napari_al.gui.sections.common import guard, row

if TYPE_CHECKING:
    from napari_al.gui.controller import AnnotationController


class ProjectSection(QGroupBox):
    """Open a project (or a folder of images, or the BCCD sample), import and export datasets,
    choose and add classes, list the images and set an image's split.

    ``open_project(folder)`` opens a project in the widget; ``refresh()`` re-reads everything
    the widget shows from the store (both belong to the widget, which owns the other sections).
    """

    def __init__(
        self,
        controller: AnnotationController,
        open_project: Callable[[str | Path], None],
        refresh: Callable[[], None],
    ) -> None:
        super().__init__("Project")
        self.controller = controller
        self._open_project = open_project
        self._refresh = refresh
        #: Store ids of the images in the list, in list order.
        self.image_ids: list[int] = []
        form = QVBoxLayout(self)
        self.open_button = QPushButton("Open folder…")
        self.open_button.setToolTip("A napari-al project, or a folder of images to start one")
        self.open_button.clicked.connect(self._choose_folder)
        self.sample_button = QPushButton("Sample project…")
        self.sample_button.setToolTip("Make a project from the 16-image BCCD sample")
        self.sample_button.clicked.connect(self._choose_sample_folder)
        form.addWidget(row(self.open_button, self.sample_button))
        self.project_label = QLabel("No project open")
        self.project_label.setWordWrap(True)
        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        form.addWidget(self.project_label)
        form.addWidget(self.summary_label)

        self.import_format = QComboBox()
        self.import_format.addItems(["voc", "coco", "yolo", "images"])
        self.import_button = QPushButton("Import…")
        self.import_button.clicked.connect(self._choose_import)
        form.addWidget(row(QLabel("Import"), self.import_format, self.import_button))
        self.export_format = QComboBox()
        self.export_format.addItems(["voc", "coco", "yolo"])
        self.export_all = QCheckBox("incl. incomplete")
        self.export_all.setToolTip("Also export images not marked complete")
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self._choose_export)
        form.addWidget(
            row(QLabel("Export"), self.export_format, self.export_all, self.export_button)
        )

        self.class_combo = QComboBox()
        self.class_combo.setToolTip("The class of the boxes you draw (keys 1-9)")
        self.class_combo.currentIndexChanged.connect(self._on_class_chosen)
        self.new_class = QLineEdit()
        self.new_class.setPlaceholderText("new class")
        self.add_class_button = QPushButton("Add")
        self.add_class_button.clicked.connect(self._add_class)
        self.new_class.returnPressed.connect(self._add_class)
        form.addWidget(
            row(QLabel("Class"), self.class_combo, self.new_class, self.add_class_button)
        )
        #: Shown while the open project has no class (e.g. one made from plain images).
        self.class_hint = QLabel(NO_CLASS_HINT)
        self.class_hint.setWordWrap(True)
        self.class_hint.setStyleSheet("color: #ffb74d;")
        self.class_hint.setVisible(False)
        form.addWidget(self.class_hint)

        self.image_list = QListWidget()
        self.image_list.setMinimumHeight(120)
        self.image_list.currentRowChanged.connect(self._on_row_changed)
        form.addWidget(QLabel("Images"))
        form.addWidget(self.image_list)
        self.split_combo = QComboBox()
        self.split_combo.addItems(["pool", "train", "val", "test"])
        self.split_button = QPushButton("Set split")
        self.split_button.clicked.connect(self._set_split)
        form.addWidget(row(QLabel("Split of this image"), self.split_combo, self.split_button))

    @property
    def store(self) -> ProjectStore | None:
        return self.controller.store

    # -- opening -----------------------------------------------------------------------

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a napari-al project folder")
        if folder:
            guard("open project", lambda: self._open_project(folder))

    def _choose_sample_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Folder for the sample project (an empty one)"
        )
        if folder:
            guard("sample project", lambda: self.open_sample_project(folder))

    def open_sample_project(self, folder: str | Path) -> None:
        """Make (or reopen) a project from the BCCD sample in ``folder`` and open it."""
        from napari_al.core.project import import_into, is_project
        from napari_al.sample import sample_dir

        folder = Path(folder)
        if not is_project(folder):
            with ProjectStore.create(folder) as store:
                import_into(store, sample_dir(), "voc")
        self._open_project(folder)

    # -- showing the store -------------------------------------------------------------

    def refresh(self, store: ProjectStore) -> None:
        """Re-read the image list, the classes and the counts from ``store``."""
        rows = store.images()
        self.image_ids = [r.id for r in rows]
        self.image_list.blockSignals(True)
        self.image_list.clear()
        for r in rows:
            self.image_list.addItem(self._image_text(r))
        if self.controller.image_id in self.image_ids:
            self.image_list.setCurrentRow(self.image_ids.index(self.controller.image_id))
        self.image_list.blockSignals(False)
        self.refresh_classes()
        self.refresh_summary()

    @staticmethod
    def _image_text(r: Any) -> str:
        return f"{Path(r.path).name}  [{r.split}, {r.review_state}]"

    def refresh_summary(self) -> None:
        """The counts of images, human boxes, boxes to review and annotation time."""
        store = self.store
        if store is None:
            return
        info = store.info()
        st = info["boxes_by_status"]
        human = st["accepted"] + st["corrected"] + st["drawn"]
        self.summary_label.setText(
            f"{info['images']} images ({info['images_by_review_state']['complete']} complete), "
            f"{human} human boxes, {info['predictions_to_review']} to review, "
            f"{st['rejected']} rejected; "
            f"{info['annotation_seconds'] / 60:.1f} min of annotation"
        )

    def refresh_classes(self) -> None:
        """The class list (numbered 1-9 as the keys), the current class selected."""
        store = self.store
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        classes = [] if store is None else store.classes()
        self.class_hint.setVisible(store is not None and not classes)
        self.class_combo.setPlaceholderText("no classes yet" if store is not None else "")
        if store is not None:
            for n, c in enumerate(classes, start=1):
                self.class_combo.addItem(f"{n}: {c.name}" if n <= 9 else c.name, c.id)
            cid = self.controller.current_class_id
            index = self.class_combo.findData(cid)
            if index >= 0:
                self.class_combo.setCurrentIndex(index)
        self.class_combo.blockSignals(False)

    def refresh_current_row(self) -> None:
        """Re-read the list entry of the image on screen (its split and review state)."""
        store, image_id = self.store, self.controller.image_id
        if store is None or image_id is None or image_id not in self.image_ids:
            return
        index = self.image_ids.index(image_id)
        item = self.image_list.item(index)
        if item is not None:
            item.setText(self._image_text(store.image(image_id)))

    def select_image(self, image_id: int | None) -> None:
        """Select the list entry and the split of the image on screen (no image switch)."""
        if image_id in self.image_ids:
            self.image_list.blockSignals(True)
            self.image_list.setCurrentRow(self.image_ids.index(image_id))
            self.image_list.blockSignals(False)
            if self.store is not None:
                split = self.store.image(image_id).split
                self.split_combo.setCurrentText(split)

    def _on_row_changed(self, index: int) -> None:
        if self.store is None or not 0 <= index < len(self.image_ids):
            return
        if self.image_ids[index] != self.controller.image_id:
            guard("show image", lambda: self.controller.show_image(self.image_ids[index]))

    # -- classes and splits ------------------------------------------------------------

    def _on_class_chosen(self, index: int) -> None:
        cid = self.class_combo.itemData(index)
        if cid is not None:
            self.controller.set_current_class(int(cid))

    def _add_class(self) -> None:
        name = self.new_class.text().strip()
        if not name or self.store is None:
            return

        def act() -> None:
            assert self.store is not None
            cid = self.store.add_class(name)
            self.new_class.clear()
            self.controller.set_current_class(cid)
            self.refresh_classes()
            if self.controller.detector is not None:
                notify_user("info", f"class {name!r} added; retrain to teach the model about it")

        guard("add class", act)

    def _set_split(self) -> None:
        store, image_id = self.store, self.controller.image_id
        if store is None or image_id is None:
            return
        split = self.split_combo.currentText()
        guard("set split", lambda: store.set_split(image_id, split))
        self.refresh_current_row()

    # -- import and export -------------------------------------------------------------

    def _choose_import(self) -> None:
        fmt = self.import_format.currentText()
        if fmt == "coco":
            path, _ = QFileDialog.getOpenFileName(
                self, "COCO annotation file", filter="JSON (*.json)"
            )
        else:
            path = QFileDialog.getExistingDirectory(self, f"{fmt.upper()} dataset folder")
        if path:
            guard("import", lambda: self.import_dataset(path, fmt))

    def import_dataset(self, path: str | Path, fmt: str) -> dict[str, Any]:
        """Import a dataset into the open project (one transaction)."""
        from napari_al.core.project import import_into

        if self.store is None:
            raise StoreError("open a project first")
        _dataset, summary = import_into(self.store, Path(path), fmt)
        notify_import(summary)
        notify_user(
            "info",
            f"imported {summary.get('images_added', 0)} images and "
            f"{summary.get('boxes_added', 0)} boxes",
        )
        self._refresh()
        if self.controller.image_id is None and self.image_ids:
            self.controller.show_image(self.image_ids[0])
        return summary

    def _choose_export(self) -> None:
        out = QFileDialog.getExistingDirectory(self, "Export to folder")
        if out:
            fmt = self.export_format.currentText()
            guard("export", lambda: self.export_dataset(out, fmt))

    def export_dataset(self, out: str | Path, fmt: str, overwrite: bool = False) -> Any:
        """Export the human labels (of complete images, unless 'incl. incomplete')."""
        from napari_al.core.project import export_dataset

        if self.store is None:
            raise StoreError("open a project first")
        dataset = export_dataset(
            self.store,
            Path(out),
            fmt,
            overwrite=overwrite,
            only_reviewed=not self.export_all.isChecked(),
        )
        for line in dataset.warnings:  # e.g. YOLO leaving out partly reviewed images
            notify_user("warning", line)
        notify_user(
            "info", f"exported {len(dataset.images)} images, {dataset.n_boxes} boxes to {out}"
        )
        return dataset
