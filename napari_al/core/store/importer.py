"""Importing a :class:`~napari_al.core.data.Dataset` into a project store, all or nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari_al.core.data import SPLITS, Dataset, ImageRecord
from napari_al.core.store.boxes import BoxesMixin
from napari_al.core.store.rows import (
    StoreError,
    _check_choice,
    _check_score,
    _check_xyxy,
    file_sha256,
)

#: An image to import: (stored path, record, split).
_Planned = tuple[str, ImageRecord, str]


class ImportMixin(BoxesMixin):
    """Dataset import."""

    # -- import --------------------------------------------------------------------------

    def import_dataset(
        self,
        dataset: Dataset,
        progress: Callable[[int, int], None] | None = None,
        split_default: str = "pool",
        annotated_split_default: str = "train",
    ) -> dict[str, Any]:
        """Import a dataset, all or nothing, in one transaction; returns a summary dict.

        - Images whose path is already in the project are SKIPPED untouched (their boxes, split
          and review state are human work; nothing is overwritten), as are repeated paths.
        - Images with ``annotated=True`` become ``complete`` with their boxes ``accepted``
          (source ``import``); an annotated image without a split goes to
          ``annotated_split_default`` (``train``). An annotated image whose reader skipped
          objects (``ImageRecord.skipped_objects``, ``strict=False``) becomes ``partial``
          instead, so the skipped object is never trained as background, as does one the
          source marks partly reviewed (``ImageRecord.partial``); the summary counts these
          images in ``partial``.
        - Each image's ``ignore_regions`` become store ignore regions (which have no class):
          identical boxes are merged, as a region of no class comes back once per class
          from a VOC/COCO export. The summary counts them in ``ignore_regions_added``.
        - Unannotated images become ``unseen``, in their split or ``split_default`` (``pool``).
        - Classes are added as needed, in ``dataset.classes`` order then first use.
        - One ``import`` action is logged.

        Everything is validated and every file hashed (streamed) before the write transaction,
        which then holds the write lock only briefly. ``progress(done, total)`` follows the
        hashing; raising from it cancels the import with nothing written.
        """
        _check_choice(split_default, SPLITS, "split")
        _check_choice(annotated_split_default, SPLITS, "split")
        planned, skipped = self._plan_import(dataset, split_default, annotated_split_default)
        hashes = self._hash_planned(planned, progress)
        summary: dict[str, Any] = {
            "source": dataset.source,
            "images_added": 0,
            "images_skipped": len(skipped),
            "boxes_added": 0,
            "annotated": 0,
            "unannotated": 0,
            "partial": 0,
            "ignore_regions_added": 0,
            "classes_added": [],
            "skipped_paths": skipped,
            "warnings": list(dataset.warnings),
        }
        self._write_import(dataset, planned, hashes, summary)
        return summary

    def _plan_import(
        self, dataset: Dataset, split_default: str, annotated_split_default: str
    ) -> tuple[list[_Planned], list[str]]:
        """Validate every image and box before anything is written.

        Returns the images to add as ``(stored path, record, split)`` and the stored paths
        skipped (already in the project, or repeated). Raises :class:`StoreError` naming the
        first bad image; nothing is written then.
        """
        with self._read() as conn:
            existing = {r[0] for r in conn.execute("SELECT path FROM images")}
        planned: list[_Planned] = []
        skipped: list[str] = []
        seen: set[str] = set()
        for index, rec in enumerate(dataset.images):
            where = f"image {index} ({rec.path})"
            rel = self.rel_path(rec.path)
            if rel in existing or rel in seen:
                skipped.append(rel)
                continue
            seen.add(rel)
            if rec.split is not None:
                split = rec.split
            else:
                split = annotated_split_default if rec.annotated else split_default
            try:
                _check_record(rec, split)
            except StoreError as exc:
                raise StoreError(f"{where}: {exc}; nothing was imported") from None
            planned.append((rel, rec, split))
        return planned, skipped

    def _hash_planned(
        self, planned: list[_Planned], progress: Callable[[int, int], None] | None
    ) -> list[str]:
        """The SHA-256 of each planned file (streamed), reporting ``progress(done, total)``."""
        total = len(planned)
        hashes: list[str] = []
        if progress is not None:
            progress(0, total)
        for done, (rel, _rec, _split) in enumerate(planned, start=1):
            hashes.append(file_sha256(self.abs_path(rel)))
            if progress is not None:
                progress(done, total)
        return hashes

    def _write_import(
        self,
        dataset: Dataset,
        planned: list[_Planned],
        hashes: list[str],
        summary: dict[str, Any],
    ) -> None:
        """Write the planned images, their boxes and new classes in ONE transaction; log
        ``import``. Updates ``summary`` in place (adds ``action_id``)."""
        class_names = list(dataset.classes)
        for _rel, rec, _split in planned:
            class_names.extend(b.label for b in rec.boxes)
        skipped: list[str] = summary["skipped_paths"]
        with self._write() as conn:
            class_ids = {name: cid for cid, name in conn.execute("SELECT id, name FROM classes")}
            for name in class_names:
                if name not in class_ids:
                    class_ids[name] = self._add_class(conn, name)
                    summary["classes_added"].append(name)
            for (rel, rec, split), sha in zip(planned, hashes, strict=True):
                if conn.execute("SELECT 1 FROM images WHERE path = ?", (rel,)).fetchone():
                    summary["images_skipped"] += 1  # added by another connection meanwhile
                    skipped.append(rel)
                    continue
                state = _review_state(rec)
                image_id = self._add_image(conn, rel, sha, rec.width, rec.height, split, state)
                image = self._image(conn, image_id)
                regions = _unique_regions(rec)
                for xyxy in regions:
                    self._insert_ignore_region(conn, image, xyxy)
                for b in rec.boxes:
                    self._insert_box(
                        conn,
                        image,
                        b.xyxy(),
                        class_ids[b.label],
                        "accepted",
                        b.score,
                        "import",
                        None,
                    )
                summary["images_added"] += 1
                summary["boxes_added"] += len(rec.boxes)
                summary["annotated" if rec.annotated else "unannotated"] += 1
                summary["partial"] += state == "partial"
                summary["ignore_regions_added"] += len(regions)
            log_payload = {k: v for k, v in summary.items() if k != "skipped_paths"}
            summary["action_id"] = self._log(conn, "import", None, None, log_payload)


def _check_record(rec: ImageRecord, split: str) -> None:
    """Validate one image record (its split, size and boxes); raise :class:`StoreError`."""
    _check_choice(split, SPLITS, "split")
    if int(rec.width) <= 0 or int(rec.height) <= 0:
        raise StoreError(f"image size must be positive, got {rec.width}x{rec.height}")
    for j, b in enumerate(rec.boxes):
        _check_xyxy(b.xyxy(), rec.width, rec.height, f"box {j}")
        _check_score(b.score)
        if not isinstance(b.label, str) or not b.label.strip():
            raise StoreError(f"box {j} has no class label")
    for j, r in enumerate(rec.ignore_regions):
        _check_xyxy(r.xyxy(), rec.width, rec.height, f"ignore region {j}")


def _review_state(rec: ImageRecord) -> str:
    """``complete`` for an annotated image, ``partial`` when its reader skipped objects (their
    area is not background) or the source marks it partly reviewed, ``unseen`` for an
    unannotated one."""
    if not rec.annotated:
        return "unseen"
    return "partial" if rec.skipped_objects or rec.partial else "complete"


def _unique_regions(rec: ImageRecord) -> list[tuple[float, float, float, float]]:
    """The image's ignore regions as boxes, identical ones once (store regions have no class,
    so a region written once per class comes back as one), in first-seen order."""
    return list(dict.fromkeys(tuple(float(v) for v in r.xyxy()) for r in rec.ignore_regions))
