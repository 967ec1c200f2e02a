"""Scorer contract (every registered scorer) and targeted behaviour of each scorer family."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from napari_al.core.data import Predictions, ScoringViews
from napari_al.core.scoring import (
    IMAGE_SCORERS,
    SCORERS,
    BoxScorer,
    CombinedScorer,
    ImageScorer,
    MissedObjectRegressor,
    MissingViewError,
    Strategy,
    box_iou,
    candidate_density,
    combine_scores,
    count_missed,
    describe,
    get_image_scorer,
    get_scorer,
    match_boxes,
    minmax_normalize,
    missed_features,
    possibly_missed,
    rank_normalize,
)

W, H = 320, 240
EMB = 6
FEAT = 4


# --------------------------------------------------------------------------------------------
# synthetic views
# --------------------------------------------------------------------------------------------


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Valid xyxy boxes inside a W x H image."""
    x1 = rng.uniform(0, W - 40, n)
    y1 = rng.uniform(0, H - 40, n)
    w = rng.uniform(8, 40, n)
    h = rng.uniform(8, 40, n)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)


def jitter(rng: np.random.Generator, boxes: np.ndarray, px: float) -> np.ndarray:
    b = boxes + rng.normal(0, px, boxes.shape)
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
    return np.clip(b, 0, [W, H, W, H]).astype(np.float32)


def make_predictions(
    boxes: np.ndarray,
    probs: np.ndarray,
    embedding: np.ndarray | None = None,
    proposals: np.ndarray | None = None,
) -> Predictions:
    """Predictions from boxes and (N, C+1) probs; labels = best foreground class."""
    probs = np.atleast_2d(np.asarray(probs, np.float32))
    n = probs.shape[0]
    labels = probs[:, 1:].argmax(axis=1).astype(np.int64) if n else np.zeros(0, np.int64)
    scores = probs[np.arange(n), labels + 1] if n else np.zeros(0, np.float32)
    return Predictions(
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=labels,
        scores=scores.astype(np.float32),
        probs=probs,
        features=np.zeros((n, FEAT), np.float32),
        embedding=np.zeros(EMB, np.float32) if embedding is None else embedding,
        proposals=proposals,
    )


def dirichlet(rng: np.random.Generator, shape: tuple[int, ...], k: int) -> np.ndarray:
    return rng.dirichlet(np.full(k, 0.5), size=shape).astype(np.float32)


def make_views(
    seed: int = 0,
    n: int = 6,
    n_classes: int = 3,
    *,
    t: int = 5,
    m: int = 3,
    n_noisy: int = 3,
    n_extra: int = 3,
    proposals: bool = True,
) -> ScoringViews:
    """Random but valid views with every optional field filled."""
    rng = np.random.default_rng(seed)
    k = n_classes + 1
    boxes = random_boxes(rng, n)
    probs = dirichlet(rng, (n,), k)
    base = make_predictions(
        boxes,
        probs,
        embedding=rng.normal(size=EMB).astype(np.float32),
        proposals=jitter(rng, boxes, 3.0) if proposals else None,
    )
    keep = rng.random(n) > 0.2
    flipped = make_predictions(jitter(rng, boxes[keep], 2.0), dirichlet(rng, (int(keep.sum()),), k))
    noisy = [make_predictions(jitter(rng, boxes, 2.0), probs) for _ in range(n_noisy)]
    extra = random_boxes(rng, n_extra)
    cand_probs = np.concatenate([probs, dirichlet(rng, (n_extra,), k)])
    candidates = make_predictions(np.concatenate([boxes, extra]), cand_probs)
    return ScoringViews(
        base=base,
        mc_probs=dirichlet(rng, (t, n), k),
        ensemble_probs=dirichlet(rng, (m, n), k),
        flipped=flipped,
        noisy=noisy,
        candidates=candidates,
    )


def views_with(base: Predictions, **kw: object) -> ScoringViews:
    return ScoringViews(base=base, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# contract
# --------------------------------------------------------------------------------------------

BOX_CASES = [
    *SCORERS,
    "entropy+consistency",
    "margin+vote_entropy+localization_stability",
]
CONTRACT_VIEWS = [
    pytest.param(dict(seed=1, n=7, n_classes=3), id="N7-C3"),
    pytest.param(dict(seed=2, n=1, n_classes=4), id="single-box"),
    pytest.param(dict(seed=3, n=5, n_classes=1), id="single-class"),
    pytest.param(dict(seed=4, n=12, n_classes=2, t=1, m=1, n_noisy=1), id="one-pass"),
]


def fitted_regressor() -> MissedObjectRegressor:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, EMB + 4))
    return MissedObjectRegressor().fit(x, rng.integers(0, 4, 20))


IMAGE_CASES = [
    *[pytest.param(name, {}, id=name) for name in IMAGE_SCORERS],
    pytest.param("missed", {"regressor": "fitted"}, id="missed-fitted"),
]


def build_image_scorer(name: str, params: dict) -> ImageScorer:
    params = dict(params)
    if params.get("regressor") == "fitted":
        params["regressor"] = fitted_regressor()
    return get_image_scorer(name, **params)


class TestScorerContract:
    @pytest.mark.parametrize("views_kw", CONTRACT_VIEWS)
    @pytest.mark.parametrize("name", BOX_CASES)
    def test_box_scorer_output(self, name: str, views_kw: dict) -> None:
        scorer = get_scorer(name)
        assert isinstance(scorer, BoxScorer)
        assert scorer.needs <= {"mc_probs", "ensemble_probs", "flipped", "noisy", "candidates"}
        lo, hi = scorer.range
        assert np.isfinite(lo) and np.isfinite(hi) and lo < hi
        views = make_views(**views_kw)
        s = scorer.score(views, np.random.default_rng(7))
        assert s.shape == (len(views.base),)
        assert s.dtype == np.float64
        assert np.all(np.isfinite(s))
        assert np.all((s >= lo) & (s <= hi))

    @pytest.mark.parametrize("name", BOX_CASES)
    def test_box_scorer_deterministic(self, name: str) -> None:
        scorer = get_scorer(name)
        views = make_views(seed=11, n=9)
        a = scorer.score(views, np.random.default_rng(3))
        b = scorer.score(views, np.random.default_rng(3))
        np.testing.assert_array_equal(a, b)

    @pytest.mark.parametrize("n_classes", [1, 3])
    @pytest.mark.parametrize("name", BOX_CASES)
    def test_box_scorer_empty(self, name: str, n_classes: int) -> None:
        views = make_views(seed=5, n=0, n_classes=n_classes)
        assert views.base.proposals is not None and len(views.base) == 0
        s = get_scorer(name).score(views, np.random.default_rng(0))
        assert s.shape == (0,)
        # Predictions.empty (proposals=None) too
        base = Predictions.empty(n_classes, FEAT, EMB)
        k = n_classes + 1
        empty = dataclasses.replace(
            views,
            base=base,
            mc_probs=np.zeros((4, 0, k)),
            ensemble_probs=np.zeros((2, 0, k)),
        )
        assert get_scorer(name).score(empty).shape == (0,)

    @pytest.mark.parametrize("name", BOX_CASES)
    def test_box_scorer_missing_view(self, name: str) -> None:
        scorer = get_scorer(name)
        for view in scorer.needs:
            views = dataclasses.replace(make_views(seed=6), **{view: None})
            with pytest.raises(MissingViewError, match=view):
                scorer.score(views)

    @pytest.mark.parametrize("views_kw", CONTRACT_VIEWS)
    @pytest.mark.parametrize(("name", "params"), IMAGE_CASES)
    def test_image_scorer_output(self, name: str, params: dict, views_kw: dict) -> None:
        scorer = build_image_scorer(name, params)
        assert isinstance(scorer, ImageScorer)
        lo, hi = scorer.range
        views = make_views(**views_kw)
        v = scorer.score(views, np.random.default_rng(0))
        assert isinstance(v, float) and np.isfinite(v) and lo <= v <= hi
        assert v == scorer.score(views, np.random.default_rng(0))

    @pytest.mark.parametrize(("name", "params"), IMAGE_CASES)
    def test_image_scorer_empty_and_missing(self, name: str, params: dict) -> None:
        scorer = build_image_scorer(name, params)
        views = make_views(seed=8, n=0, n_extra=2)
        v = scorer.score(views)
        assert np.isfinite(v) and v > 0  # the two candidates overlap no detection
        no_cand = dataclasses.replace(views, candidates=Predictions.empty(3, FEAT, EMB))
        assert np.isfinite(scorer.score(no_cand))
        for view in scorer.needs:
            with pytest.raises(MissingViewError, match=view):
                scorer.score(dataclasses.replace(views, **{view: None}))


def test_registry() -> None:
    assert set(SCORERS) == {
        "random",
        "score_band",
        "least_confidence",
        "margin",
        "entropy",
        "vote_entropy",
        "mutual_information",
        "consistency",
        "localization_stability",
        "localization_tightness",
    }
    assert set(IMAGE_SCORERS) == {"candidate_density", "missed"}
    with pytest.raises(ValueError, match="unknown scorer"):
        get_scorer("nope")
    with pytest.raises(ValueError, match="repeats"):
        get_scorer("entropy+entropy")
    assert get_scorer("vote_entropy", source="ensemble").needs == {"ensemble_probs"}
    combo = get_scorer("score_band+entropy", score_band={"a": 0.1, "b": 0.2})
    assert isinstance(combo, CombinedScorer) and combo.scorers[0].a == 0.1  # type: ignore[attr-defined]
    assert describe("consistency")["needs"] == ["flipped"]
    assert describe("localization_tightness")["requires_proposals"] is True
    assert describe("missed")["kind"] == "image"


# --------------------------------------------------------------------------------------------
# targeted behaviour
# --------------------------------------------------------------------------------------------

UNIFORM = [0.25, 0.25, 0.25, 0.25]
ONE_HOT = [0.01, 0.97, 0.01, 0.01]
TWO_BOXES = np.array([[10, 10, 50, 50], [100, 100, 150, 140]], np.float32)


@pytest.mark.parametrize("name", ["entropy", "margin", "least_confidence"])
def test_uncertainty_ranks_uniform_above_one_hot(name: str) -> None:
    base = make_predictions(TWO_BOXES, [ONE_HOT, UNIFORM])
    s = get_scorer(name).score(views_with(base))
    assert s[1] > s[0]
    assert s[1] == pytest.approx(1.0)  # uniform is the maximum of each normalised measure


def test_uncertainty_background_counts() -> None:
    """A box torn between background and one class is ambiguous (background is a class)."""
    base = make_predictions(TWO_BOXES, [[0.5, 0.5, 0.0, 0.0], [0.02, 0.96, 0.01, 0.01]])
    for name in ("entropy", "margin", "least_confidence"):
        s = get_scorer(name).score(views_with(base))
        assert s[0] > s[1]


def test_score_band() -> None:
    base = make_predictions(
        np.tile(TWO_BOXES, (2, 1)),
        [[0.5, 0.5], [0.05, 0.95], [0.9, 0.1], [0.45, 0.55]],
    )
    s = get_scorer("score_band", a=0.4, b=0.6).score(views_with(base))
    np.testing.assert_allclose(s[[0, 3]], 1.0)
    assert s[0] > s[1] and s[0] > s[2]
    assert s[2] > s[1]  # 0.1 is 0.3 from the band, 0.95 is 0.35 away
    with pytest.raises(ValueError):
        get_scorer("score_band", a=0.7, b=0.2)


def _committee_views(committee: np.ndarray, source: str) -> ScoringViews:
    base = make_predictions(TWO_BOXES, committee.mean(axis=0))
    field = "mc_probs" if source == "mc" else "ensemble_probs"
    return views_with(base, **{field: committee})


@pytest.mark.parametrize("source", ["mc", "ensemble"])
@pytest.mark.parametrize("name", ["vote_entropy", "mutual_information"])
def test_committee_disagreement_above_agreement(name: str, source: str) -> None:
    agree = np.array([[0.05, 0.9, 0.03, 0.02]] * 4)
    disagree = np.array(
        [
            [0.05, 0.9, 0.03, 0.02],
            [0.05, 0.03, 0.9, 0.02],
            [0.9, 0.05, 0.03, 0.02],
            [0, 0, 0.1, 0.9],
        ]
    )
    committee = np.stack([agree, disagree], axis=1)  # (T=4, N=2, K=4)
    s = get_scorer(name, source=source).score(_committee_views(committee, source))
    assert s[1] > s[0]
    assert s[0] == pytest.approx(0.0, abs=1e-9)
    if name == "vote_entropy":
        assert s[1] == pytest.approx(1.0)  # 4 votes for 4 different classes
    else:
        assert s[1] > 0.5


def test_mutual_information_low_when_passes_agree_on_uniform() -> None:
    uniform = np.full((5, 1, 4), 0.25)
    confident_disagreeing = np.eye(4)[[0, 1, 2, 3, 0]][:, None, :]
    committee = np.concatenate([uniform, confident_disagreeing], axis=1)
    views = _committee_views(committee, "mc")
    mi = get_scorer("mutual_information").score(views)
    assert mi[0] == pytest.approx(0.0, abs=1e-9)
    assert mi[1] > 0.8
    # entropy of the mean cannot tell them apart: both are (nearly) uniform
    assert get_scorer("entropy").score(views)[0] == pytest.approx(1.0)


def test_consistency_moving_box_above_stable() -> None:
    probs = [[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]]
    boxes = np.array([[10, 10, 50, 50], [100, 100, 150, 140], [200, 20, 240, 60]], np.float32)
    base = make_predictions(boxes, probs)
    flipped_boxes = boxes.copy()
    flipped_boxes[1] += [15, 0, 15, 0]  # moves under the flip
    flipped = make_predictions(flipped_boxes[:2], probs[:2])  # box 2 disappears
    s = get_scorer("consistency").score(views_with(base, flipped=flipped))
    assert s[0] == pytest.approx(0.0, abs=1e-9)
    assert 0 < s[1] < 1
    assert s[2] == 1.0
    # class flip at the same place: JS term only
    flipped2 = make_predictions(boxes, [[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    s2 = get_scorer("consistency", matching="hungarian").score(views_with(base, flipped=flipped2))
    assert s2[1] > s2[0] and s2[0] == pytest.approx(0.0, abs=1e-9)


def test_localization_stability_jitter_above_stable() -> None:
    rng = np.random.default_rng(0)
    base = make_predictions(TWO_BOXES, [[0.1, 0.9], [0.1, 0.9]])
    noisy = []
    for _ in range(4):
        b = TWO_BOXES.copy()
        b[1] = jitter(rng, TWO_BOXES[1:2], 8.0)[0]
        noisy.append(make_predictions(b, [[0.1, 0.9], [0.1, 0.9]]))
    scorer = get_scorer("localization_stability")
    s = scorer.score(views_with(base, noisy=noisy))
    assert s[0] == pytest.approx(0.0, abs=1e-9) and s[1] > 0.05
    # confidence weighting: the same instability on a less confident box scores lower
    base_low = make_predictions(TWO_BOXES, [[0.1, 0.9], [0.6, 0.4]])
    s_low = scorer.score(views_with(base_low, noisy=noisy))
    assert s_low[1] == pytest.approx(s[1] * 0.4 / 0.9, rel=1e-5)
    # a box the noisy views never find is maximally unstable (times its confidence)
    lost = [make_predictions(TWO_BOXES[:1], [[0.1, 0.9]]) for _ in range(2)]
    assert scorer.score(views_with(base, noisy=lost))[1] == pytest.approx(0.9, rel=1e-6)


def test_localization_tightness() -> None:
    proposals = TWO_BOXES + np.array([[1, 1, 1, 1], [30, 25, 30, 25]], np.float32)
    base = dataclasses.replace(
        make_predictions(TWO_BOXES, [[0.1, 0.9], [0.1, 0.9]]), proposals=proposals
    )
    s = get_scorer("localization_tightness").score(views_with(base))
    assert s[1] > s[0]
    np.testing.assert_allclose(s, 1 - np.diag(box_iou(proposals, TWO_BOXES)), rtol=1e-6)
    one_stage = dataclasses.replace(base, proposals=None)
    with pytest.raises(MissingViewError, match="two-stage"):
        get_scorer("localization_tightness").score(views_with(one_stage))


# --------------------------------------------------------------------------------------------
# missed objects
# --------------------------------------------------------------------------------------------


def test_missed_many_unmatched_candidates_above_none() -> None:
    base = make_predictions(TWO_BOXES, [[0.1, 0.9], [0.1, 0.9]])
    far = np.array([[200, 20, 230, 50], [250, 150, 290, 190], [20, 180, 60, 220]], np.float32)
    # candidates overlapping the detections (IoU > 0.3) are not "missed"
    near = TWO_BOXES + 2
    busy = make_predictions(np.concatenate([TWO_BOXES, far]), [[0.1, 0.9]] * 2 + [[0.8, 0.2]] * 3)
    quiet = make_predictions(np.concatenate([TWO_BOXES, near]), [[0.1, 0.9]] * 2 + [[0.8, 0.2]] * 2)
    v_busy, v_quiet = views_with(base, candidates=busy), views_with(base, candidates=quiet)
    for name in IMAGE_SCORERS:
        scorer = get_image_scorer(name)
        assert scorer.score(v_busy) > scorer.score(v_quiet) == 0.0
    assert candidate_density(v_busy, weighted=False) == 3.0
    assert candidate_density(v_busy) == pytest.approx(0.6)
    sugg = possibly_missed(v_busy)
    assert len(sugg) == 3 and np.all(np.isin(sugg.boxes, far))
    assert len(possibly_missed(v_quiet)) == 0
    assert len(possibly_missed(views_with(base))) == 0


def test_count_missed() -> None:
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]])
    pred = np.array([[0, 0, 10, 11], [21, 21, 30, 30], [0, 0, 10, 10]])
    assert count_missed(gt, pred) == 1
    assert count_missed(gt, pred, gt_labels=[0, 1, 0], pred_labels=[0, 0, 0]) == 2
    assert count_missed(gt, np.zeros((0, 4))) == 3
    assert count_missed(np.zeros((0, 4)), pred) == 0


def test_regressor_learns_linear_relation_and_serialises() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=8)
    x = rng.normal(size=(300, 8))
    y = x @ w + 5.0 + rng.normal(0, 0.05, 300)
    reg = MissedObjectRegressor(alpha=0.1).fit(x[:200], y[:200])
    pred = reg.predict(x[200:])
    assert np.sqrt(np.mean((pred - np.maximum(y[200:], 0)) ** 2)) < 0.15
    clone = MissedObjectRegressor.from_dict(json.loads(json.dumps(reg.to_dict())))
    np.testing.assert_allclose(clone.predict(x[200:]), pred)
    np.testing.assert_allclose(
        MissedObjectRegressor.from_bytes(reg.to_bytes()).predict(x), reg.predict(x)
    )
    assert reg.predict(x[0]).shape == (1,)
    # more features than samples: dual form
    xw = rng.normal(size=(30, 100))
    yw = xw[:, 0] * 2 + 3
    reg_w = MissedObjectRegressor(alpha=1e-3).fit(xw, yw)
    np.testing.assert_allclose(reg_w.predict(xw), np.maximum(yw, 0), atol=1e-2)
    with pytest.raises(ValueError, match="features"):
        reg.predict(np.zeros((1, 3)))
    with pytest.raises(RuntimeError, match="not fitted"):
        MissedObjectRegressor().predict(x)


def test_missed_scorer_blends_regressor() -> None:
    views = make_views(seed=3, n=4, n_extra=0)
    feats = missed_features(views)
    assert feats.shape == (EMB + 4,)
    x = np.random.default_rng(1).normal(size=(10, feats.size))
    reg = MissedObjectRegressor().fit(x, np.full(10, 4.0))  # always predicts 4
    scorer = get_image_scorer("missed", regressor=reg, regressor_weight=0.5)
    assert candidate_density(views) == 0.0
    assert scorer.score(views) == pytest.approx(2.0)
    assert get_image_scorer("missed").score(views) == 0.0  # unfitted: density only


# --------------------------------------------------------------------------------------------
# combination and strategies
# --------------------------------------------------------------------------------------------


def test_normalisers_and_combine() -> None:
    np.testing.assert_allclose(rank_normalize([3.0, 1.0, 2.0, 2.0]), [1.0, 0.0, 0.5, 0.5])
    np.testing.assert_allclose(rank_normalize([7.0, 7.0]), [0.5, 0.5])
    np.testing.assert_allclose(minmax_normalize([1.0, 3.0, 2.0]), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(minmax_normalize([2.0, 2.0]), [0.5, 0.5])
    a, b = np.array([0.1, 0.2, 0.9]), np.array([100.0, 0.0, 50.0])
    np.testing.assert_allclose(combine_scores({"a": a, "b": b}), [0.5, 0.25, 0.75])
    np.testing.assert_allclose(
        combine_scores([a, b], "minmax", weights=[1, 0]), minmax_normalize(a)
    )
    assert combine_scores([np.zeros(0)]).shape == (0,)
    with pytest.raises(ValueError):
        combine_scores([a, b[:2]])


def test_combined_scorer_is_mean_of_components() -> None:
    views = make_views(seed=9, n=8)
    combo = get_scorer("entropy+margin")
    expected = (get_scorer("entropy").score(views) + get_scorer("margin").score(views)) / 2
    np.testing.assert_allclose(combo.score(views), expected)
    assert combo.name == "entropy+margin"
    assert get_scorer("entropy+consistency").needs == {"flipped"}


def test_strategy_pool() -> None:
    pool = [make_views(seed=s, n=n) for s, n in enumerate([5, 0, 3, 8])]
    strat = Strategy("entropy+consistency+missed", aggregation="max")
    assert strat.needs == {"flipped", "candidates"}
    res = strat.score_pool(iter(pool), np.random.default_rng(0))
    assert res.image_scores.shape == (4,)
    assert np.all((res.image_scores >= 0) & (res.image_scores <= 1))
    assert set(res.breakdown) == {"entropy", "consistency", "missed"}
    assert res.breakdown["entropy"][1] == 0.0  # empty image aggregates to 0
    assert [b.shape for b in res.box_scores] == [(5,), (0,), (3,), (8,)]
    np.testing.assert_allclose(
        res.breakdown["entropy"][0], get_scorer("entropy").score(pool[0]).max()
    )
    single = Strategy("entropy").score_pool(pool)
    np.testing.assert_allclose(single.image_scores[0], get_scorer("entropy").score(pool[0]).mean())
    np.testing.assert_allclose(single.box_scores[3], get_scorer("entropy").score(pool[3]))
    only_image = Strategy("missed").score_pool(pool)
    assert [b.shape for b in only_image.box_scores] == [(5,), (0,), (3,), (8,)]
    with pytest.raises(ValueError):
        Strategy("entropy", params={"margin": {}})


def test_match_boxes_greedy_and_hungarian() -> None:
    iou = np.array([[0.9, 0.8], [0.85, 0.0]])
    r, c = match_boxes(iou, 0.5, "greedy")
    assert r.tolist() == [0] and c.tolist() == [0]  # greedy takes 0.9 first, row 1 starves
    r, c = match_boxes(iou, 0.5, "hungarian")
    assert r.tolist() == [0, 1] and c.tolist() == [1, 0]
