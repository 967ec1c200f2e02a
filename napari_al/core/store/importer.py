"""Importing a :class:`~napari_al.core.data.Dataset` into a project store, all or nothing."""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from napari_al.core.data import SPLITS, Dataset, ImageRecord, restated_warnings
from napari_al.core.names import control_problem, shown
from napari_al.core.pixel_checks import pixel_check
from napari_al.core.store.boxes import BoxesMixin
from napari_al.core.store.images import check_class_name
from napari_al.core.store.rows import (
    _IMAGE_COLS,
    ImageRow,
    StoreError,
    _check_choice,
    _check_score,
    _check_xyxy,
    file_sha256,
)

#: Why an image of a dataset was left out of an import (``summary["left_out"]``).
LEFT_OUT_REVIEWED = "already in the project with review work, which is kept"
LEFT_OUT_PRESENT = "already in the project"
LEFT_OUT_REPEATED = "listed twice in the dataset"
LEFT_OUT_CHANGED = "already in the project, but the file changed since it joined"
LEFT_OUT_SIZE = "already in the project with another size"
LEFT_OUT_RACE = "changed in the project by another window during the import"
LEFT_OUT_DUPLICATE = "with the same content as another image"
LEFT_OUT_UNREADABLE = "whose file cannot be decoded"
LEFT_OUT_NAME = "whose file name is not valid UTF-8 (rename the file, then import it again)"
LEFT_OUT_CONTROL = "whose path holds a control character (rename it, then import it again)"


@dataclass
class _Planned:
    """An image to import: its stored path, record and split; ``existing`` is the project's
    row when the record's labels go onto an image already in the project, still unreviewed."""

    rel: str
    rec: ImageRecord
    split: str
    existing: ImageRow | None = None


class ImportMixin(BoxesMixin):
    """Dataset import."""

    # -- import --------------------------------------------------------------------------

    def import_dataset(
        self,
        dataset: Dataset,
        progress: Callable[[int, int], None] | None = None,
        split_default: str = "pool",
        annotated_split_default: str = "train",
        allow_duplicates: bool = False,
    ) -> dict[str, Any]:
        """Import a dataset, all or nothing, in one transaction; returns a summary dict.

        - A new image with ``annotated=True`` becomes ``complete`` with its boxes ``accepted``
          (source ``import``) and its ignore regions; ``partial`` instead when the reader
          skipped some of its objects (``ImageRecord.skipped_objects``: its unlabelled area is
          not known to be background), or when the source marks it partly reviewed
          (``ImageRecord.partial``); the summary counts these images in ``partial``. Ignore
          regions are stored without class, identical boxes merged (a region of no class comes
          back once per class from a VOC/COCO export); counted in ``ignore_regions_added``.
          An annotated image without a split goes to
          ``annotated_split_default`` (``train``).
        - A new unannotated image becomes ``unseen``, in its split or ``split_default``
          (``pool``).
        - The record's reviewed regions (``ImageRecord.reviewed_regions``) become the image's
          reviewed regions, clipped to it, one equal to a region it has already not stored
          twice (none is ever deleted); counted in ``reviewed_regions_added``. An image with
          reviewed regions is ``partial`` unless its record is complete (annotated, not
          partly reviewed, nothing skipped); one that is not annotated counts as annotated.
        - An image already in the project that nobody has reviewed yet (``unseen``, no box but
          the model's ``predicted`` ones, no ignore region, no reviewed region) takes the
          labels of an annotated record as a new image would (its ``predicted`` boxes are
          removed, their ids logged); it moves to the record's split, or from ``pool`` to
          ``annotated_split_default``.
          This is how the labels of a folder first opened as plain images arrive later.
        - Every other image already in the project is left untouched (its boxes, split and
          review state are human work; nothing is overwritten), as are repeated paths. Each
          is listed in ``summary["left_out"]`` as ``{"path", "reason", "boxes"}`` (``boxes``:
          the record's boxes not imported), reasons the ``LEFT_OUT_*`` constants.
        - A new image whose file content (SHA-256) is that of an image already in the project
          or earlier in the dataset, under another path, is left out
          (``LEFT_OUT_DUPLICATE``, ``detail`` ``"same content as <path>..."``): a copy in two
          splits would be trained on and evaluated on, or asked about twice.
          ``allow_duplicates=True`` imports it anyway.
        - An image whose stored path holds a control character (a line break: no line-based
          list or one-line message could name it; :mod:`napari_al.core.names`) is left out
          (``LEFT_OUT_CONTROL``, ``path`` escaped as :func:`~napari_al.core.names.shown`
          writes it, ``detail`` the character and the fix: rename it), as is one whose name
          is not valid UTF-8 (``LEFT_OUT_NAME``). A class name holding one is refused
          (:class:`StoreError`, nothing imported).
        - An image whose pixel data cannot be decoded (truncated, corrupt, missing; checked
          cheaply by :func:`~napari_al.core.images.check_pixels`, once: a reader's check of
          the unchanged file, ``ImageRecord.pixel_check``, is used) is left out
          (``LEFT_OUT_UNREADABLE``, ``detail`` the reader's message, without the path).
        - Classes are added as needed, in ``dataset.classes`` order then first use.
        - One ``import`` action is logged.

        Summary keys: ``images_added``, ``images_labelled`` (already there, labels added),
        ``boxes_added``, ``ignore_regions_added``, ``reviewed_regions_added``, ``annotated``,
        ``unannotated``, ``partial``, ``lost_objects`` (images of ``partial`` whose reader
        skipped objects), ``classes_added``, ``images_skipped`` and ``skipped_paths`` (the images
        left out), ``left_out``, ``warnings`` (the reader's; a note naming images the import
        adds, :class:`~napari_al.core.data.ImageNote` such as "10 images ... imported into the
        pool", names only those it did add, and is dropped when it added none: not those
        already in the project), ``action_id``.

        Everything is validated, every file checked and hashed (streamed) before the write
        transaction, which then holds the write lock only briefly. ``progress(done, total)``
        follows the files; raising from it cancels the import with nothing written.
        """
        _check_choice(split_default, SPLITS, "split")
        _check_choice(annotated_split_default, SPLITS, "split")
        _check_class_names(dataset)
        planned, left_out = self._plan_import(dataset, split_default, annotated_split_default)
        checked = self._read_planned(planned, progress)
        summary: dict[str, Any] = {
            "source": dataset.source,
            "images_added": 0,
            "images_labelled": 0,
            "images_skipped": 0,
            "boxes_added": 0,
            "ignore_regions_added": 0,
            "annotated": 0,
            "unannotated": 0,
            "partial": 0,
            "lost_objects": 0,
            "reviewed_regions_added": 0,
            "classes_added": [],
            "skipped_paths": [],
            "left_out": [],
            "warnings": list(dataset.warnings),
        }
        for rel, rec, reason, detail in left_out:
            _leave_out(summary, rel, rec, reason, detail)
        planned, hashes = self._drop_unusable(planned, checked, summary, allow_duplicates)
        self._write_import(dataset, planned, hashes, summary)
        return summary

    def _plan_import(
        self, dataset: Dataset, split_default: str, annotated_split_default: str
    ) -> tuple[list[_Planned], list[tuple[str, ImageRecord, str, str | None]]]:
        """Validate every image and box before anything is written.

        Returns the images to write (new ones, and unreviewed ones of the project that take
        an annotated record's labels) and those left out as ``(stored path as shown, record,
        reason, detail or None)``.
        Raises :class:`StoreError` naming the first bad image; nothing is written then.
        """
        with self._read() as conn:
            existing = {r.path: r for r in (ImageRow(*t) for t in _image_rows(conn))}
            reviewed = _reviewed_image_ids(conn)
        planned: list[_Planned] = []
        left_out: list[tuple[str, ImageRecord, str, str | None]] = []
        seen: set[str] = set()
        for index, rec in enumerate(dataset.images):
            rel = self.rel_path(rec.path)
            if not is_utf8(rel):  # the store (SQLite, JSON) holds text: such a name cannot go in
                left_out.append((printable(rel), rec, LEFT_OUT_NAME, None))
                continue
            problem = control_problem(rel)
            if problem:  # a line break would split every list file and one-line message
                left_out.append((shown(rel), rec, LEFT_OUT_CONTROL, _control_detail(problem)))
                continue
            row = existing.get(rel)
            if rel in seen:
                left_out.append((rel, rec, LEFT_OUT_REPEATED, None))
                continue
            seen.add(rel)
            if row is not None and not (_labelled(rec) and row.id not in reviewed):
                reason = LEFT_OUT_REVIEWED if _labelled(rec) else LEFT_OUT_PRESENT
                left_out.append((rel, rec, reason, None))
                continue
            if row is not None and (int(rec.width), int(rec.height)) != (row.width, row.height):
                left_out.append((rel, rec, LEFT_OUT_SIZE, None))
                continue
            if rec.split is not None:
                split = rec.split
            elif row is not None:
                split = annotated_split_default if row.split == "pool" else row.split
            else:
                split = annotated_split_default if _labelled(rec) else split_default
            try:
                _check_record(rec, split)
            except StoreError as exc:
                where = f"image {index} ({rec.path})"
                raise StoreError(f"{where}: {exc}; nothing was imported") from None
            planned.append(_Planned(rel, rec, split, row))
        return planned, left_out

    def _read_planned(
        self, planned: list[_Planned], progress: Callable[[int, int], None] | None
    ) -> list[tuple[str | None, str | None]]:
        """Per planned file ``(sha256, None)``, or ``(None, why)`` when its pixels cannot be
        decoded (:func:`~napari_al.core.pixel_checks.pixel_check`; ``why`` without the path),
        reporting ``progress(done, total)``. A reader's check of the same file, unchanged since
        (``ImageRecord.pixel_check``), is used instead of decoding it again."""
        total = len(planned)
        checked: list[tuple[str | None, str | None]] = []
        if progress is not None:
            progress(0, total)
        for done, item in enumerate(planned, start=1):
            path = self.abs_path(item.rel)
            error = pixel_check(path, item.rec.pixel_check).error
            checked.append((None, error) if error is not None else (file_sha256(path), None))
            if progress is not None:
                progress(done, total)
        return checked

    def _drop_unusable(
        self,
        planned: list[_Planned],
        checked: list[tuple[str | None, str | None]],
        summary: dict[str, Any],
        allow_duplicates: bool,
    ) -> tuple[list[_Planned], list[str]]:
        """Leave out the undecodable files and (unless ``allow_duplicates``) the new images
        whose content is already in the project or earlier in the import; returns the images
        to write and their hashes."""
        with self._read() as conn:
            owner: dict[str, str] = {}
            for path, sha in conn.execute("SELECT path, sha256 FROM images ORDER BY id"):
                owner.setdefault(sha, path)
        earlier: dict[str, str] = {}
        keep: list[_Planned] = []
        hashes: list[str] = []
        for item, (sha, error) in zip(planned, checked, strict=True):
            if sha is None:
                _leave_out(summary, item.rel, item.rec, LEFT_OUT_UNREADABLE, error)
                continue
            if item.existing is None and not allow_duplicates:
                detail = None
                if sha in owner:
                    detail = f"same content as {owner[sha]}, already in the project"
                elif sha in earlier:
                    detail = f"same content as {earlier[sha]}, earlier in this import"
                if detail is not None:
                    _leave_out(summary, item.rel, item.rec, LEFT_OUT_DUPLICATE, detail)
                    continue
            earlier.setdefault(sha, item.rel)
            keep.append(item)
            hashes.append(sha)
        return keep, hashes

    def _write_import(
        self,
        dataset: Dataset,
        planned: list[_Planned],
        hashes: list[str],
        summary: dict[str, Any],
    ) -> None:
        """Write the planned images, their boxes, ignore regions and new classes in ONE
        transaction; log ``import``. Updates ``summary`` in place (adds ``action_id``)."""
        class_names = list(dataset.classes)
        for item in planned:
            class_names.extend(b.label for b in item.rec.boxes)
        removed: dict[int, list[int]] = {}
        added: set[int] = set()  # the records of the images added (by identity)
        with self._write() as conn:
            reviewed = _reviewed_image_ids(conn) if any(p.existing for p in planned) else set()
            class_ids = {name: cid for cid, name in conn.execute("SELECT id, name FROM classes")}
            for name in class_names:
                if name not in class_ids:
                    class_ids[name] = self._add_class(conn, name)
                    summary["classes_added"].append(name)
            for item, sha in zip(planned, hashes, strict=True):
                image_id = self._write_planned(conn, item, sha, summary, removed, reviewed)
                if image_id is None:
                    continue
                if item.existing is None:
                    added.add(id(item.rec))
                image = self._image(conn, image_id)
                rec = item.rec
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
                regions = _unique_regions(rec)
                for xyxy in regions:
                    self._insert_ignore_region(conn, image, xyxy)
                summary["reviewed_regions_added"] += self._insert_reviewed_regions(conn, image, rec)
                summary["boxes_added"] += len(rec.boxes)
                summary["ignore_regions_added"] += len(regions)
                summary["annotated" if _labelled(rec) else "unannotated"] += 1
                summary["partial"] += int(_review_state(rec) == "partial")
                summary["lost_objects"] += int(rec.annotated and rec.skipped_objects > 0)
            summary["warnings"] = restated_warnings(
                summary["warnings"], lambda rec: id(rec) in added
            )
            log_payload = {
                k: v for k, v in summary.items() if k not in ("skipped_paths", "left_out")
            }
            log_payload["left_out_reasons"] = _count_reasons(summary["left_out"])
            if removed:
                log_payload["predictions_removed"] = {str(k): v for k, v in removed.items()}
            summary["action_id"] = self._log(conn, "import", None, None, log_payload)

    def _insert_reviewed_regions(
        self, conn: sqlite3.Connection, image: ImageRow, rec: ImageRecord
    ) -> int:
        """Store the record's reviewed regions (image pixels, xyxy) on ``image``, clipped to
        it; one equal to a region the image has already (or to an earlier one of the record)
        is not stored twice, and none is ever deleted. Returns how many were added."""
        have = {
            tuple(r)
            for r in conn.execute(
                "SELECT x1, y1, x2, y2 FROM reviewed_regions WHERE image_id = ?", (image.id,)
            )
        }
        added = 0
        for xyxy in rec.reviewed_regions:
            region = _clip_region(xyxy, image.width, image.height)
            if region in have:
                continue
            have.add(region)
            conn.execute(
                "INSERT INTO reviewed_regions (image_id, x1, y1, x2, y2, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (image.id, *region, self._now()),
            )
            added += 1
        return added

    def _write_planned(
        self,
        conn: sqlite3.Connection,
        item: _Planned,
        sha: str,
        summary: dict[str, Any],
        removed: dict[int, list[int]],
        reviewed: set[int],
    ) -> int | None:
        """Add a new image, or label an unreviewed one, inside the import's transaction;
        returns its id, or None when it is left out after all (changed meanwhile).
        ``reviewed``: the images with review work when the transaction began."""
        rec = item.rec
        state = _review_state(rec)
        row = conn.execute(f"SELECT {_IMAGE_COLS} FROM images WHERE path = ?", (item.rel,))
        now = row.fetchone()
        if item.existing is None:
            if now is not None:  # added by another connection meanwhile
                _leave_out(summary, item.rel, rec, LEFT_OUT_RACE)
                return None
            summary["images_added"] += 1
            return self._add_image(conn, item.rel, sha, rec.width, rec.height, item.split, state)
        if now is None or ImageRow(*now) != item.existing or now[0] in reviewed:
            _leave_out(summary, item.rel, rec, LEFT_OUT_RACE)
            return None
        if sha != item.existing.sha256:
            _leave_out(summary, item.rel, rec, LEFT_OUT_CHANGED)
            return None
        image_id = item.existing.id
        ids = [r[0] for r in conn.execute("SELECT id FROM boxes WHERE image_id = ?", (image_id,))]
        if ids:  # only predicted boxes (an unreviewed image): the labels replace them
            conn.execute("DELETE FROM boxes WHERE image_id = ?", (image_id,))
            removed[image_id] = ids
        conn.execute(
            "UPDATE images SET split = ?, review_state = ? WHERE id = ?",
            (item.split, state, image_id),
        )
        summary["images_labelled"] += 1
        return image_id


def _image_rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(f"SELECT {_IMAGE_COLS} FROM images").fetchall()


def _reviewed_image_ids(conn: sqlite3.Connection) -> set[int]:
    """Images with review work: not ``unseen``, or any box but a ``predicted`` one, or an
    ignore region, or a reviewed region."""
    sql = (
        "SELECT id FROM images WHERE review_state != 'unseen'"
        " UNION SELECT image_id FROM boxes WHERE status != 'predicted'"
        " UNION SELECT image_id FROM ignore_regions"
        " UNION SELECT image_id FROM reviewed_regions"
    )
    return {int(r[0]) for r in conn.execute(sql)}


def is_utf8(name: str) -> bool:
    """Whether ``name`` is text UTF-8 can hold: a file name that is not valid UTF-8 comes from
    the operating system with surrogate escapes (``os.fsdecode``), which SQLite, JSON and
    printing refuse."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(name: str) -> str:
    """``name`` with the bytes that are not UTF-8 shown as ``\\xNN`` (for messages)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _leave_out(
    summary: dict[str, Any], rel: str, rec: ImageRecord, reason: str, detail: str | None = None
) -> None:
    """Record an image left out of the import, and why (``detail``: what is particular to this
    image, e.g. which image it duplicates)."""
    summary["images_skipped"] += 1
    summary["skipped_paths"].append(rel)
    item: dict[str, Any] = {"path": rel, "reason": reason, "boxes": len(rec.boxes)}
    if detail is not None:
        item["detail"] = detail
    summary["left_out"].append(item)


def _check_class_names(dataset: Dataset) -> None:
    """:class:`StoreError` naming the first class name of ``dataset`` (its class list, its
    boxes' labels) that the store refuses (:func:`check_class_name`); nothing is imported."""
    names = [*dataset.classes, *(b.label for rec in dataset.images for b in rec.boxes)]
    for name in dict.fromkeys(names):
        try:
            check_class_name(name)
        except StoreError as exc:
            raise StoreError(f"{exc} (in the dataset); nothing was imported") from None


def _control_detail(problem: str) -> str:
    """Why an image whose stored path holds ``problem`` (:func:`control_problem`) is left
    out, and the fix."""
    return (
        f"its path holds {problem}, which line-based files (VOC's ImageSets lists, YOLO's "
        "image lists) and one-line messages cannot hold; rename the file (or its folder), "
        "then import it again"
    )


def _count_reasons(left_out: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in left_out:
        counts[item["reason"]] = counts.get(item["reason"], 0) + 1
    return counts


def _check_record(rec: ImageRecord, split: str) -> None:
    """Validate one image record (its split, size, boxes and ignore regions); raise
    :class:`StoreError`."""
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
    for j, xyxy in enumerate(rec.reviewed_regions):
        _clip_region(xyxy, int(rec.width), int(rec.height), f"reviewed region {j}")


def _clip_region(
    xyxy: tuple[float, float, float, float] | list[float],
    width: int,
    height: int,
    what: str = "reviewed region",
) -> tuple[float, float, float, float]:
    """A reviewed region (``x1, y1, x2, y2`` image pixels) clipped to the ``width`` x
    ``height`` image; :class:`StoreError` when it is not 4 finite numbers or nothing of it
    is left inside the image."""
    try:
        x1, y1, x2, y2 = (float(v) for v in xyxy)
    except (TypeError, ValueError):
        raise StoreError(f"{what} must be 4 numbers x1, y1, x2, y2, got {xyxy!r}") from None
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if not all(math.isfinite(v) for v in clipped) or not (
        clipped[0] < clipped[2] and clipped[1] < clipped[3]
    ):
        raise StoreError(
            f"{what} {[x1, y1, x2, y2]} is empty or outside the {width}x{height} image"
        )
    return clipped


def _labelled(rec: ImageRecord) -> bool:
    """Whether the record carries review work: annotations, or reviewed regions (a region
    reviewed completely says what is in it even without ``annotated``)."""
    return rec.annotated or bool(rec.reviewed_regions)


def _review_state(rec: ImageRecord) -> str:
    """``complete`` for an annotated image, ``partial`` when its reader skipped objects (their
    area is not background) or the source marks it partly reviewed, ``unseen`` for an
    unannotated one; an unannotated one with reviewed regions is ``partial``."""
    if not rec.annotated:
        return "partial" if rec.reviewed_regions else "unseen"
    return "partial" if rec.skipped_objects or rec.partial else "complete"


def _unique_regions(rec: ImageRecord) -> list[tuple[float, float, float, float]]:
    """The image's ignore regions as boxes, identical ones once (store regions have no class,
    so a region written once per class comes back as one), in first-seen order."""
    return list(dict.fromkeys(tuple(float(v) for v in r.xyxy()) for r in rec.ignore_regions))
