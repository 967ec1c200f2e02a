"""Query selection: top-k, core-set, k-means++, two-stage, box-level and region-level queries."""

from __future__ import annotations

import numpy as np
import pytest

from napari_al.core.selection import (
    QueryItem,
    kcenter_greedy,
    kmeanspp_seeding,
    rank_regions,
    select_boxes,
    select_images,
)

CENTERS = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]])


def clusters(seed: int = 0, per: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Four tight, far-apart clusters; returns (embeddings, cluster id)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([c + rng.normal(0, 1.0, (per, 2)) for c in CENTERS])
    return x, np.repeat(np.arange(len(CENTERS)), per)


def test_top_k_order_ties_and_budget() -> None:
    scores = np.array([0.2, 0.9, 0.5, 0.9, 0.1])
    items = select_images(scores, 3, ids=list("abcde"), breakdown={"entropy": scores * 2})
    assert [q.image for q in items] == ["b", "d", "c"]  # tie 0.9: input order
    assert all(isinstance(q, QueryItem) and q.unit == "image" and q.box is None for q in items)
    assert items[0].breakdown == {"entropy": pytest.approx(1.8)}
    assert len(select_images(scores, 99)) == 5
    assert select_images(scores, 0) == []
    assert select_images(np.zeros(0), 3) == []
    with pytest.raises(ValueError):
        select_images(np.array([np.nan, 1.0]), 1)
    with pytest.raises(ValueError, match="embeddings"):
        select_images(scores, 2, diversity="coreset")


def test_coreset_picks_one_per_cluster() -> None:
    x, cid = clusters()
    picks = kcenter_greedy(x, 4)
    assert sorted(cid[picks].tolist()) == [0, 1, 2, 3]
    # with already-labelled images in clusters 0 and 1, the next picks go to 2 and 3
    picks = kcenter_greedy(x, 2, labeled=CENTERS[:2])
    assert sorted(cid[picks].tolist()) == [2, 3]
    # through select_images on the whole pool
    scores = np.random.default_rng(1).random(len(x))
    items = select_images(scores, 4, x, diversity="coreset", candidate_factor=None)
    assert sorted(cid[[q.image for q in items]].tolist()) == [0, 1, 2, 3]
    assert [q.score for q in items] == sorted((q.score for q in items), reverse=True)


def test_coreset_first_pick_is_most_uncertain_and_deterministic() -> None:
    x, _ = clusters()
    scores = np.random.default_rng(2).random(len(x))
    a = select_images(scores, 3, x, diversity="coreset", candidate_factor=None)
    b = select_images(scores, 3, x, diversity="coreset", candidate_factor=None)
    assert [q.image for q in a] == [q.image for q in b]
    assert int(np.argmax(scores)) in [q.image for q in a]


@pytest.mark.parametrize("weighted", [False, True])
def test_kmeanspp_picks_one_per_cluster(weighted: bool) -> None:
    x, cid = clusters()
    for seed in range(5):
        w = np.random.default_rng(seed).random(len(x)) if weighted else None
        picks = kmeanspp_seeding(x, 4, weights=w, rng=seed)
        assert sorted(cid[picks].tolist()) == [0, 1, 2, 3]
    np.testing.assert_array_equal(
        kmeanspp_seeding(x, 4, rng=np.random.default_rng(9)),
        kmeanspp_seeding(x, 4, rng=np.random.default_rng(9)),
    )
    picks = kmeanspp_seeding(x, 2, labeled=CENTERS[2:], rng=0)
    assert sorted(cid[picks].tolist()) == [0, 1]


def test_kmeanspp_duplicates_and_oversized_budget() -> None:
    x = np.zeros((5, 3))
    picks = kmeanspp_seeding(x, 10, rng=0)
    assert sorted(picks.tolist()) == [0, 1, 2, 3, 4]
    assert sorted(kcenter_greedy(x, 10).tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("diversity", ["coreset", "kmeans++"])
def test_two_stage_respects_budget_and_candidate_pool(diversity: str) -> None:
    rng = np.random.default_rng(3)
    x, cid = clusters(per=25)
    scores = rng.random(len(x))
    budget, r = 5, 2.0
    top = set(np.argsort(-scores, kind="stable")[: int(budget * r)].tolist())
    for seed in range(3):
        items = select_images(
            scores, budget, x, diversity=diversity, candidate_factor=r, rng=seed, weighted=True
        )
        picked = [q.image for q in items]
        assert len(picked) == budget == len(set(picked))
        assert set(picked) <= top
    # diversity matters: with a pool covering every cluster, 4 picks cover the 4 clusters
    items = select_images(scores, 4, x, diversity=diversity, candidate_factor=None, rng=0)
    assert sorted(cid[[q.image for q in items]].tolist()) == [0, 1, 2, 3]


def test_two_stage_with_labeled_embeddings() -> None:
    x, cid = clusters()
    scores = np.where(cid == 0, 1.0, 0.1)  # cluster 0 most uncertain ...
    items = select_images(
        scores, 2, x, diversity="coreset", candidate_factor=None, labeled_embeddings=CENTERS[:1]
    )
    assert 0 not in cid[[q.image for q in items]]  # ... but already covered by labelled data


def test_select_boxes_across_images() -> None:
    scores = {"a": np.array([0.1, 0.9, 0.5]), "b": np.array([0.9, 0.8]), "c": np.zeros(0)}
    boxes = {k: np.arange(len(v) * 4, dtype=float).reshape(-1, 4) for k, v in scores.items()}
    bd = {k: {"entropy": v / 2} for k, v in scores.items()}
    items = select_boxes(scores, 3, boxes=boxes, breakdown=bd)
    assert [(q.image, q.index) for q in items] == [("a", 1), ("b", 0), ("b", 1)]
    assert items[0].unit == "box" and items[0].box == (4.0, 5.0, 6.0, 7.0)
    assert items[0].breakdown == {"entropy": pytest.approx(0.45)}
    capped = select_boxes(scores, 3, max_per_image=1)
    assert [(q.image, q.index) for q in capped] == [("a", 1), ("b", 0)]
    seq = select_boxes([np.array([0.3]), np.array([0.7])], 5)
    assert [(q.image, q.index, q.box) for q in seq] == [(1, 0, None), (0, 0, None)]
    assert select_boxes({}, 3) == [] and select_boxes(scores, 0) == []
    skip = {"a": np.array([False, True, False]), "b": np.array([True, False])}
    kept = select_boxes(scores, 3, skip=skip)
    assert [(q.image, q.index) for q in kept] == [("b", 1), ("a", 2), ("a", 0)]


def test_rank_regions_dense_uncertain_block_first() -> None:
    # a 300 x 500 image, 100 px blocks: 3 rows x 5 cols
    boxes = np.array(
        [
            [410, 210, 430, 230],  # block (row 2, col 4), uncertain
            [420, 250, 440, 270],  # same block
            [405, 205, 415, 215],  # same block
            [10, 10, 60, 60],  # block (0, 0), one confident box
            [150, 10, 190, 40],  # block (0, 1)
        ],
        float,
    )
    scores = np.array([0.8, 0.7, 0.9, 0.1, 0.3])
    regions = rank_regions((300, 500), boxes, scores, block=100, image="img")
    assert regions[0].box == (400.0, 200.0, 500.0, 300.0)
    assert regions[0].score == pytest.approx(2.4) and regions[0].unit == "region"
    assert [r.box for r in regions[1:]] == [(100.0, 0.0, 200.0, 100.0), (0.0, 0.0, 100.0, 100.0)]
    assert all(r.image == "img" for r in regions)
    # missed objects add density: three possibly-missed boxes in block (1, 2)
    missed = np.array([[210, 110, 230, 130], [240, 140, 260, 160], [250, 150, 270, 170]], float)
    regions = rank_regions((300, 500), boxes, scores, missed, block=100)
    assert regions[0].box == (200.0, 100.0, 300.0, 200.0)
    assert regions[0].breakdown == {"boxes": 0.0, "missed": 3.0}
    weighted = rank_regions((300, 500), boxes, scores, missed, missed_scores=[0.1] * 3, block=100)
    assert weighted[0].box == (400.0, 200.0, 500.0, 300.0)
    # edge blocks are clipped; empty blocks only on request
    full = rank_regions((250, 450, 3), boxes[:0], scores[:0], block=(100, 200), keep_empty=True)
    assert len(full) == 9 and (400.0, 200.0, 450.0, 250.0) in [r.box for r in full]
    assert rank_regions((250, 450), boxes[:0], scores[:0], block=100) == []
