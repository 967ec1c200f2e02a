"""Summaries of a project store: counts for display, and the consistent training snapshot."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from napari_al.core.data import BOX_STATUSES, HUMAN_STATUSES, REVIEW_STATES, SPLITS
from napari_al.core.store.base import StoreBase
from napari_al.core.store.rows import (
    _BOX_COLS,
    _IGNORE_COLS,
    _IMAGE_COLS,
    _REVIEWED_COLS,
    BoxRow,
    ClassRow,
    IgnoreRegionRow,
    ImageRow,
    ReviewedRegionRow,
    SnapshotImage,
    TrainingSnapshot,
    _check_choice,
)


class SummaryMixin(StoreBase):
    """Counts and training snapshots."""

    # -- summaries -----------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Counts for display and the CLI (JSON-ready).

        ``boxes`` and ``boxes_by_class`` count every box, the model's unreviewed predictions
        included; ``human_boxes`` (accepted, corrected, drawn), ``predicted_boxes`` and
        ``human_boxes_by_class`` tell the labels from the predictions.
        """
        with self._read() as conn:

            def count(sql: str) -> int:
                return int(conn.execute(sql).fetchone()[0])

            classes = [r[0] for r in conn.execute("SELECT name FROM classes ORDER BY position, id")]
            by_status = dict.fromkeys(BOX_STATUSES, 0)
            by_status.update(conn.execute("SELECT status, count(*) FROM boxes GROUP BY status"))
            by_class = dict.fromkeys(classes, 0)
            by_class.update(
                conn.execute(
                    "SELECT c.name, count(*) FROM boxes b JOIN classes c ON c.id = b.class_id"
                    " GROUP BY c.name"
                )
            )
            human = ", ".join(f"'{s}'" for s in HUMAN_STATUSES)
            human_by_class = dict.fromkeys(classes, 0)
            human_by_class.update(
                conn.execute(
                    "SELECT c.name, count(*) FROM boxes b JOIN classes c ON c.id = b.class_id"
                    f" WHERE b.status IN ({human}) GROUP BY c.name"
                )
            )
            by_split = dict.fromkeys(SPLITS, 0)
            by_split.update(conn.execute("SELECT split, count(*) FROM images GROUP BY split"))
            by_review = dict.fromkeys(REVIEW_STATES, 0)
            by_review.update(
                conn.execute("SELECT review_state, count(*) FROM images GROUP BY review_state")
            )
            return {
                "project_dir": str(self.project_dir),
                "schema_version": int(conn.execute("PRAGMA user_version").fetchone()[0]),
                "images": count("SELECT count(*) FROM images"),
                "boxes": count("SELECT count(*) FROM boxes"),
                "human_boxes": sum(by_status[s] for s in HUMAN_STATUSES),
                "predicted_boxes": by_status["predicted"],
                "classes": classes,
                "boxes_by_status": by_status,
                "boxes_by_class": by_class,
                "human_boxes_by_class": human_by_class,
                "images_by_split": by_split,
                "images_by_review_state": by_review,
                "ignore_regions": count("SELECT count(*) FROM ignore_regions"),
                "reviewed_regions": count("SELECT count(*) FROM reviewed_regions"),
                "actions": count("SELECT count(*) FROM actions"),
                "model_versions": count("SELECT count(*) FROM model_versions"),
                "query_sets": count("SELECT count(*) FROM query_sets"),
                "annotation_seconds": float(
                    conn.execute("SELECT total(dt) FROM actions").fetchone()[0]
                ),
            }

    def check_files(self) -> dict[str, Any]:
        """Whether each image's file is still there and readable (JSON-ready):
        ``{"checked": n, "missing": [path, ...], "unreadable": [{"path", "reason"}, ...]}``,
        paths as stored, in image id order.

        What is checked: that the file exists, and that its header reads
        (:func:`~napari_al.core.images.image_size`: a known image type, a sane size, a
        compressed TIFF's first strip; :func:`~napari_al.core.images.check_tiff_extent`: a
        TIFF's strips or tiles all inside the file;
        :func:`~napari_al.core.ome_zarr.check_ome_zarr_chunks`: an OME-Zarr's chunk files,
        by their codecs' headers); the pixels are not decoded, so this costs about a
        millisecond per image. Another file truncated after its header (a JPEG, a PNG) is
        caught when an import checks the pixels, and reported by training and prediction when
        they read it.
        """
        from napari_al.core.images import ImageReadError, check_tiff_extent, image_size
        from napari_al.core.ome_zarr import check_ome_zarr_chunks

        rows = self.images()
        missing: list[str] = []
        unreadable: list[dict[str, str]] = []
        for row in rows:
            path = self.abs_path(row)
            if not path.exists():
                missing.append(row.path)
                continue
            try:
                image_size(path)
                check_tiff_extent(path)
                check_ome_zarr_chunks(path)  # every chunk file by its codec's headers
            except ImageReadError as exc:
                reason = str(exc).removeprefix(f"{path}: ")
                unreadable.append({"path": row.path, "reason": reason})
        return {"checked": len(rows), "missing": missing, "unreadable": unreadable}

    def training_snapshot(self, splits: Iterable[str] | None = None) -> TrainingSnapshot:
        """All images (optionally of some splits) with boxes, ignore regions and reviewed
        regions, read in ONE read transaction: a training run sees one consistent state while
        the GUI writes."""
        wanted = None if splits is None else {_check_choice(s, SPLITS, "split") for s in splits}
        with self._read() as conn:
            classes = tuple(
                ClassRow(*r)
                for r in conn.execute("SELECT id, name, position FROM classes ORDER BY position")
            )
            images = [
                ImageRow(*r) for r in conn.execute(f"SELECT {_IMAGE_COLS} FROM images ORDER BY id")
            ]
            boxes: dict[int, list[BoxRow]] = {}
            for r in conn.execute(f"SELECT {_BOX_COLS} FROM boxes ORDER BY image_id, id"):
                boxes.setdefault(r[1], []).append(BoxRow(*r))
            regions: dict[int, list[IgnoreRegionRow]] = {}
            for r in conn.execute(f"SELECT {_IGNORE_COLS} FROM ignore_regions ORDER BY id"):
                regions.setdefault(r[1], []).append(IgnoreRegionRow(*r))
            reviewed: dict[int, list[ReviewedRegionRow]] = {}
            for r in conn.execute(f"SELECT {_REVIEWED_COLS} FROM reviewed_regions ORDER BY id"):
                reviewed.setdefault(r[1], []).append(ReviewedRegionRow(*r))
            last = conn.execute("SELECT max(id) FROM actions").fetchone()[0]
        return TrainingSnapshot(
            classes=classes,
            images=tuple(
                SnapshotImage(
                    im,
                    tuple(boxes.get(im.id, ())),
                    tuple(regions.get(im.id, ())),
                    tuple(reviewed.get(im.id, ())),
                )
                for im in images
                if wanted is None or im.split in wanted
            ),
            last_action_id=last,
            taken=self._now(),
        )
