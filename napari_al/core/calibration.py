"""Calibrated detection scores: P(a person accepts the box) as a function of its score.

A detector's score is not a probability, least of all early in active learning: a model trained
for a few dozen steps shows many wrong boxes at 0.3-0.5. The cost model's rule, show a model box
for a yes/no answer only where ``P(yes) x draw_s > verify_s`` (:attr:`napari_al.core.costs
.CostModel.verify_threshold`, 0.23 with the default costs), is right only for calibrated
scores. This module fits, per class, a monotone map from score to the observed frequency of
"yes" and measures how well scores are calibrated. Torch-free and Qt-free; fitting uses
scikit-learn, applying a fitted map only numpy (so it is cheap per box, and a map stored as
JSON applies exactly as fitted).

Methods (``method``):

- ``isotonic`` (default): :class:`sklearn.isotonic.IsotonicRegression` (increasing, clipped to
  [0, 1] and, outside the scores seen, to the end values, ``out_of_bounds="clip"``): the
  non-parametric calibration of Zadrozny & Elkan, "Transforming classifier scores into accurate
  multiclass probability estimates", KDD 2002, fitted on Platt's smoothed targets (below) rather
  than 0 and 1, so that its ends stay inside ``[1 / (N- + 2), (N+ + 1) / (N+ + 2)]``: fitted
  on 0 and 1, a top block of a handful of yes answers said P(yes) = 1, a certainty no finite
  sample gives, and the dialog planner's ``P(change) = 1 - P(yes)`` then erased every
  strategy's gain (all questions tied; found by a newcomer). Stored as its breakpoints
  (``X_thresholds_``, ``y_thresholds_``) and applied by linear interpolation, as
  ``IsotonicRegression.predict`` does.
- ``platt``: Platt scaling, ``P = 1 / (1 + exp(-(a s + b)))`` fitted by
  :class:`sklearn.linear_model.LogisticRegression` on the score, effectively unregularised, with
  Platt's smoothed targets ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)`` (given as sample weights
  of a yes and a no copy of each sample): Platt, "Probabilistic outputs for support vector
  machines and comparisons to regularized likelihood methods", 1999.
- ``identity`` (also what ``none`` fits): ``P = score`` clipped to [0, 1].

Per class and pooled: a class with at least ``min_class_samples`` samples and both outcomes gets
its own map; every other class uses the map fitted on all samples pooled (at least
``min_samples``, both outcomes); with fewer, or one outcome only, the identity. Detection
calibration per class on the confidence alone is the simplest case of Kuppers et al.,
"Multivariate confidence calibration for object detection", CVPR Workshops 2020 (who also
condition on the box position).

Calibration error: the expected calibration error (ECE) over ``n_bins`` (10) equal-width bins
of [0, 1], binned as :func:`sklearn.calibration.calibration_curve` does with
``strategy="uniform"`` (a probability on an inner edge falls in the lower bin): ``ECE = sum_b
(n_b / N) |mean(y in b) - mean(p in b)|`` (Naeini et al., AAAI 2015; Guo et al., ICML 2017;
Kuppers et al. 2020 call the detection form D-ECE).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Fitting methods :func:`fit_calibration` knows (``none`` fits the identity).
METHODS = ("isotonic", "platt", "none")
#: Equal-width bins of the calibration error and the reliability curve.
N_BINS = 10
#: Default minimum of samples (with both outcomes) for the pooled map / a class's own map.
MIN_SAMPLES = 20
MIN_CLASS_SAMPLES = 40
#: ``C`` of the Platt logistic regression: large enough to be no penalty in practice.
_PLATT_C = 1e10


@dataclass(frozen=True)
class ScoreMap:
    """One fitted map from score to probability.

    ``kind``: ``isotonic`` (``x``, ``y``: the increasing breakpoints, interpolated linearly and
    clipped at the ends), ``platt`` (``a``, ``b``: ``P = sigmoid(a s + b)``) or ``identity``.
    ``n``/``n_yes``: the samples it was fitted on.
    """

    kind: str = "identity"
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0
    n: int = 0
    n_yes: int = 0

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """P(yes) of ``scores`` (any shape, float), same shape, float64 in [0, 1]."""
        s = np.asarray(scores, np.float64)
        if self.kind == "isotonic":
            return np.interp(s, np.asarray(self.x), np.asarray(self.y))
        if self.kind == "platt":
            z = np.clip(self.a * s + self.b, -500.0, 500.0)
            return 1.0 / (1.0 + np.exp(-z))
        return np.clip(s, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "n": self.n, "n_yes": self.n_yes}
        if self.kind == "isotonic":
            d.update(x=list(self.x), y=list(self.y))
        elif self.kind == "platt":
            d.update(a=self.a, b=self.b)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScoreMap:
        kind = str(d.get("kind", "identity"))
        if kind not in ("isotonic", "platt", "identity"):
            raise ValueError(f"unknown score map kind {kind!r}")
        return cls(
            kind=kind,
            x=tuple(float(v) for v in d.get("x", ())),
            y=tuple(float(v) for v in d.get("y", ())),
            a=float(d.get("a", 1.0)),
            b=float(d.get("b", 0.0)),
            n=int(d.get("n", 0)),
            n_yes=int(d.get("n_yes", 0)),
        )


IDENTITY = ScoreMap()


@dataclass(frozen=True)
class ScoreCalibration:
    """Per-class maps from detection score to P(yes), with a pooled fallback.

    ``per_class``: class name -> its own map; ``pooled``: the map of every other class (the
    identity when too few samples). ``method``: what was asked for (``isotonic``, ``platt`` or
    ``none``). :meth:`to_dict`/:meth:`from_dict` round-trip exactly through JSON.
    """

    method: str = "none"
    pooled: ScoreMap = IDENTITY
    per_class: dict[str, ScoreMap] = field(default_factory=dict)

    @property
    def is_identity(self) -> bool:
        return self.pooled.kind == "identity" and not self.per_class

    def map_for(self, cls: str | None) -> ScoreMap:
        """The map used for class ``cls`` (its own, else the pooled one)."""
        return self.per_class.get(str(cls), self.pooled) if cls is not None else self.pooled

    def predict(
        self, scores: Sequence[float] | np.ndarray, classes: Sequence[str | None] | None = None
    ) -> np.ndarray:
        """P(yes) of boxes with these scores (N,) and class names (N,; None: pooled map).

        Returns float64 (N,) in [0, 1]; a NaN score stays NaN.
        """
        s = np.asarray(scores, np.float64).reshape(-1)
        if classes is None:
            return self.pooled(s)
        if len(classes) != len(s):
            raise ValueError(f"{len(s)} scores but {len(classes)} classes")
        out = np.empty_like(s)
        names = np.asarray([str(c) if c is not None else "" for c in classes], object)
        for name in set(names.tolist()):
            idx = names == name
            out[idx] = self.map_for(name or None)(s[idx])
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (plain floats and lists)."""
        return {
            "method": self.method,
            "pooled": self.pooled.to_dict(),
            "per_class": {k: m.to_dict() for k, m in sorted(self.per_class.items())},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ScoreCalibration:
        """The calibration stored by :meth:`to_dict` (None or ``{}``: the identity).
        Raises ValueError for an unknown map kind."""
        if not d:
            return cls()
        return cls(
            method=str(d.get("method", "none")),
            pooled=ScoreMap.from_dict(d.get("pooled") or {}),
            per_class={
                str(k): ScoreMap.from_dict(v) for k, v in (d.get("per_class") or {}).items()
            },
        )


def _fit_map(scores: np.ndarray, yes: np.ndarray, method: str) -> ScoreMap:
    """One map fitted on (scores, yes) with ``method`` (both outcomes present)."""
    n, n_yes = len(scores), int(yes.sum())
    # Platt's smoothed targets for both methods: a finite sample never makes an answer certain
    t_yes = (n_yes + 1.0) / (n_yes + 2.0)
    t_no = 1.0 / (n - n_yes + 2.0)
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        iso.fit(scores, np.where(yes, t_yes, t_no))
        return ScoreMap(
            "isotonic",
            x=tuple(float(v) for v in iso.X_thresholds_),
            y=tuple(float(v) for v in iso.y_thresholds_),
            n=n,
            n_yes=n_yes,
        )
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        target = np.where(yes, t_yes, t_no)
        x = np.concatenate([scores, scores])[:, None]
        y = np.concatenate([np.ones(n, int), np.zeros(n, int)])
        w = np.concatenate([target, 1.0 - target])
        lr = LogisticRegression(C=_PLATT_C, max_iter=1000)
        lr.fit(x, y, sample_weight=w)
        return ScoreMap(
            "platt", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]), n=n, n_yes=n_yes
        )
    raise ValueError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")


def _fittable(yes: np.ndarray, minimum: int) -> bool:
    return len(yes) >= max(1, minimum) and 0 < int(yes.sum()) < len(yes)


def fit_calibration(
    scores: Sequence[float] | np.ndarray,
    outcomes: Sequence[bool] | np.ndarray,
    classes: Sequence[str] | None = None,
    method: str = "isotonic",
    *,
    min_samples: int = MIN_SAMPLES,
    min_class_samples: int = MIN_CLASS_SAMPLES,
) -> ScoreCalibration:
    """Fit P(yes | score, class) on judged boxes.

    ``scores``: (N,) detection scores in [0, 1]; ``outcomes``: (N,) bool, True where the person
    accepted the box as shown; ``classes``: (N,) class names (None: pooled only). Samples with a
    non-finite score are dropped. ``method``: ``isotonic``, ``platt`` or ``none`` (the identity).
    Per-class and pooled fallback as in the module docstring. Raises ValueError for an unknown
    method or mismatched lengths.
    """
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
    s = np.asarray(scores, np.float64).reshape(-1)
    yes = np.asarray(outcomes, bool).reshape(-1)
    if len(yes) != len(s) or (classes is not None and len(classes) != len(s)):
        raise ValueError("scores, outcomes and classes must have one entry per box")
    keep = np.isfinite(s)
    s, yes = s[keep], yes[keep]
    names = None if classes is None else np.asarray([str(c) for c in classes], object)[keep]
    if method == "none":
        return ScoreCalibration("none")
    pooled = _fit_map(s, yes, method) if _fittable(yes, min_samples) else IDENTITY
    per_class: dict[str, ScoreMap] = {}
    if names is not None:
        for name in sorted(set(names.tolist())):
            idx = names == name
            if _fittable(yes[idx], min_class_samples):
                per_class[name] = _fit_map(s[idx], yes[idx], method)
    return ScoreCalibration(method, pooled, per_class)


# --------------------------------------------------------------------------- measuring


def _bin_ids(probs: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index of each probability, as ``calibration_curve(strategy="uniform")`` bins."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], probs)


def _checked(probs: Any, outcomes: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, np.float64).reshape(-1)
    y = np.asarray(outcomes, bool).reshape(-1)
    if len(p) != len(y):
        raise ValueError(f"{len(p)} probabilities but {len(y)} outcomes")
    keep = np.isfinite(p)
    return np.clip(p[keep], 0.0, 1.0), y[keep]


def expected_calibration_error(
    probs: Sequence[float] | np.ndarray, outcomes: Sequence[bool] | np.ndarray, n_bins: int = N_BINS
) -> float:
    """ECE of probabilities (N,) against boolean outcomes (N,) over ``n_bins`` equal-width bins
    (module docstring). NaN when there is no sample; non-finite probabilities are dropped."""
    p, y = _checked(probs, outcomes)
    if not len(p):
        return math.nan
    ids = _bin_ids(p, n_bins)
    total = 0.0
    for b in np.unique(ids):
        m = ids == b
        total += m.sum() / len(p) * abs(float(y[m].mean()) - float(p[m].mean()))
    return float(total)


def reliability_curve(
    probs: Sequence[float] | np.ndarray, outcomes: Sequence[bool] | np.ndarray, n_bins: int = N_BINS
) -> dict[str, list[float]]:
    """Reliability-diagram data over ``n_bins`` equal-width bins, empty bins left out:
    ``prob_pred`` (mean probability per bin), ``prob_true`` (fraction of yes), ``count``
    (samples), from :func:`sklearn.calibration.calibration_curve` (``strategy="uniform"``)."""
    from sklearn.calibration import calibration_curve

    p, y = _checked(probs, outcomes)
    if not len(p):
        return {"prob_pred": [], "prob_true": [], "count": []}
    prob_true, prob_pred = calibration_curve(
        y.astype(int), p, n_bins=n_bins, strategy="uniform", pos_label=1
    )
    counts = np.bincount(_bin_ids(p, n_bins), minlength=n_bins)
    return {
        "prob_pred": [float(v) for v in prob_pred],
        "prob_true": [float(v) for v in prob_true],
        "count": [int(c) for c in counts[counts > 0]],
    }
