"""Calibrated scores (napari_al.core.calibration): fitting, fallbacks, JSON, calibration error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_al.core.calibration import (
    ScoreCalibration,
    expected_calibration_error,
    fit_calibration,
    reliability_curve,
)


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores uniform on [0, 1] whose true P(yes) is score**2 (an over-confident detector)."""
    rng = np.random.default_rng(seed)
    s = rng.random(n)
    return s, rng.random(n) < s**2


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibration_lowers_the_error_on_held_out_samples(method: str) -> None:
    s, y = _overconfident(2000, 0)
    cal = fit_calibration(s, y, method=method)
    s2, y2 = _overconfident(4000, 1)
    before = expected_calibration_error(s2, y2)
    after = expected_calibration_error(cal.predict(s2), y2)
    assert before > 0.12  # E|s - s^2| = 1/6
    assert after < 0.05 and after < before / 3
    # the 0.23 break-even moves up: a score of 0.3 is right about 9% of the time
    assert cal.predict([0.3])[0] < 0.2


def test_isotonic_output_is_monotone_and_in_range() -> None:
    s, y = _overconfident(500, 2)
    cal = fit_calibration(s, y, method="isotonic")
    grid = np.linspace(-0.5, 1.5, 2001)
    p = cal.predict(grid)
    assert np.all(np.diff(p) >= 0)
    assert p.min() >= 0 and p.max() <= 1


def test_isotonic_applies_exactly_as_sklearn_predicts() -> None:
    from sklearn.isotonic import IsotonicRegression

    s, y = _overconfident(300, 3)
    cal = fit_calibration(s, y, method="isotonic")
    n_yes, n_no = int(y.sum()), int((~y).sum())
    target = np.where(y, (n_yes + 1) / (n_yes + 2), 1 / (n_no + 2))  # Platt's targets
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(s, target)
    grid = np.linspace(-0.2, 1.2, 777)
    np.testing.assert_allclose(cal.predict(grid), iso.predict(grid), atol=1e-12)


def test_a_few_yes_answers_never_make_an_answer_certain() -> None:
    """Fitted on 0 and 1, isotonic regression's top block of all-yes answers said P(yes) = 1
    (and its bottom P(yes) = 0), so the dialog planner's P(change) = 1 - P(yes) was 0 and every
    query strategy's gain vanished (found by a newcomer: all questions tied)."""
    s = np.array([0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99])
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1, 1, 1], bool)
    p = fit_calibration(s, y, method="isotonic", min_samples=5).predict(np.linspace(0, 1, 101))
    assert p.max() == pytest.approx(7 / 8) and p.min() == pytest.approx(1 / 6)
    assert np.all(np.diff(p) >= 0)


def test_per_class_maps_and_the_pooled_fallback() -> None:
    rng = np.random.default_rng(4)
    s = rng.random(300)
    # "a": 200 samples, right twice as often as "b" at the same score; "b": 60 samples;
    # "c": 10 samples, too few for its own map; "d": one answer only
    cls = np.asarray(["a"] * 200 + ["b"] * 60 + ["c"] * 10 + ["d"] * 30, object)
    p_true = np.where(cls == "a", s, s / 2)
    y = rng.random(300) < p_true
    y[cls == "d"] = False
    cal = fit_calibration(s, y, list(cls), min_samples=20, min_class_samples=40)
    assert set(cal.per_class) == {"a", "b"}
    assert cal.pooled.kind == "isotonic" and cal.pooled.n == 300
    assert cal.map_for("c") is cal.pooled and cal.map_for("d") is cal.pooled
    assert cal.map_for("unknown") is cal.pooled
    pa, pb = cal.predict([0.9, 0.9], ["a", "b"])
    assert pa > pb + 0.2


def test_too_few_or_one_sided_samples_give_the_identity() -> None:
    for s, y in (
        ([], []),
        ([0.2, 0.9, 0.5], [False, True, True]),  # fewer than min_samples
        (np.linspace(0, 1, 50), np.zeros(50, bool)),  # one answer only
    ):
        cal = fit_calibration(s, y, ["x"] * len(s))
        assert cal.is_identity
        np.testing.assert_array_equal(cal.predict([0.1, 0.23, 0.9]), [0.1, 0.23, 0.9])
    cal = fit_calibration([0.5] * 30, [True, False] * 15, method="none")
    assert cal.is_identity and cal.method == "none"
    assert ScoreCalibration.from_dict(None).is_identity


@pytest.mark.parametrize("method", ["isotonic", "platt", "none"])
def test_json_round_trip_is_exact(method: str) -> None:
    rng = np.random.default_rng(5)
    s = rng.random(400)
    cls = list(rng.choice(["RBC", "WBC", "Platelets"], 400))
    y = rng.random(400) < s**1.5
    cal = fit_calibration(s, y, cls, method=method)
    back = ScoreCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal
    grid = np.linspace(0, 1, 101)
    for name in ("RBC", "WBC", "Platelets", None):
        names = None if name is None else [name] * len(grid)
        np.testing.assert_array_equal(back.predict(grid, names), cal.predict(grid, names))


def test_ece_and_reliability_curve_by_hand() -> None:
    # bin [0.1, 0.2]: p 0.15 x2, one yes -> |0.5 - 0.15|; bin (0.8, 0.9]: p 0.85 x2, two yes
    p = [0.15, 0.15, 0.85, 0.85]
    y = [True, False, True, True]
    assert expected_calibration_error(p, y) == pytest.approx(0.5 * 0.35 + 0.5 * 0.15)
    curve = reliability_curve(p, y)
    assert curve["prob_pred"] == pytest.approx([0.15, 0.85])
    assert curve["prob_true"] == pytest.approx([0.5, 1.0])
    assert curve["count"] == [2, 2]
    assert np.isnan(expected_calibration_error([], []))
    assert expected_calibration_error([0.3] * 10, [True] * 3 + [False] * 7) == pytest.approx(0)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown calibration method"):
        fit_calibration([0.5], [True], method="beta")
    with pytest.raises(ValueError, match="one entry per box"):
        fit_calibration([0.5, 0.6], [True])
    with pytest.raises(ValueError, match="unknown score map kind"):
        ScoreCalibration.from_dict({"pooled": {"kind": "spline"}})
