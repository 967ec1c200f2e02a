"""Row dataclasses of the store, its error type, and the validation helpers every part shares.

Boxes are in image pixels, ``(x1, y1, x2, y2)`` with pixel edges on integers and
``0 <= x1 < x2 <= width``, ``0 <= y1 < y2 <= height``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from napari_al.core.data import HUMAN_STATUSES

#: Box coordinates may stray this far (pixels) outside the image; they are clamped to it.
#: Beyond it a box is refused. Half a pixel absorbs centre/edge rounding in viewers.
BOX_TOLERANCE_PX = 0.5


class StoreError(Exception):
    """A store operation failed for a reason the user can act on (bad id, bad value, bad file)."""


@dataclass(frozen=True)
class ClassRow:
    """One object class; ``position`` orders the class list (the detector's label index)."""

    id: int
    name: str
    position: int


@dataclass(frozen=True)
class ImageRow:
    """One image; ``path`` is relative to the project dir (may hold ``..``) or absolute."""

    id: int
    path: str
    sha256: str
    width: int
    height: int
    split: str
    review_state: str
    added: float


@dataclass(frozen=True)
class BoxRow:
    """One box in image pixels, ``x1 < x2``, ``y1 < y2``."""

    id: int
    image_id: int
    x1: float
    y1: float
    x2: float
    y2: float
    class_id: int
    score: float | None
    status: str
    source: str
    model_version: int | None
    created: float
    updated: float

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    def to_dict(self) -> dict[str, Any]:
        """The box as a JSON-ready dict (the form the action log stores)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RectRow:
    """A rectangle of one image: ``x1, y1, x2, y2`` image pixels, as boxes."""

    id: int
    image_id: int
    x1: float
    y1: float
    x2: float
    y2: float
    created: float

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


@dataclass(frozen=True)
class IgnoreRegionRow(RectRow):
    """A region of an image excluded from training and evaluation."""


@dataclass(frozen=True)
class ReviewedRegionRow(RectRow):
    """A region of an image a person reviewed completely (every object in it is labelled):
    ``x1, y1, x2, y2`` image pixels, as boxes. Training of a large image samples its crops from
    these (:mod:`napari_al.core.workflow.crops`)."""

    def to_dict(self) -> dict[str, Any]:
        """The region as a JSON-ready dict (the form the action log stores)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ActionRow:
    """One entry of the append-only action log.

    ``dt``: seconds since the previous human action (NULL for the first one, after an idle gap
    and for machine actions). ``ref_id``: the action an ``undo``/``redo`` refers to.
    """

    id: int
    time: float
    kind: str
    image_id: int | None
    box_id: int | None
    ref_id: int | None
    payload: dict[str, Any]
    dt: float | None


@dataclass(frozen=True)
class ModelVersionRow:
    """A trained checkpoint; ``path`` stored like image paths (project-relative when possible)."""

    id: int
    path: str
    arch: str
    metrics: dict[str, Any]
    created: float
    note: str


@dataclass(frozen=True)
class SnapshotImage:
    """One image of a :class:`TrainingSnapshot` with its boxes, ignore regions and reviewed
    (complete) regions."""

    image: ImageRow
    boxes: tuple[BoxRow, ...]
    ignore_regions: tuple[IgnoreRegionRow, ...]
    reviewed_regions: tuple[ReviewedRegionRow, ...] = ()

    def boxes_with_status(self, statuses: Iterable[str] = HUMAN_STATUSES) -> list[BoxRow]:
        """The boxes whose status is in ``statuses`` (default: the human labels)."""
        wanted = set(statuses)
        return [b for b in self.boxes if b.status in wanted]


@dataclass(frozen=True)
class TrainingSnapshot:
    """Labels read in one read transaction: consistent even while the GUI keeps writing."""

    classes: tuple[ClassRow, ...]
    images: tuple[SnapshotImage, ...]
    last_action_id: int | None
    taken: float


@dataclass(frozen=True)
class StoredQuery:
    """One item of a stored ranking, as saved from a
    :class:`~napari_al.core.selection.QueryItem`.

    ``rank``: 0-based position in the ranking (most informative first); ``image_id``: the
    image; ``unit``: ``image``, ``box`` or ``region``; ``score``: its informativeness;
    ``box``: the box or region ``(x1, y1, x2, y2)`` in image pixels, None for a whole image;
    ``box_index``: the box's index in the image's base predictions (box unit), else None;
    ``breakdown``: the per-scorer scores behind ``score``. ``image`` and ``index`` name the
    same values as on a ``QueryItem``, so a stored query reads like one.
    """

    rank: int
    image_id: int
    unit: str
    score: float
    box: tuple[float, float, float, float] | None
    box_index: int | None
    breakdown: dict[str, Any]

    @property
    def image(self) -> int:
        return self.image_id

    @property
    def index(self) -> int | None:
        return self.box_index


@dataclass(frozen=True)
class StoredQuerySet:
    """A stored ranking: its items in rank order and how it was made.

    ``created``: Unix seconds; ``model_version``: the model that scored it (None: not a
    registered version); ``settings``: the query settings as given (a JSON round trip: tuples
    come back as lists); ``strategy``: ``settings["strategy"]`` when it is a string, else
    ``""``; ``unit``: the items' unit (``mixed`` for several, ``settings["unit"]`` or ``""``
    for no items).
    """

    id: int
    created: float
    model_version: int | None
    settings: dict[str, Any]
    items: tuple[StoredQuery, ...]
    strategy: str = ""
    unit: str = ""


_IMAGE_COLS = "id, path, sha256, width, height, split, review_state, added"
_BOX_COLS = (
    "id, image_id, x1, y1, x2, y2, class_id, score, status, source, model_version, created, updated"
)
_IGNORE_COLS = "id, image_id, x1, y1, x2, y2, created"
_REVIEWED_COLS = "id, image_id, x1, y1, x2, y2, created"
_ACTION_COLS = "id, time, kind, image_id, box_id, ref_id, payload, dt"
_MODEL_COLS = "id, path, arch, metrics, created, note"


def _action_row(r: Sequence[Any]) -> ActionRow:
    return ActionRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7])


def _model_row(r: Sequence[Any]) -> ModelVersionRow:
    return ModelVersionRow(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5])


def _as_id(value: Any, what: str) -> int:
    """An integer row id (numpy integers welcome: sqlite3 cannot bind them)."""
    if isinstance(value, bool):
        raise StoreError(f"{what} id must be an integer, got {value!r}")
    try:
        as_int = int(value)
    except (TypeError, ValueError):
        raise StoreError(f"{what} id must be an integer, got {value!r}") from None
    if as_int != value:
        raise StoreError(f"{what} id must be an integer, got {value!r}")
    return as_int


def _opt_id(value: Any, what: str) -> int | None:
    return None if value is None else _as_id(value, what)


def _json_default(obj: Any) -> Any:
    """JSON for numpy scalars and arrays (``.item()`` / ``.tolist()``) and paths."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default)


def _check_choice(value: str, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise StoreError(f"unknown {what} {value!r} (expected one of {', '.join(choices)})")
    return value


def _check_xyxy(
    xyxy: Iterable[float], width: int, height: int, what: str = "box"
) -> tuple[float, float, float, float]:
    """Validate a box against its image; clamp coordinates within the tolerance."""
    try:
        values = [float(v) for v in xyxy]
    except (TypeError, ValueError):
        raise StoreError(f"{what} must be 4 numbers x1, y1, x2, y2, got {xyxy!r}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise StoreError(f"{what} must be 4 finite numbers x1, y1, x2, y2, got {values!r}")
    x1, y1, x2, y2 = values
    tol = BOX_TOLERANCE_PX
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise StoreError(f"{what} {values} lies outside the {width}x{height} image")
    x1, x2 = max(0.0, x1), min(float(width), x2)
    y1, y2 = max(0.0, y1), min(float(height), y2)
    if not (x1 < x2 and y1 < y2):
        raise StoreError(f"{what} {values} is empty (need x1 < x2 and y1 < y2)")
    return (x1, y1, x2, y2)


def _check_score(score: float | None) -> float | None:
    if score is None:
        return None
    value = float(score)
    if not math.isfinite(value):
        raise StoreError(f"score must be finite, got {score!r}")
    return value


def file_sha256(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """:func:`napari_al.core.images.file_sha256` (a file read in chunks; an OME-Zarr directory
    by its metadata and coarsest level), its failures as :class:`StoreError`."""
    from napari_al.core.images import ImageReadError
    from napari_al.core.images import file_sha256 as sha256

    try:
        return sha256(path, chunk_size)
    except ImageReadError as exc:
        raise StoreError(str(exc)) from exc
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
