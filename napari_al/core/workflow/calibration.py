"""Calibrated scores of a model version, and the rule that says which model boxes to show.

A model box is worth a yes/no question only where ``P(yes) x draw_s > verify_s`` (issue 13; the
cost model's break-even, :attr:`napari_al.core.costs.CostModel.verify_threshold`), and a raw
detection score is not P(yes). :func:`calibrate_model` fits, for one model version, per class,
the map from score to P(a person accepts the box) (:mod:`napari_al.core.calibration`: isotonic,
Zadrozny & Elkan 2002, or Platt 1999) and stores it in the version's metrics (key
``calibration``) with its calibration error; :func:`verify_rule` hands front ends the rule.

**Samples** (:func:`judged_samples`): every model box a person judged: source ``model``, with a
score, status ``accepted`` (yes, if its class and place are still those the model showed),
``rejected`` or ``corrected`` (no), deleted by a person while unreviewed (no), or answered
``part``, ``container`` or ``several`` (no; :mod:`napari_al.core.answers`). The class is
the one the model showed: for a box whose class a person changed, the class before its first
edit (``set_class``/``correct`` in the action log).

**Whose scores** (measured, docs/benchmarks.md "Calibrated scores"): a map is fitted only on the
boxes that the version itself scored. Scores of an earlier version say little about the next
one: on the BCCD preset, maps fitted on earlier versions' judged boxes raised the next version's
test ECE in 21 of 27 cases (mean 0.057 -> 0.085), while a map fitted on the version's own
judged boxes lowered it in 9 of 9 (0.113-0.140 -> 0.045-0.114). Of the version's own boxes,
the newest ``CalibrationSettings.recent_samples`` count.

**Fitting rule** (:func:`calibrate_model`, at training time and on demand): on the version's own
judged boxes, where they suffice (at least ``min_samples`` with both answers); else, where the
round measures on the ``val`` split, on the model's own predictions there; else the identity
(raw scores). ``method`` ``none`` always fits the identity. **Online** (:func:`verify_rule`):
right after training a version has no judged boxes of its own; as soon as a person has judged
enough of them, the rule fits the map on them (cached until the next user action) and prefers
it to the stored one.

**Measuring** (:func:`split_samples`): where a held-out split has ground truth (complete
images), the model's predictions there are matched to the human boxes: same class, IoU >= 0.5,
each human box matched once, greedy by decreasing score (unmatched predictions mostly inside an
ignore region are left out, as the evaluation does). Each prediction is a (score, correct)
pair; the expected calibration error (ECE, 10 equal-width bins) of the raw scores
(``ece_before``) and of the calibrated ones (``ece_after``) is stored beside mAP. When the map
was fitted on that same split, ``ece_after`` is cross-fitted (5 folds by image: each image's
boxes calibrated by a map fitted on the other folds), so it is not an in-sample figure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_al.core.boxes import box_iou
from napari_al.core.calibration import (
    N_BINS,
    ScoreCalibration,
    expected_calibration_error,
    fit_calibration,
    reliability_curve,
)
from napari_al.core.costs import CostModel
from napari_al.core.data import RICH_ANSWERS
from napari_al.core.workflow.evaluation import SplitPredictions, predict_split, record_metrics
from napari_al.core.workflow.settings import CalibrationSettings

if TYPE_CHECKING:
    from napari_al.core.engine import Detector
    from napari_al.core.store import BoxRow, ProjectStore

#: The model version's metrics key holding its fitted calibration (``ScoreCalibration.to_dict``).
CALIBRATION_KEY = "calibration"
#: Statuses of a model box a person judged.
JUDGED_STATUSES = ("accepted", "rejected", "corrected")
#: IoU at which a prediction on the measuring split matches a human box of its class.
MATCH_IOU = 0.5
#: Folds of the cross-fitted ``ece_after`` when the map is fitted on the measuring split.
CROSS_FOLDS = 5


@dataclass
class CalibrationSamples:
    """(score, outcome, class) triples: ``scores`` (N,) float64, ``outcomes`` (N,) bool (True:
    accepted as shown / a correct detection), ``classes`` N class names, ``groups`` (N,) int64
    (model version of a judged box, image id of a split prediction)."""

    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    outcomes: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    classes: list[str] = field(default_factory=list)
    groups: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.classes)

    def subset(self, mask: np.ndarray) -> CalibrationSamples:
        idx = np.flatnonzero(mask)
        return CalibrationSamples(
            self.scores[idx], self.outcomes[idx], [self.classes[i] for i in idx], self.groups[idx]
        )

    @classmethod
    def of(cls, rows: Sequence[tuple[float, bool, str, int]]) -> CalibrationSamples:
        return cls(
            np.asarray([r[0] for r in rows], np.float64),
            np.asarray([r[1] for r in rows], bool),
            [r[2] for r in rows],
            np.asarray([r[3] for r in rows], np.int64),
        )


def _shown_states(store: ProjectStore) -> dict[int, dict[str, Any]]:
    """Box id -> the model box as shown (the ``before`` state of the first person's class or
    place edit on it while it was the model's)."""
    shown: dict[int, dict[str, Any]] = {}
    edits = [*store.actions(kind="set_class"), *store.actions(kind="correct")]
    for a in sorted(edits, key=lambda a: a.id):
        before = a.payload.get("before") or {}
        if a.box_id is not None and before.get("source") == "model":
            shown.setdefault(int(a.box_id), before)
    return shown


def _answered_samples(
    store: ProjectStore, names: dict[int, str]
) -> list[tuple[tuple[float, bool, str, int], int]]:
    """Model boxes a person answered ``part``, ``container`` or ``several`` about (a no: the box
    is not right as shown), still so answered: the box as shown from the answer's log row, with
    its box id."""
    answered = {b.id for b in store.boxes(statuses="rejected") if b.source in RICH_ANSWERS}
    rows: list[tuple[tuple[float, bool, str, int], int]] = []
    for a in sorted((a for k in RICH_ANSWERS for a in store.actions(kind=k)), key=lambda a: a.id):
        before = a.payload.get("before") or {}
        if (
            a.box_id in answered
            and before.get("source") == "model"
            and before.get("status") == "predicted"
            and before.get("score") is not None
        ):
            answered.discard(a.box_id)  # counted once
            cls = int(before["class_id"])
            version = int(before.get("model_version") or 0)
            row = (float(before["score"]), False, names.get(cls, str(cls)), version)
            rows.append((row, int(a.box_id)))
    return rows


def judged_samples(
    store: ProjectStore, recent: int | None = None, *, version: int | None = None
) -> CalibrationSamples:
    """The calibration samples of the model boxes people judged (module docstring).

    ``version`` given: only the boxes that model version scored, the newest ``recent`` of them
    (by box id; None: all). Else every version's, the newest versions first, whole versions at
    a time until at least ``recent`` (None: all)."""
    names = {c.id: c.name for c in store.classes()}
    shown = _shown_states(store)
    rows: list[tuple[float, bool, str, int]] = []
    order: list[int] = []  # box id of each row
    for b in store.boxes(statuses=JUDGED_STATUSES):  # not every box: this runs on the key path
        if b.source != "model" or b.score is None:
            continue
        if version is not None and int(b.model_version or 0) != int(version):
            continue
        first = shown.get(b.id)
        cls = int(first["class_id"]) if first else b.class_id
        same = first is None or (
            cls == b.class_id
            and np.allclose([first[k] for k in ("x1", "y1", "x2", "y2")], b.xyxy, atol=1e-6)
        )
        yes = b.status == "accepted" and same
        rows.append((float(b.score), yes, names.get(cls, str(cls)), int(b.model_version or 0)))
        order.append(b.id)
    deletes = store.actions(kind="delete")
    existing = store.existing_box_ids(a.box_id for a in deletes if a.box_id is not None)
    for a in deletes:  # unreviewed model boxes a person deleted: a no
        before = a.payload.get("before") or {}
        if (
            a.box_id is not None
            and int(a.box_id) not in existing
            and before.get("source") == "model"
            and before.get("status") == "predicted"
            and before.get("score") is not None
        ):
            existing.add(int(a.box_id))  # counted once
            cls = int(before["class_id"])
            v = int(before.get("model_version") or 0)
            if version is not None and v != int(version):
                continue
            rows.append((float(before["score"]), False, names.get(cls, str(cls)), v))
            order.append(int(a.box_id))
    for row, box_id in _answered_samples(store, names):
        if version is None or row[3] == int(version):
            rows.append(row)
            order.append(box_id)
    samples = CalibrationSamples.of(rows)
    if recent is None or len(samples) <= recent:
        return samples
    keep = np.zeros(len(samples), bool)
    if version is not None:
        keep[np.argsort(-np.asarray(order), kind="stable")[:recent]] = True
        return samples.subset(keep)
    for v in sorted(set(samples.groups.tolist()), reverse=True):
        keep |= samples.groups == v
        if keep.sum() >= recent:
            break
    return samples.subset(keep)


def _inside_ignore(box: np.ndarray, regions: np.ndarray) -> bool:
    """Whether at least half of ``box`` lies in one of ``regions`` (COCOeval's crowd IoU)."""
    if not len(regions):
        return False
    x1 = np.maximum(box[0], regions[:, 0])
    y1 = np.maximum(box[1], regions[:, 1])
    x2 = np.minimum(box[2], regions[:, 2])
    y2 = np.minimum(box[3], regions[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), 1e-12)
    return bool((inter / area).max() >= 0.5)


def split_samples(
    predictions: SplitPredictions, class_names: Sequence[str], iou: float = MATCH_IOU
) -> CalibrationSamples:
    """(score, correct) of every prediction on a split's complete images: correct when it
    matches a free human box of its class at IoU >= ``iou``, greedy by decreasing score per
    image and class; an unmatched prediction mostly inside an ignore region is left out."""
    rows: list[tuple[float, bool, str, int]] = []
    for row, (gb, gl, gi), p in zip(
        predictions.rows, predictions.ground_truth, predictions.predictions, strict=True
    ):
        pb = np.asarray(p.boxes, np.float64).reshape(-1, 4)
        pl = np.asarray(p.labels, np.int64).reshape(-1)
        ps = np.asarray(p.scores, np.float64).reshape(-1)
        iou_all = box_iou(pb, gb) if len(pb) and len(gb) else np.zeros((len(pb), len(gb)))
        free = np.ones(len(gb), bool)
        for i in np.argsort(-ps, kind="stable"):
            cand = np.flatnonzero(free & (gl == pl[i]))
            hit = cand[iou_all[i, cand] >= iou] if len(cand) else cand
            if len(hit):
                free[hit[np.argmax(iou_all[i, hit])]] = False
            elif _inside_ignore(pb[i], gi):
                continue
            name = class_names[pl[i]] if 0 <= pl[i] < len(class_names) else str(pl[i])
            rows.append((float(ps[i]), bool(len(hit)), name, int(row.id)))
    return CalibrationSamples.of(rows)


def _fit(samples: CalibrationSamples, s: CalibrationSettings) -> ScoreCalibration:
    return fit_calibration(
        samples.scores,
        samples.outcomes,
        samples.classes,
        s.method,
        min_samples=s.min_samples,
        min_class_samples=s.min_class_samples,
    )


def _cross_fitted(samples: CalibrationSamples, s: CalibrationSettings) -> np.ndarray:
    """P(yes) of each sample from a map fitted on the other folds (folds by ``groups``)."""
    groups = sorted(set(samples.groups.tolist()))
    k = min(CROSS_FOLDS, len(groups))
    fold = {g: i % k for i, g in enumerate(groups)}
    folds = np.asarray([fold[g] for g in samples.groups.tolist()], np.int64)
    out = np.empty(len(samples), np.float64)
    for f in range(k):
        held = folds == f
        cal = _fit(samples.subset(~held), s) if k > 1 else ScoreCalibration()
        out[held] = cal.predict(
            samples.scores[held], [samples.classes[i] for i in np.flatnonzero(held)]
        )
    return out


def _measure(
    cal: ScoreCalibration, samples: CalibrationSamples, cross: bool, s: CalibrationSettings
) -> dict[str, Any]:
    after = _cross_fitted(samples, s) if cross else cal.predict(samples.scores, samples.classes)
    return {
        "ece_samples": len(samples),
        "ece_bins": N_BINS,
        "ece_before": expected_calibration_error(samples.scores, samples.outcomes),
        "ece_after": expected_calibration_error(after, samples.outcomes),
        "ece_cross_fitted": bool(cross),
        "reliability_before": reliability_curve(samples.scores, samples.outcomes),
        "reliability_after": reliability_curve(after, samples.outcomes),
    }


def calibrate_model(
    store: ProjectStore,
    detector: Detector,
    settings: CalibrationSettings | None = None,
    *,
    split: str | None = "val",
    predictions: SplitPredictions | None = None,
    record: bool = True,
) -> dict[str, Any]:
    """Fit the calibration of ``detector``'s model version and measure it on ``split``.

    Fitting rule and measurement: module docstring; the map is fitted on ``split`` only when it
    is ``val``. ``split`` None, or a split without complete images, measures nothing (the ECE
    keys are then None). ``predictions``: the detector's predictions on ``split`` from
    :func:`~napari_al.core.workflow.evaluation.predict_split` (default: made here, one pass).
    Returns the metrics: ``calibration`` (the map, ``ScoreCalibration.to_dict``),
    ``calibration_method``, ``calibration_source`` (``judged``, ``val`` or ``none``),
    ``calibration_samples`` (the samples fitted on), ``calibration_judged`` (judged boxes
    available), ``ece_split``, ``ece_samples``, ``ece_bins``, ``ece_before``, ``ece_after`` (in
    [0, 1]), ``ece_cross_fitted`` and ``reliability_before``/``reliability_after`` (dicts of
    ``prob_pred``, ``prob_true``, ``count`` lists). With ``record`` (and a model version) they
    are merged into the version's metrics.
    """
    s = settings or CalibrationSettings()
    version = int(getattr(detector, "model_version", None) or 0)
    judged = judged_samples(store, s.recent_samples, version=version)
    measured: CalibrationSamples | None = None
    if split and store.images(split=split, review_state="complete"):
        if predictions is None:
            predictions = predict_split(store, detector, split)
        elif predictions.split != split:
            raise ValueError(f"predictions of split {predictions.split!r} given for {split!r}")
        measured = split_samples(predictions, [c.name for c in store.classes()])
    cal, source, used = _fit(judged, s), "judged", len(judged)
    if cal.is_identity and s.method != "none" and split == "val" and measured is not None:
        on_val = _fit(measured, s)
        if not on_val.is_identity:
            cal, source, used = on_val, "val", len(measured)
    if cal.is_identity:
        source, used = "none", 0
    out: dict[str, Any] = {
        CALIBRATION_KEY: cal.to_dict(),
        "calibration_method": s.method,
        "calibration_source": source,
        "calibration_samples": used,
        "calibration_judged": len(judged),
        "ece_split": split if measured is not None else None,
    }
    if measured is not None and len(measured):
        out.update(_measure(cal, measured, source == "val", s))
    else:
        out.update(ece_samples=0, ece_before=None, ece_after=None, ece_cross_fitted=False)
        out.update(reliability_before=None, reliability_after=None)
    if record:
        record_metrics(store, detector.model_version, out, split=split, split_key="ece_split")
    return out


def stored_calibration(store: ProjectStore, version: int | None = None) -> ScoreCalibration | None:
    """The calibration stored on model version ``version`` (None: the latest version); None
    when that version has none (or there is no model)."""
    rows = store.model_versions()
    row = rows[-1] if version is None and rows else None
    if version is not None:
        row = next((r for r in rows if r.id == int(version)), None)
    if row is None or CALIBRATION_KEY not in row.metrics:
        return None
    return ScoreCalibration.from_dict(row.metrics[CALIBRATION_KEY])


@dataclass
class VerifyRule:
    """Which model boxes are worth showing (and asking about): ``P(yes) x draw_s > verify_s``.

    P(yes) of a box comes from the calibration stored on the box's model version, else on the
    latest model version, else the raw score (identity). With ``min_score`` set (a person's or a
    benchmark's explicit threshold), the raw score decides instead: ``score >= min_score``. A
    box without a score is always shown. Build it with :func:`verify_rule`.
    """

    costs: CostModel = field(default_factory=CostModel)
    min_score: float | None = None
    calibrations: dict[int, ScoreCalibration] = field(default_factory=dict)
    latest: ScoreCalibration | None = None
    class_names: dict[int, str] = field(default_factory=dict)

    def _calibration(self, version: int | None) -> ScoreCalibration:
        cal = self.calibrations.get(int(version)) if version else None
        return cal or self.latest or ScoreCalibration()

    def probability(self, boxes: Iterable[BoxRow]) -> np.ndarray:
        """P(yes) of each box (N,) float64; NaN for a box without a score."""
        rows = list(boxes)
        out = np.full(len(rows), np.nan)
        for i, b in enumerate(rows):
            if b.score is not None:
                cal = self._calibration(b.model_version)
                name = self.class_names.get(b.class_id)
                out[i] = cal.map_for(name)(np.asarray([float(b.score)]))[0]
        return out

    def probability_of_scores(
        self, scores: np.ndarray, classes: list[str], version: int | None
    ) -> np.ndarray:
        """P(yes) (N,) float64 of fresh predictions of model ``version``: ``scores`` (N,) and
        class names (N,), mapped as :meth:`probability` maps stored boxes."""
        return self._calibration(version).predict(np.asarray(scores, np.float64), classes)

    def mask(self, boxes: Iterable[BoxRow]) -> np.ndarray:
        """(N,) bool: whether each box is shown / asked about."""
        rows = list(boxes)
        if self.min_score is not None:
            return np.asarray(
                [b.score is None or b.score >= self.min_score for b in rows], bool
            ).reshape(-1)
        p = self.probability(rows)
        return np.isnan(p) | (p * self.costs.draw_s > self.costs.verify_s)

    def shows(self, box: BoxRow) -> bool:
        """Whether this one box is shown / asked about."""
        return bool(self.mask([box])[0])


#: Online maps (:func:`online_calibration`) by (project, version, last action id, settings).
_ONLINE: dict[tuple[Any, ...], ScoreCalibration] = {}
_ONLINE_MAX = 32


def online_calibration(
    store: ProjectStore, version: int, settings: CalibrationSettings | None = None
) -> ScoreCalibration | None:
    """The map fitted now on the judged boxes model ``version`` scored (module docstring,
    "Online"); None where they do not suffice (fewer than ``min_samples``, one answer only) or
    ``method`` is ``none``. Cached until the store's next action, so a viewer that redraws
    without new answers does not refit."""
    s = settings or CalibrationSettings()
    if s.method == "none":
        return None
    key = (
        str(store.project_dir),
        int(version),
        store.last_action_id(),
        s.method,
        s.min_samples,
        s.min_class_samples,
        s.recent_samples,
    )
    if key not in _ONLINE:
        if len(_ONLINE) >= _ONLINE_MAX:
            _ONLINE.clear()
        _ONLINE[key] = _fit(judged_samples(store, s.recent_samples, version=version), s)
    cal = _ONLINE[key]
    return None if cal.is_identity else cal


def verify_rule(
    store: ProjectStore,
    costs: CostModel | None = None,
    *,
    min_score: float | None = None,
    calibrated: bool = True,
) -> VerifyRule:
    """The rule for the store's model boxes now (calibrations are read once: build a new rule
    after an answer or a round). The latest version's map is fitted online on its own judged
    boxes where they suffice (:func:`online_calibration`, with the method stored on the
    version), else the one stored at training time. ``min_score``: an explicit raw-score
    threshold, which wins; ``calibrated=False``: raw scores against the cost model's break-even
    (``score >= costs.verify_threshold``, the rule before calibration)."""
    costs = costs or CostModel()
    if min_score is None and not calibrated:
        min_score = costs.verify_threshold
    cals: dict[int, ScoreCalibration] = {}
    for row in store.model_versions():
        if CALIBRATION_KEY in row.metrics:
            cals[row.id] = ScoreCalibration.from_dict(row.metrics[CALIBRATION_KEY])
    latest = store.latest_model_version()
    if latest is not None and min_score is None:
        method = latest.metrics.get("calibration_method") or CalibrationSettings().method
        online = online_calibration(store, latest.id, CalibrationSettings(method=method))
        if online is not None:
            cals[latest.id] = online
    return VerifyRule(
        costs=costs,
        min_score=None if min_score is None else float(min_score),
        calibrations=cals,
        latest=cals.get(latest.id) if latest is not None else None,
        class_names={c.id: c.name for c in store.classes()},
    )


def probability_of_yes(store: ProjectStore, boxes: Iterable[BoxRow]) -> np.ndarray:
    """P(a person accepts each box as shown) (N,) float64 under the stored calibrations (the
    box's model version, else the latest; NaN for a box without a score)."""
    return verify_rule(store).probability(boxes)


def worth_asking(
    store: ProjectStore, boxes: Iterable[BoxRow], costs: CostModel | None = None
) -> np.ndarray:
    """(N,) bool: ``P(yes) x draw_s > verify_s`` for each box (a box without a score: True)."""
    return verify_rule(store, costs).mask(boxes)


def calibration_summary(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The calibration figures of a model version's metrics, for display (None: none)."""
    if CALIBRATION_KEY not in metrics:
        return None
    keys = (
        "calibration_method",
        "calibration_source",
        "calibration_samples",
        "calibration_judged",
        "ece_split",
        "ece_samples",
        "ece_bins",
        "ece_cross_fitted",
    )
    out = {k: metrics.get(k) for k in keys}
    for k in ("ece_before", "ece_after"):
        v = metrics.get(k)
        out[k] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
    return out
