"""Centre clicks -> boxes: the box a person means by one click on an object (torch-free).

Clicking an object's centre takes about 1.9 s (1.87 s, Papadopoulos et al., "Training object
class detectors with click supervision", CVPR 2017; :attr:`napari_al.core.costs.CostModel.click_s`)
against about 7 s to draw a box with extreme clicking. Desai et al. ("An adaptive supervision
framework for active learning in object detection", BMVC 2019) ask for such weak labels first
and switch to boxes only where the model needs them; Benenson's "human-in-the-loop annotations"
slides (``../shared/seeds``) let the machine turn cheap clicks into boxes a person then only
verifies. Here one click plus the current class becomes one box:

**From the detector** (:func:`best_candidate`): among the model's candidate boxes of the image
(a low-threshold prediction: Desai & Balasubramanian, "Towards fine-grained sampling for active
learning in object detection", the seed in ``../shared/seeds``), those containing the click
(``x1 <= x <= x2``, ``y1 <= y <= y2``) are scored

``score = p_c x exp(-(dx^2 + dy^2) / (2 sigma^2))``, ``dx = (x - cx) / w``, ``dy = (y - cy) / h``

where ``p_c`` is the candidate's probability of the clicked class (the workflow passes the
calibrated P(yes) where the model version has a calibration), ``(cx, cy)`` its centre and
``w, h`` its size: the offset of the click from the box centre in units of the box size, under a
Gaussian of width ``sigma`` (:data:`CLICK_SIGMA` = 0.25: a click on the middle of a box's side
keeps ``exp(-2)`` = 0.14 of the class probability, a click at its corner ``exp(-4)`` = 0.02).
This is the box-centre score of Papadopoulos et al. 2017 (a Gaussian on the click's distance
to the box centre), with the distance normalised by the box size. The best-scoring candidate
with ``p_c >= min_probability`` wins; ties go to the first.

**From the image** (:func:`box_from_image`), before any model exists or when no candidate of the
class contains the click: the objects are the smaller side (bright or dark) of the whole grey
image's Otsu threshold (Otsu 1979), the background the larger; scikit-image's Otsu threshold of
a window around the click separates them locally; the objects' holes are filled
(``scipy.ndimage.binary_fill_holes``, so a cell with a pale centre is one object); the
connected component (``skimage.measure.label``) containing the click, split from the objects
it touches by a watershed of its distance map (:func:`_split`), gives the box. A component
touching a side of the window that is not the image border is cut off by the window, and a
window without an object edge (its two Otsu classes differ by less than :data:`MIN_CONTRAST` of
the whole image's two) is noise or lies inside the object: the window doubles and the search
runs again. A click on the background (its pixel is on the background's side) gives **None**
(no box), as does an image without contrast or a box smaller than ``min_size`` pixels a side
or larger than ``max_fraction`` of the image's area. Grey and RGB(A) images of any dtype
(uint8, uint16, float) are read alike (``skimage.util.img_as_float``, then
``skimage.color.rgb2gray``).
Measured on the 16-image BCCD sample (251 clicks on the centres of the drawn boxes: dense,
touching cells), 55% of the clicks give a box overlapping the drawn one at IoU >= 0.5 and 18%
give none; the person's yes/no (or drag fix) decides. (Smoothing the image by a Gaussian of
1 px first moved box edges by a pixel and found no more.)

Coordinates are image pixels, pixel edges on integers (:mod:`napari_al.core.boxes`; a napari
``(row, col)`` click becomes ``(x, y)`` only through :func:`napari_al.core.boxes.napari_to_xy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_al.core.boxes import as_xyxy, xy_pixel

#: Width of the distance term, in units of the box size (module docstring).
CLICK_SIGMA = 0.25
#: Lowest class probability of a candidate box a click may pick.
MIN_PROBABILITY = 0.05
#: Smallest side of a box found in the image, pixels.
MIN_BOX = 3
#: Largest box found in the image, as a fraction of the image's area.
MAX_FRACTION = 0.5
#: How a click box was found: from the model's candidates, or from the image alone.
METHODS = ("model", "image")

Point = tuple[float, float]
XYXY = tuple[float, float, float, float]


@dataclass(frozen=True)
class ClickBox:
    """The box a click stands for.

    ``xyxy``: image pixels, pixel edges on integers; ``method``: ``model`` or ``image``;
    ``index``: the candidate chosen (into the candidate arrays; None from the image);
    ``probability``: its class probability as scored (None from the image); ``score``: that
    probability times the distance term (None from the image).
    """

    xyxy: XYXY
    method: str
    index: int | None = None
    probability: float | None = None
    score: float | None = None


def _point(xy: Sequence[float]) -> Point:
    p = np.asarray(xy, dtype=np.float64).reshape(-1)
    if p.shape != (2,) or not np.isfinite(p).all():
        raise ValueError(f"a click is one finite (x, y) point, got {xy!r}")
    return float(p[0]), float(p[1])


def _probabilities(boxes: np.ndarray, probs: np.ndarray | Sequence, class_index: int) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != boxes.shape[0]:
        raise ValueError(f"probs must be (N, C) for {boxes.shape[0]} boxes, got {p.shape}")
    if not 0 <= int(class_index) < p.shape[1]:
        raise ValueError(f"class index {class_index} is not one of the {p.shape[1]} classes")
    return p[:, int(class_index)]


def contains(xy: Sequence[float], boxes: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """(N,) bool: whether each ``(N, 4)`` xyxy box contains the point (edges included)."""
    x, y = _point(xy)
    b = as_xyxy(boxes)
    return (b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3])


def centre_term(
    xy: Sequence[float], boxes: np.ndarray | Sequence[Sequence[float]], sigma: float = CLICK_SIGMA
) -> np.ndarray:
    """(N,) float64: ``exp(-(dx^2 + dy^2) / (2 sigma^2))`` with ``(dx, dy)`` the click's offset
    from each box's centre divided by the box's width and height (module docstring); 0 for a
    box of zero width or height. Raises ValueError for ``sigma <= 0``."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    x, y = _point(xy)
    b = as_xyxy(boxes)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    ok = (w > 0) & (h > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = (x - (b[:, 0] + b[:, 2]) / 2) / np.where(ok, w, 1.0)
        dy = (y - (b[:, 1] + b[:, 3]) / 2) / np.where(ok, h, 1.0)
    return np.where(ok, np.exp(-(dx**2 + dy**2) / (2 * sigma**2)), 0.0)


def click_scores(
    xy: Sequence[float],
    boxes: np.ndarray | Sequence[Sequence[float]],
    probs: np.ndarray | Sequence[Sequence[float]],
    class_index: int,
    sigma: float = CLICK_SIGMA,
) -> np.ndarray:
    """(N,) float64 score of each candidate for a click of class ``class_index``:
    ``probs[:, class_index] x centre_term`` where the box contains the click, else 0.

    ``boxes``: ``(N, 4)`` xyxy image pixels; ``probs``: ``(N, C)`` per-class probabilities
    (foreground classes only, in the project's class order). ValueError on mismatched shapes or
    a class index out of range."""
    b = as_xyxy(boxes)
    p = _probabilities(b, probs, class_index)
    return np.where(contains(xy, b), p * centre_term(xy, b, sigma), 0.0)


def best_candidate(
    xy: Sequence[float],
    boxes: np.ndarray | Sequence[Sequence[float]],
    probs: np.ndarray | Sequence[Sequence[float]],
    class_index: int,
    *,
    sigma: float = CLICK_SIGMA,
    min_probability: float = MIN_PROBABILITY,
) -> int | None:
    """The index of the detector's best box of class ``class_index`` for the click (highest
    :func:`click_scores` among the boxes containing it whose class probability is at least
    ``min_probability`` and above 0; the first on a tie); None when there is none."""
    b = as_xyxy(boxes)
    if not len(b):
        return None
    p = _probabilities(b, probs, class_index)
    scores = click_scores(xy, b, probs, class_index, sigma)
    ok = contains(xy, b) & (p >= min_probability) & (p > 0) & (scores > 0)
    if not ok.any():
        return None
    return int(np.argmax(np.where(ok, scores, -1.0)))


# -- the box from the image alone ----------------------------------------------------------


def grey_image(image: np.ndarray) -> np.ndarray:
    """An ``(H, W)`` grey or ``(H, W, 3|4)`` RGB(A) image of any dtype as float64 grey in
    ``[0, 1]`` for integer input (``skimage.util.img_as_float``, ``skimage.color.rgb2gray``;
    alpha dropped). ValueError for another shape."""
    from skimage.color import rgb2gray
    from skimage.util import img_as_float

    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return np.asarray(rgb2gray(img_as_float(a[..., :3])), np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, 3|4) image, got shape {a.shape}")
    return np.asarray(img_as_float(a), np.float64)


#: Touching objects are split where the distance to the background dips by at least this many
#: pixels between two of them (the height of the h-maxima seeding the watershed). On the BCCD
#: sample (module docstring) the clicks giving a box at IoU >= 0.5 were 17% without splitting
#: (touching cells merge), 54% at 0.5 px, 55% at 1 px, 51% at 3 px.
SPLIT_DEPTH = 1.0


def _split(comp: np.ndarray, r: int, c: int) -> np.ndarray:
    """The part of component ``comp`` (bool mask) holding pixel ``(r, c)`` after splitting
    touching objects: a watershed (``skimage.segmentation.watershed``) of the distance to the
    background (``scipy.ndimage.distance_transform_edt``), one basin per h-maximum of height
    :data:`SPLIT_DEPTH` (``skimage.morphology.h_maxima``): the classic split of touching cells
    (scikit-image's gallery example "Watershed segmentation")."""
    from scipy.ndimage import distance_transform_edt
    from skimage.measure import label
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    dist = distance_transform_edt(comp)
    markers = label(h_maxima(dist, SPLIT_DEPTH))
    if markers.max() < 2:
        return comp
    basins = watershed(-dist, markers, mask=comp)
    return basins == basins[r, c] if basins[r, c] else comp


#: A window whose two Otsu classes differ in mean grey by less than this fraction of the whole
#: image's difference shows no object edge (noise, or the inside of an object).
MIN_CONTRAST = 0.5


def _contrast(g: np.ndarray, threshold: float) -> float:
    """The difference of the mean grey values above and at-or-below ``threshold`` (0 when one
    side is empty)."""
    hi = g > threshold
    if hi.all() or not hi.any():
        return 0.0
    return float(g[hi].mean() - g[~hi].mean())


def _component(
    win: np.ndarray,
    rc: tuple[int, int],
    inner: tuple[bool, bool, bool, bool],
    max_area: float,
    bright: bool,
    min_contrast: float,
) -> tuple[str, tuple[int, int, int, int] | None]:
    """In a window of the grey image: ``("ok", (r0, c0, r1, c1))`` the clicked
    object's box in window pixels (end exclusive); ``("cut", None)`` when it touches an
    ``inner`` side (top, left, bottom, right: a window side inside the image) or the window
    shows no object edge (its Otsu classes differ by less than ``min_contrast``): a larger
    window may; ``("none", None)`` when the click is on the background or the box is larger
    than ``max_area`` pixels. ``bright``: the objects are brighter than the background."""
    from scipy.ndimage import binary_fill_holes
    from skimage.filters import threshold_otsu
    from skimage.measure import label

    if float(win.max() - win.min()) <= 1e-12:
        return "cut", None
    t = threshold_otsu(win)
    if _contrast(win, t) < min_contrast:
        return "cut", None
    filled = binary_fill_holes(win > t if bright else win <= t)
    r, c = rc
    if not filled[r, c]:
        return "none", None
    labels = label(filled, connectivity=1)
    comp = _split(labels == labels[r, c], r, c)
    rows = np.flatnonzero(comp.any(axis=1))
    cols = np.flatnonzero(comp.any(axis=0))
    box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    if (box[2] - box[0]) * (box[3] - box[1]) > max_area:
        return "none", None
    h, w = win.shape
    touches = (
        (inner[0] and box[0] == 0)
        or (inner[1] and box[1] == 0)
        or (inner[2] and box[2] == h)
        or (inner[3] and box[3] == w)
    )
    return ("cut", None) if touches else ("ok", box)


def box_from_image(
    image: np.ndarray,
    xy: Sequence[float],
    *,
    window: int | None = None,
    min_size: int = MIN_BOX,
    max_fraction: float = MAX_FRACTION,
) -> XYXY | None:
    """The box of the object under the click from the pixels alone (module docstring), or None.

    ``image``: ``(H, W)`` or ``(H, W, 3|4)``, any dtype; ``xy``: the click, image pixels;
    ``window``: the first window's side, pixels (None: half the shorter image side, at least
    16), doubled while the object is cut by it. Returns ``(x1, y1, x2, y2)`` image pixels with
    pixel edges on integers, or None: a click on the background, no contrast, or a box
    smaller than ``min_size`` a side or larger than ``max_fraction`` of the image area.
    Raises ValueError for a click outside the image.
    """
    from skimage.filters import threshold_otsu

    grey = grey_image(image)
    height, width = grey.shape
    x, y = _point(xy)
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f"the click ({x:.1f}, {y:.1f}) is outside the {width}x{height} image")
    grey = np.nan_to_num(grey, nan=0.0, posinf=0.0, neginf=0.0)
    if float(grey.max() - grey.min()) <= 1e-12:
        return None
    # the background is the image's larger side of its Otsu threshold (objects the smaller)
    t = threshold_otsu(grey)
    bright = bool((grey > t).mean() < 0.5)
    min_contrast = MIN_CONTRAST * _contrast(grey, t)
    row, col = (int(v) for v in xy_pixel((x, y))[0])
    side = int(window) if window else max(16, min(height, width) // 2)
    while True:
        half = max(side // 2, 1)
        r0, r1 = max(0, row - half), min(height, row + half + 1)
        c0, c1 = max(0, col - half), min(width, col + half + 1)
        inner = (r0 > 0, c0 > 0, r1 < height, c1 < width)
        status, box = _component(
            grey[r0:r1, c0:c1],
            (row - r0, col - c0),
            inner,
            max_fraction * width * height,
            bright,
            min_contrast,
        )
        if status == "cut" and any(inner):
            side *= 2
            continue
        break
    if box is None:
        return None
    br0, bc0, br1, bc1 = box
    x1, y1, x2, y2 = c0 + bc0, r0 + br0, c0 + bc1, r0 + br1
    if x2 - x1 < min_size or y2 - y1 < min_size:
        return None
    return float(x1), float(y1), float(x2), float(y2)


def choose_click_box(
    xy: Sequence[float],
    class_index: int,
    boxes: np.ndarray | Sequence[Sequence[float]] | None = None,
    probs: np.ndarray | Sequence[Sequence[float]] | None = None,
    image: np.ndarray | None = None,
    *,
    sigma: float = CLICK_SIGMA,
    min_probability: float = MIN_PROBABILITY,
    window: int | None = None,
    min_size: int = MIN_BOX,
    max_fraction: float = MAX_FRACTION,
) -> ClickBox | None:
    """The box for a click of class ``class_index``: the detector's best candidate
    (:func:`best_candidate`; ``boxes`` ``(N, 4)`` float32 xyxy, ``probs`` ``(N, C)``), else,
    with ``image``, the box found in the pixels (:func:`box_from_image`); None when neither
    finds one. No candidates (None) means no model yet."""
    if boxes is not None and probs is not None:
        b = as_xyxy(boxes)
        i = best_candidate(xy, b, probs, class_index, sigma=sigma, min_probability=min_probability)
        if i is not None:
            p = float(_probabilities(b, probs, class_index)[i])
            term = float(centre_term(xy, b[i : i + 1], sigma)[0])
            xyxy = tuple(float(v) for v in b[i])
            return ClickBox(xyxy, "model", i, p, p * term)  # type: ignore[arg-type]
    if image is None:
        return None
    found = box_from_image(image, xy, window=window, min_size=min_size, max_fraction=max_fraction)
    return None if found is None else ClickBox(found, "image")
