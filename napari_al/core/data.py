"""Plain data records passed between formats, the store, the detector and the scorers.

They carry no behaviour beyond validation so that every module can depend on them without
depending on each other. Boxes are always torchvision-style ``[x1, y1, x2, y2]`` in image pixels,
pixel edges on integers (``0 <= x1 < x2 <= width``); see :mod:`napari_al.core.boxes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Splits an image can belong to. ``pool`` is the unlabeled pool active learning draws from.
SPLITS = ("pool", "train", "val", "test")

#: How far a person has reviewed an image.
REVIEW_STATES = ("unseen", "partial", "complete")

#: Box statuses. ``predicted``: a model proposal nobody has judged; ``accepted``/``corrected``/
#: ``drawn``: human labels; ``rejected``: explicit background; ``pseudo``: machine label used
#: for training with a damped loss.
BOX_STATUSES = ("predicted", "accepted", "rejected", "corrected", "drawn", "pseudo")

#: Source of a box proposed for a person's centre click (:mod:`napari_al.core.clicks`): status
#: ``pseudo`` (trained as a damped noisy label) until the person accepts, corrects or rejects it.
CLICK_SOURCE = "click"

#: Rich verification answers (:mod:`napari_al.core.answers`) that say an object is there but the
#: box is not its box: each is an action kind of its own, and the source of the judged box after
#: the answer (status ``rejected``; the log keeps its source before).
RICH_ANSWERS = ("part", "container", "several")

#: Source of the box proposed as the refinement of a box answered ``part`` or ``container``:
#: status ``pseudo`` (a damped noisy label) until the person answers yes/no on it.
REFINED_SOURCE = "refined"

#: Sources of boxes that mark an object even when rejected (a click, a refined box, a box
#: answered part/container/several): a rejected one is ignored in training, never background.
OBJECT_SOURCES = (CLICK_SOURCE, REFINED_SOURCE, *RICH_ANSWERS)

#: Source of a region a person answered "no" to "any more <class> here?"
#: (:mod:`napari_al.core.regions`): stored as a ``rejected`` box of that class and source,
#: known empty of the class; hidden in the viewer, background in training.
REGION_SOURCE = "region"

#: Statuses that count as human ground truth for training and evaluation.
HUMAN_STATUSES = ("accepted", "corrected", "drawn")

#: Detector architectures the engine builds (:func:`napari_al.core.engine.build_model`), the
#: default first. Kept here, torch-free, so that a front end checks a name without torch.
ARCHS = (
    "fasterrcnn_mobilenet_v2_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "ssdlite320_mobilenet_v3_large",
)
#: Environment variable naming the default device (``cpu``, ``cuda``, ``cuda:1``, ``mps``;
#: :func:`napari_al.core.engine.select_device`). Kept here, torch-free, as :data:`ARCHS`.
DEVICE_ENV = "NAPARI_AL_DEVICE"


@dataclass
class BoxRecord:
    """One box in image pixels with its class name (and a score for predictions)."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    score: float | None = None

    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


@dataclass(frozen=True)
class PixelCheck:
    """The outcome of checking that an image's pixels decode
    (:func:`~napari_al.core.images.check_pixels`), with the state of the file then
    (``signature``: :func:`~napari_al.core.pixel_checks.file_signature`, None when it could
    not be read). ``error``: why they do not decode (the message without the path), None when
    they do."""

    signature: str | None
    error: str | None


@dataclass
class ImageRecord:
    """One image of an imported dataset.

    ``path`` is absolute. ``annotated`` says whether the source carried annotations for it
    (an annotated image with no boxes is a reviewed negative; an unannotated one joins the pool).
    ``skipped_objects`` counts the objects of its annotation that a reader skipped (malformed,
    ``strict=False``): such an image is not completely annotated, so an importer must not
    treat its unlabelled area as background (import it partly reviewed).
    ``ignore_regions`` are areas neither positive nor background in training and ignored in
    evaluation (VOC ``difficult = 1``, COCO ``iscrowd = 1``, regions drawn in the GUI); their
    ``label`` is the class name, or ``""`` for a region of no particular class.
    ``partial`` says an annotated image was only partly reviewed (its boxes are human labels,
    but not every object has one: this package's export of a ``partial`` image, VOC
    ``<partial>1</partial>``, COCO ``"partial": true``); it is imported ``partial`` too.
    ``reviewed_regions`` are the rectangles of the image a person reviewed completely (every
    object in them is labelled; :mod:`napari_al.core.store.reviewed`), ``(x1, y1, x2, y2)``
    image pixels, pixel edges on integers as boxes (VOC ``<reviewed_region>``, COCO
    ``"reviewed_regions"``, napari-al's extensions); an image with some that is not complete
    is imported ``partial``, and they become its reviewed regions.
    ``pixel_check``: the reader's check that the file's pixels decode, when it made one (a
    note naming the images an import adds needs it); the import uses it while the file is
    unchanged instead of decoding the image again (:mod:`napari_al.core.pixel_checks`).
    """

    path: Path
    width: int
    height: int
    boxes: list[BoxRecord] = field(default_factory=list)
    split: str | None = None
    annotated: bool = False
    skipped_objects: int = 0
    ignore_regions: list[BoxRecord] = field(default_factory=list)
    partial: bool = False
    reviewed_regions: list[tuple[float, float, float, float]] = field(default_factory=list)
    pixel_check: PixelCheck | None = field(default=None, compare=False, repr=False)


class ImageNote(str):
    """A line of :attr:`Dataset.warnings` that names images an import would add (e.g. "10
    images ... have no annotation: imported into the pool"), written by a reader, which cannot
    know which images the project holds already. It is the text for ``images``; the import
    restates it for the images it does add (:func:`restated_warnings`), or drops it when it
    adds none of them. Make one with :meth:`of`; it pickles as plain text."""

    images: list[ImageRecord]
    render: Callable[[list[ImageRecord]], str | None]

    @classmethod
    def of(
        cls, render: Callable[[list[ImageRecord]], str | None], images: Iterable[ImageRecord]
    ) -> ImageNote | None:
        """The note ``render(images)`` (None when that is None: no image to name)."""
        images = list(images)
        text = render(images)
        if text is None:
            return None
        note = cls(text)
        note.images, note.render = images, render
        return note

    def restated(self, added: Callable[[ImageRecord], bool]) -> ImageNote | None:
        """The note for those of its images that ``added`` says the import added."""
        return ImageNote.of(self.render, [im for im in self.images if added(im)])

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (str, (str(self),))


def restated_warnings(lines: Iterable[str], added: Callable[[ImageRecord], bool]) -> list[str]:
    """``lines`` with each :class:`ImageNote` restated for the images ``added`` says an import
    added (left out when it added none of them); other lines as they are."""
    out: list[str] = []
    for line in lines:
        if isinstance(line, ImageNote):
            restated = line.restated(added)
            if restated is None:
                continue
            line = restated
        out.append(line)
    return out


@dataclass
class Dataset:
    """A dataset read from disk (VOC, COCO, YOLO or a plain image folder)."""

    classes: list[str]
    images: list[ImageRecord]
    source: str = ""
    #: Repairs applied while reading (e.g. a box clipped to the image), one line each.
    warnings: list[str] = field(default_factory=list)
    #: Image files the dataset names but that were skipped (unreadable, a size mismatch...),
    #: each reported in ``warnings``; absolute paths.
    skipped_images: list[Path] = field(default_factory=list)

    @property
    def n_boxes(self) -> int:
        return sum(len(im.boxes) for im in self.images)


@dataclass
class Predictions:
    """Everything the detector says about one image, from one forward pass.

    Shapes (N boxes, C foreground classes, D RoI feature size, E embedding size):

    - ``boxes``: ``(N, 4)`` float32 ``x1, y1, x2, y2`` in original image pixels;
    - ``labels``: ``(N,)`` int64, 0-based index into the project's class list;
    - ``scores``: ``(N,)`` float32, the probability of ``labels`` (``probs[i, labels[i] + 1]``);
    - ``probs``: ``(N, C + 1)`` float32 class distribution, column 0 is background; rows sum to 1;
    - ``features``: ``(N, D)`` float32 RoI feature of each box (for diversity);
    - ``embedding``: ``(E,)`` float32 pooled backbone embedding of the image;
    - ``proposals``: ``(N, 4)`` float32 RPN proposal each box was refined from, or ``None``
      for one-stage detectors.
    """

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    probs: np.ndarray
    features: np.ndarray
    embedding: np.ndarray
    proposals: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls, n_classes: int, feature_dim: int = 0, embedding_dim: int = 0) -> Predictions:
        """Predictions with no boxes, with correctly shaped empty arrays."""
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            labels=np.zeros((0,), np.int64),
            scores=np.zeros((0,), np.float32),
            probs=np.zeros((0, n_classes + 1), np.float32),
            features=np.zeros((0, feature_dim), np.float32),
            embedding=np.zeros((embedding_dim,), np.float32),
            proposals=None,
        )

    @classmethod
    def concat(cls, parts: list[Predictions], embedding: np.ndarray) -> Predictions:
        """The boxes of ``parts`` (at least one) in order, with ``embedding``; ``proposals``
        None unless every part has them."""
        proposals = [p.proposals for p in parts]
        return cls(
            boxes=np.concatenate([p.boxes for p in parts]).reshape(-1, 4),
            labels=np.concatenate([p.labels for p in parts]),
            scores=np.concatenate([p.scores for p in parts]),
            probs=np.concatenate([p.probs for p in parts]),
            features=np.concatenate([p.features for p in parts]),
            embedding=embedding,
            proposals=None if any(q is None for q in proposals) else np.concatenate(proposals),
        )

    def subset(self, index: np.ndarray) -> Predictions:
        """The predictions of the boxes selected by ``index`` (a mask or integer index)."""
        return Predictions(
            boxes=self.boxes[index],
            labels=self.labels[index],
            scores=self.scores[index],
            probs=self.probs[index],
            features=self.features[index],
            embedding=self.embedding,
            proposals=None if self.proposals is None else self.proposals[index],
        )


@dataclass
class ScoringViews:
    """The base predictions of one image plus the extra views some scorers need.

    The detector fills only the views a strategy asks for (each costs compute); scorers read
    them and never run the model themselves. All boxes are in original image pixels. Arrays
    indexed by box follow the order of ``base``.

    - ``mc_probs``: ``(T, N, C + 1)`` class distributions of the base boxes under T MC-dropout
      passes of the box head over cached RoI features;
    - ``ensemble_probs``: ``(M, N, C + 1)`` the base boxes re-classified by M checkpoints;
    - ``flipped``: predictions on the horizontally flipped image, boxes mapped back;
    - ``noisy``: predictions on Gaussian-noise copies of the image (Kao et al.);
    - ``candidates``: low-threshold candidate boxes (Desai et al.), a superset of ``base``.
    """

    base: Predictions
    mc_probs: np.ndarray | None = None
    ensemble_probs: np.ndarray | None = None
    flipped: Predictions | None = None
    noisy: list[Predictions] | None = None
    candidates: Predictions | None = None
