"""Summaries of a project store: counts for display, and the consistent training snapshot."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import numpy as np

from napari_al.core.boxes import centred_in
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
    _as_id,
    _check_choice,
)


class SummaryMixin(StoreBase):
    """Counts and training snapshots."""

    # -- summaries -----------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Counts for display and the CLI (JSON-ready).

        ``boxes`` and ``boxes_by_class`` count every box, the model's unreviewed predictions
        included; ``human_boxes`` (accepted, corrected, drawn), ``predicted_boxes`` and
        ``human_boxes_by_class`` tell the labels from the predictions. ``predictions_to_review``
        counts the predictions a person still has to review (:meth:`predictions_to_review`:
        not those in an area marked complete, which ``predicted_boxes`` still counts).
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
                "predictions_to_review": by_status["predicted"]
                - count(
                    "SELECT count(*) FROM boxes WHERE status = 'predicted' AND image_id IN"
                    " (SELECT id FROM images WHERE review_state = 'complete')"
                )
                - len(_in_regions(conn, None)),
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

    def predictions_to_review(self, image_id: int | None = None) -> list[BoxRow]:
        """The ``predicted`` boxes a person still has to review, in id order (optionally of
        one image): all but those centred in their image's reviewed area (the whole image
        once ``complete``, else its regions marked complete;
        :func:`~napari_al.core.boxes.centred_in`, the crop targets' rule of
        :mod:`napari_al.core.workflow.crops`). A person said every object there is labelled:
        prediction stores no box there (``in_reviewed_area``) and no box or question queue
        asks about one; one stored before the area was marked stays ``predicted`` until the
        next prediction replaces it, and is not to review. ``info``, the widget's count and
        the viewer's "next unreviewed box" read this."""
        one = None if image_id is None else _as_id(image_id, "image")
        where, args = ("", ()) if one is None else (" AND image_id = ?", (one,))
        with self._read() as conn:
            rows = [
                BoxRow(*r)
                for r in conn.execute(
                    f"SELECT {_BOX_COLS} FROM boxes WHERE status = 'predicted'{where} AND"
                    " image_id NOT IN (SELECT id FROM images WHERE review_state = 'complete')"
                    " ORDER BY id",
                    args,
                )
            ]
            done = _in_regions(conn, one)
        return [b for b in rows if b.id not in done]

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


def _in_regions(conn: sqlite3.Connection, image_id: int | None) -> set[int]:
    """The ids of the ``predicted`` boxes of images not ``complete`` (of one image, or all)
    whose centre lies in a region of their image marked complete
    (:func:`~napari_al.core.boxes.centred_in`). Reads only the boxes of images with a region."""
    where, args = "", ()
    if image_id is not None:
        where, args = " AND r.image_id = ?", (image_id,)
    regions: dict[int, list[tuple[float, float, float, float]]] = {}
    for i, *xyxy in conn.execute(
        "SELECT r.image_id, r.x1, r.y1, r.x2, r.y2 FROM reviewed_regions r JOIN images i"
        f" ON i.id = r.image_id WHERE i.review_state != 'complete'{where} ORDER BY r.id",
        args,
    ):
        regions.setdefault(int(i), []).append(tuple(xyxy))  # type: ignore[arg-type]
    done: set[int] = set()
    for i, area in regions.items():
        rows = conn.execute(
            "SELECT id, x1, y1, x2, y2 FROM boxes WHERE image_id = ? AND status = 'predicted'",
            (i,),
        ).fetchall()
        if rows:
            boxes = np.asarray([r[1:] for r in rows], np.float64)
            done.update(
                int(r[0]) for r, hit in zip(rows, centred_in(boxes, area), strict=True) if hit
            )
    return done
