"""The dialog planner's questions and their value: which question is worth a person's seconds
next (issue 13, item 5; torch-free, Qt-free, numpy only).

Benenson's "annotation dialogs" (the "Human-in-the-loop annotations" slides, ``../shared/seeds``:
"the machine asks what it needs"; "this region is unclear: label the objects in it", "expensive
to annotate but very informative", "easy to annotate, but its content is already understood")
choose, candidate by candidate, among question types by what an answer teaches and what it
costs. Here there are three types (:data:`KINDS`):

- ``verify``: "is this <class> box right?" about one model box shown to the person (a stored
  prediction, or a proposed click/refined box awaiting yes/no) that the calibrated rule shows
  (``P(yes) x draw_s > verify_s``, :class:`~napari_al.core.workflow.VerifyRule`). The answer
  is yes / no, or a rich answer (part, container, several, wrong class;
  :mod:`~napari_al.core.answers`).
- ``region``: "any more <class> here?" about a region where the missed-object estimate expects
  objects no box covers (:mod:`~napari_al.core.regions`); a yes is followed by labelling them.
- ``draw``: "label what is still missing in this image, then mark it complete", asked about an
  image only once the model offers nothing more worth asking there (no verify or region question
  of the image is left).

**The value rule.** For each question::

    value = (gain x P(change) + saving_weight x E[seconds saved] / draw_s) / seconds

- ``gain`` in [0, 1]: what the label teaches, from the existing scorers: a box's value under the
  query strategy (entropy, consistency, MC-dropout mutual information, ...) and an image's
  (its aggregated score, or the missed-object estimate), min-max normalised over the planned
  pool (:func:`normalise`); where no scorer value exists (no model pass, a box proposed after
  it), the binary entropy of the answer's own probability, in bits (:func:`binary_entropy`:
  the expected information of a yes/no answer whose calibrated probability is p).
- ``P(change)``: the probability that the answer changes a label, i.e. that training learns
  something other than what it assumes without the answer. For a shown model box, training
  assumes the box is right (an unverified prediction trains as a noisy positive on a partly
  reviewed image, Desai et al. 2019; a self-training pseudo label): every answer but yes changes
  it, ``P(change) = 1 - P(yes)``. For a region, training assumes no object is there (the area
  is background once the image is complete): a yes changes it, ``P(change) = chance``, the
  probability that at least one missed object is there. For a draw question, the probability
  that the image still holds an unlabelled object: ``1 - exp(-lambda)`` with ``lambda`` the
  expected number of unlabelled objects (:func:`missing_objects`, a Poisson count).
- ``E[seconds saved]`` against drawing every box (the baseline a person without the machine
  uses): a verify saves ``draw_s - verify_s`` when the answer is yes and loses ``verify_s``
  otherwise, ``P(yes) x draw_s - verify_s`` (positive exactly where the verify rule shows the
  box); a region question saves ``expected x (draw_s - label_s) - verify_s`` (its objects are
  labelled at ``label_s`` each instead of drawn); a draw question ``lambda x (draw_s -
  label_s)`` (0 with boxes). Without this term a likely-yes box (small ``P(change)``) would
  never be asked, though each yes buys a box for a fraction of its drawing time.
- ``seconds``: the question's own time and its expected follow-up, from the
  :class:`~napari_al.core.costs.CostModel`: ``verify_s`` (a rich answer costs the same);
  ``verify_s + expected x label_s`` for a region; ``image_s + max(lambda, 1) x label_s`` for a
  draw question. ``label_s`` is ``click_s + verify_s`` (a centre click and the yes/no on its
  box, Papadopoulos et al. 2017) or ``draw_s`` (a drawn box, Papadopoulos et al. 2017's extreme
  clicking), by the supervision in force.

A question whose value is not positive is not asked. The queue is ordered by value, best first
(:func:`order`).

**Clicks or boxes** (:func:`supervision_mode`; Desai et al. 2019, "An adaptive supervision
framework for active learning in object detection", BMVC: weak labels first, strong ones once
training stagnates, their "hard switch"). Setting ``supervision``: ``click`` or ``box`` fixes how
missed objects are labelled; ``auto`` labels them by centre clicks while localisation still
improves between model versions and by drawn boxes from the first version on which it stops.
Localisation is measured by ``AP@[.5:.95] / AP@0.5`` (``map / map50`` of the stored metrics:
how much of what the model finds it also places tightly); it still improves while each
measured version raises it by more than ``min_rise`` over the version measured before it. With
fewer than two measured versions it counts as improving. The switch is one way, as Desai's hard
switch: once it stopped, boxes stay.

Boxes and regions are ``(x1, y1, x2, y2)`` image pixels, pixel edges on integers
(:mod:`napari_al.core.boxes`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from napari_al.core.costs import CostModel
from napari_al.core.scoring.combine import minmax_normalize

#: The question types, in the order a tie is broken.
KINDS = ("verify", "region", "draw")
#: How missed objects are labelled (the ``supervision`` setting): ``auto`` switches.
SUPERVISION = ("auto", "click", "box")
#: The answer keys of each question type in the viewer (``napari_al.gui.keys``; a GUI test
#: checks every label against the key table). ``draw`` lists both ways of labelling.
ANSWER_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "verify": (
        ("W", "yes"),
        ("Q", "no"),
        ("1-9", "wrong class"),
        ("Shift+E", "covers part of the object"),
        ("Shift+S", "contains the object and more"),
        ("Shift+K", "several objects"),
    ),
    "region": (
        ("Shift+M", "yes: click each one (or K, then draw it with R); K when done"),
        ("Shift+X", "no"),
    ),
    "draw": (
        ("K", "click each object's centre (W/Q answer its box)"),
        ("R", "draw each box"),
        ("Shift+W", "done: the image is complete"),
    ),
}

XYXY = tuple[float, float, float, float]


@dataclass(frozen=True)
class Question:
    """One question the planner may ask (module docstring).

    ``kind``: one of :data:`KINDS`; ``image_id``; ``box_id``: the box asked about (``verify``);
    ``xyxy``: that box, or the region (``region``), None for a whole image (``draw``);
    ``class_id``/``class_name``: the class asked about (None/"" for ``draw``); ``p_yes``: the
    probability of a yes (verify: calibrated P(yes); region: the chance of a missed object;
    draw: the chance that something is still unlabelled); ``p_change``: that the answer changes
    a label; ``gain`` in [0, 1]; ``seconds``: expected seconds with the follow-up; ``saved_s``:
    expected seconds saved against drawing; ``value``: the value rule's result (per second);
    ``expected``: expected objects to label (region, draw); ``supervision``: how objects are
    labelled after a yes (``click`` or ``box``).
    """

    kind: str
    image_id: int
    box_id: int | None = None
    xyxy: XYXY | None = None
    class_id: int | None = None
    class_name: str = ""
    p_yes: float = 0.0
    p_change: float = 0.0
    gain: float = 0.0
    seconds: float = 0.0
    saved_s: float = 0.0
    value: float = 0.0
    expected: float = 0.0
    supervision: str = "box"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"question kind must be one of {', '.join(KINDS)}, not {self.kind!r}")

    @property
    def text(self) -> str:
        """The question in words."""
        if self.kind == "verify":
            return f"is this {self.class_name or 'object'} box right?"
        if self.kind == "region":
            return f"any more {self.class_name} here?"
        how = "click" if self.supervision == "click" else "draw"
        return f"{how} every object still unlabelled in this image, then mark it complete"

    @property
    def keys(self) -> tuple[tuple[str, str], ...]:
        """(key, answer) pairs that answer it in the viewer (:data:`ANSWER_KEYS`)."""
        keys = ANSWER_KEYS[self.kind]
        if self.kind == "draw":  # the way the supervision in force labels, then done
            first = keys[0] if self.supervision == "click" else keys[1]
            return (first, keys[2])
        return keys

    @property
    def keys_text(self) -> str:
        """The answer keys in words: ``W yes / Q no / ...``."""
        return " / ".join(f"{k} {what}" for k, what in self.keys)

    @property
    def key(self) -> tuple[str, int, int | None, XYXY | None, int | None]:
        """What identifies the question across replanning: kind, image, box, region, class."""
        xyxy = None if self.xyxy is None else tuple(round(float(v), 3) for v in self.xyxy)
        return (self.kind, self.image_id, self.box_id, xyxy, self.class_id)  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``from_dict`` reads it back)."""
        d = asdict(self)
        d["xyxy"] = None if self.xyxy is None else [float(v) for v in self.xyxy]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Question:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if known.get("xyxy") is not None:
            known["xyxy"] = tuple(float(v) for v in known["xyxy"])
        return cls(**known)


def binary_entropy(p: float | np.ndarray) -> np.ndarray:
    """``H(p)`` in bits, ``(N,)`` float64 in [0, 1] (0 at p = 0 or 1, 1 at p = 0.5); NaN -> 1
    (nothing known)."""
    q = np.asarray(p, np.float64).reshape(-1)
    q = np.where(np.isnan(q), 0.5, np.clip(q, 0.0, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(q * np.log2(q) + (1 - q) * np.log2(1 - q))
    return np.nan_to_num(h, nan=0.0)


def normalise(values: Mapping[Any, float]) -> dict[Any, float]:
    """Scorer values (any scale) -> [0, 1] by min-max over the given set (a constant or single
    value: 0.5, as :func:`~napari_al.core.scoring.combine.minmax_normalize`); non-finite values
    are left out."""
    keys = [k for k, v in values.items() if math.isfinite(float(v))]
    if not keys:
        return {}
    scaled = minmax_normalize(np.asarray([float(values[k]) for k in keys], np.float64))
    return {k: float(v) for k, v in zip(keys, scaled, strict=True)}


def label_seconds(costs: CostModel, supervision: str) -> float:
    """Seconds to label one object: a centre click and the yes/no on its box (``click``), or a
    drawn box (``box``)."""
    if supervision == "click":
        return costs.click_s + costs.verify_s
    if supervision == "box":
        return costs.draw_s
    raise ValueError(f"supervision must be click or box here, not {supervision!r}")


def question_value(
    gain: float,
    p_change: float,
    seconds: float,
    saved_s: float,
    costs: CostModel,
    saving_weight: float = 1.0,
) -> float:
    """``(gain x P(change) + saving_weight x saved_s / draw_s) / seconds`` (module docstring);
    per second; ``-inf`` for a question that takes no time (nothing to ask)."""
    if seconds <= 0:
        return -math.inf
    draw = costs.draw_s if costs.draw_s > 0 else 1.0
    return (float(gain) * float(p_change) + float(saving_weight) * float(saved_s) / draw) / float(
        seconds
    )


def verify_question(
    image_id: int,
    box_id: int,
    xyxy: Sequence[float],
    class_id: int,
    class_name: str,
    p_yes: float,
    gain: float | None,
    costs: CostModel,
    *,
    saving_weight: float = 1.0,
    supervision: str = "box",
) -> Question:
    """ "Is this box right?" about a shown box with calibrated ``p_yes``; ``gain`` None: the
    binary entropy of ``p_yes``."""
    p = float(np.clip(np.nan_to_num(p_yes, nan=1.0), 0.0, 1.0))
    g = float(binary_entropy(p)[0]) if gain is None else float(np.clip(gain, 0.0, 1.0))
    saved = p * costs.draw_s - costs.verify_s
    seconds = costs.verify_s
    return Question(
        "verify",
        int(image_id),
        int(box_id),
        tuple(float(v) for v in xyxy),  # type: ignore[arg-type]
        int(class_id),
        class_name,
        p_yes=p,
        p_change=1.0 - p,
        gain=g,
        seconds=seconds,
        saved_s=saved,
        value=question_value(g, 1.0 - p, seconds, saved, costs, saving_weight),
        supervision=supervision,
    )


def region_question(
    image_id: int,
    xyxy: Sequence[float],
    class_id: int,
    class_name: str,
    chance: float,
    expected: float,
    gain: float | None,
    costs: CostModel,
    *,
    saving_weight: float = 1.0,
    supervision: str = "click",
) -> Question:
    """ "Any more <class> here?" about a region with ``chance`` of at least one missed object
    and ``expected`` missed objects; ``gain`` None: the binary entropy of ``chance``."""
    p = float(np.clip(chance, 0.0, 1.0))
    e = max(float(expected), 0.0)
    g = float(binary_entropy(p)[0]) if gain is None else float(np.clip(gain, 0.0, 1.0))
    label = label_seconds(costs, supervision)
    seconds = costs.verify_s + e * label
    saved = e * (costs.draw_s - label) - costs.verify_s
    return Question(
        "region",
        int(image_id),
        None,
        tuple(float(v) for v in xyxy),  # type: ignore[arg-type]
        int(class_id),
        class_name,
        p_yes=p,
        p_change=p,
        gain=g,
        seconds=seconds,
        saved_s=saved,
        value=question_value(g, p, seconds, saved, costs, saving_weight),
        expected=e,
        supervision=supervision,
    )


def missing_objects(mean_objects: float, labelled: float) -> float:
    """Expected objects still unlabelled in an image: ``max(mean_objects - labelled, 0)``, with
    ``mean_objects`` the mean count of the project's complete images and ``labelled`` the image's
    human boxes plus its pending boxes weighted by their P(yes)."""
    return max(float(mean_objects) - float(labelled), 0.0)


def draw_question(
    image_id: int,
    missing: float,
    gain: float | None,
    costs: CostModel,
    *,
    saving_weight: float = 1.0,
    supervision: str = "box",
) -> Question:
    """ "Label what is still missing here, then mark the image complete" with ``missing``
    expected unlabelled objects (:func:`missing_objects`); ``gain`` None: 1 (nothing the model
    knows)."""
    lam = max(float(missing), 0.0)
    p = 1.0 - math.exp(-lam)
    g = 1.0 if gain is None else float(np.clip(gain, 0.0, 1.0))
    label = label_seconds(costs, supervision)
    seconds = costs.image_s + max(lam, 1.0) * label
    saved = lam * (costs.draw_s - label)
    return Question(
        "draw",
        int(image_id),
        p_yes=p,
        p_change=p,
        gain=g,
        seconds=seconds,
        saved_s=saved,
        value=question_value(g, p, seconds, saved, costs, saving_weight),
        expected=lam,
        supervision=supervision,
    )


def order(questions: Iterable[Question]) -> list[Question]:
    """The questions worth asking (value > 0), best first; ties by gain (what the query
    strategy says the label teaches), then image, kind, box."""
    kept = [q for q in questions if q.value > 0 and math.isfinite(q.value)]
    return sorted(
        kept,
        key=lambda q: (
            -q.value,
            -q.gain,
            q.image_id,
            KINDS.index(q.kind),
            q.box_id or 0,
            q.key,
        ),
    )


def localisation(metrics: Mapping[str, Any]) -> float | None:
    """``map / map50`` (AP@[.5:.95] over AP@0.5) of a model version's metrics; None where
    either is missing, not finite, or AP@0.5 is 0."""
    try:
        ap, ap50 = float(metrics["map"]), float(metrics["map50"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (math.isfinite(ap) and math.isfinite(ap50)) or ap50 <= 0:
        return None
    return ap / ap50


def supervision_mode(
    history: Sequence[Mapping[str, Any]], setting: str = "auto", min_rise: float = 0.01
) -> tuple[str, str]:
    """``click`` or ``box`` for the missed objects, and why (module docstring, "Clicks or
    boxes"). ``history``: the metrics of the model versions, oldest first (those without
    ``map``/``map50`` are skipped). ValueError for an unknown ``setting``."""
    if setting not in SUPERVISION:
        raise ValueError(f"supervision must be one of {', '.join(SUPERVISION)}, not {setting!r}")
    if setting != "auto":
        return setting, f"supervision set to {setting}"
    ratios = [r for r in (localisation(m) for m in history) if r is not None]
    if len(ratios) < 2:
        return "click", "localisation measured on fewer than two model versions: clicks"
    for k in range(1, len(ratios)):
        rise = ratios[k] - ratios[k - 1]
        if rise <= min_rise:
            return (
                "box",
                f"localisation (AP/AP50) rose {rise:+.3f} <= {min_rise:g} at measured version "
                f"{k + 1}: boxes from then on",
            )
    return "click", f"localisation (AP/AP50) still rises ({ratios[-2]:.3f} -> {ratios[-1]:.3f})"
