"""Training augmentations: parsing, flips of images and boxes together, scale and colour jitter,
and that the default keeps the seeded training of left-right flips bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_al.core.engine import Detector, TrainingExample, train
from napari_al.core.engine.augment import Augmentation, Flip, apply_colour
from napari_al.core.engine.training import make_target

torch.set_num_threads(2)


def test_parse_reads_names_values_and_defaults() -> None:
    a = Augmentation.parse("hflip, vflip,scale=0.3,color")
    assert a == Augmentation(hflip=True, vflip=True, scale=0.3, colour=0.2)
    assert Augmentation.parse(str(a)) == a
    assert Augmentation.parse("none") == Augmentation(hflip=False)
    assert Augmentation.parse("") == Augmentation(hflip=False)
    assert str(Augmentation(hflip=False)) == "none"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rotate", "unknown augmentation 'rotate'"),
        ("scale=big", "not a number"),
        ("scale=1.5", "[0, 1)"),
    ],
)
def test_parse_names_the_bad_part(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
        Augmentation.parse(text)


@pytest.mark.parametrize("flip", [Flip(True, False), Flip(False, True), Flip(True, True)])
def test_a_flipped_box_still_frames_its_object(flip: Flip) -> None:
    """A bright rectangle and its box, flipped together: the box frames the bright pixels."""
    h, w = 60, 90
    img = np.zeros((h, w, 3), np.uint8)
    box = np.array([[10, 5, 30, 25]], np.float32)  # xyxy, pixel edges
    img[5:25, 10:30] = 255
    out_img = flip.image(img)
    (x1, y1, x2, y2) = flip.boxes(box, h, w)[0]
    ys, xs = np.nonzero(out_img[..., 0])
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)


def test_make_target_flips_every_kind_of_box_with_the_image() -> None:
    h, w = 64, 96
    img = np.zeros((h, w, 3), np.uint8)
    img[8:24, 4:20] = 255
    ex = TrainingExample(
        image=img,
        boxes=np.array([[4, 8, 20, 24]], np.float32),
        labels=np.array([0]),
        background_boxes=np.array([[40, 10, 60, 30]], np.float32),
        ignore_regions=np.array([[70, 40, 90, 60]], np.float32),
    )
    tensor, target = make_target(ex, img, flip=Flip(vertical=True))
    assert target["boxes"].tolist() == [[4, 40, 20, 56]]
    assert target["bg_boxes"].tolist() == [[40, 34, 60, 54]]
    assert target["ignore"].tolist() == [[70, 4, 90, 24]]
    assert float(tensor[0, 40:56, 4:20].min()) == 1.0
    # a plain True is still a left-right flip
    _, target = make_target(ex, img, flip=True)
    assert target["boxes"].tolist() == [[76, 8, 92, 24]]


def test_colour_jitter_is_seeded_stays_in_range_and_keeps_grey_grey() -> None:
    jitter = Augmentation(colour=0.4).colour_jitter()
    rgb = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    a = apply_colour(jitter, rgb.clone())
    torch.manual_seed(1)
    b = apply_colour(jitter, rgb.clone())
    assert torch.equal(a, b)
    assert not torch.equal(a, rgb)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    grey = rgb[:1].repeat(3, 1, 1)
    out = apply_colour(jitter, grey.clone())
    assert torch.allclose(out[0], out[1], atol=1e-6) and torch.allclose(out[1], out[2], atol=1e-6)
    assert Augmentation().colour_jitter() is None


def _tiny_example(seed: int = 0) -> TrainingExample:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (96, 128, 3), dtype=np.uint8)
    img[20:50, 30:70] = 220
    return TrainingExample(
        image=img, boxes=np.array([[30, 20, 70, 50]], np.float32), labels=np.array([0])
    )


def _weights(det: Detector) -> list[torch.Tensor]:
    return [p.detach().clone() for p in det.model.parameters()]


@pytest.mark.slow  # 10 s; the workflow's augmentation test below stays in the default suite
def test_default_augmentation_trains_bit_for_bit_as_left_right_flips() -> None:
    """``augment="hflip"`` draws the same flips as the old ``augment_flip=True``."""
    runs = []
    for kw in ({}, {"augment": "hflip"}, {"augment_flip": False}):
        det = Detector(["cell"], min_size=96, max_size=128, seed=0)
        train(det, [_tiny_example(0), _tiny_example(1)], steps=3, seed=0, **kw)
        runs.append(_weights(det))
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], runs[2], strict=True))


def test_scale_jitter_varies_the_input_size_and_restores_the_transform() -> None:
    det = Detector(["cell"], min_size=96, max_size=128, seed=0)
    transform = det.model.transform
    before = (transform.min_size, transform.max_size)
    heights: list[int] = []
    hook = det.model.backbone.register_forward_pre_hook(
        lambda _m, args: heights.append(int(args[0].shape[-2]))
    )
    try:
        train(det, [_tiny_example()], steps=8, seed=0, batch_size=1, augment="scale=0.5")
        jittered = set(heights)
        heights.clear()
        train(det, [_tiny_example()], steps=4, seed=0, batch_size=1, augment="hflip")
    finally:
        hook.remove()
    assert len(jittered) > 1, jittered
    assert len(set(heights)) == 1
    assert (transform.min_size, transform.max_size) == before


def test_scale_jitter_restores_the_transform_when_training_raises() -> None:
    det = Detector(["cell"], min_size=96, max_size=128, seed=0)
    before = (det.model.transform.min_size, det.model.transform.max_size)

    def stop() -> bool:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        train(det, [_tiny_example()], steps=2, augment="scale", should_stop=stop)
    assert (det.model.transform.min_size, det.model.transform.max_size) == before


def test_train_settings_refuse_a_bad_augmentation_with_one_line() -> None:
    from napari_al.core.workflow import SettingsError, TrainSettings

    assert TrainSettings().augment == "hflip"
    with pytest.raises(SettingsError, match=r"augment 'scale=1' is not valid; expected e\.g\."):
        TrainSettings(augment="scale=1")


def test_the_workflow_trains_with_the_augmentation_and_records_it(labelled_project) -> None:
    from conftest import TINY_MODEL

    from napari_al.core import workflow
    from napari_al.core.store import ProjectStore

    with ProjectStore.open(labelled_project) as store:
        detector = workflow.load_model(store, workflow.ModelSettings(**TINY_MODEL))
        settings = workflow.TrainSettings(steps=2, augment="vflip,colour=0.1")
        outcome = workflow.train_model(store, detector, settings)
        assert outcome.model_version == 1
        assert store.latest_model_version().metrics["augment"] == "vflip,colour=0.1"


def test_an_augmentation_given_twice_is_refused_not_last_wins() -> None:
    from napari_al.core.workflow import SettingsError, TrainSettings

    with pytest.raises(ValueError, match="'scale' is given twice"):
        Augmentation.parse("scale=0.25,hflip,scale=0.1")
    with pytest.raises(SettingsError, match="augment gives colour more than once"):
        TrainSettings(augment="color=0.1,colour=0.2")


@pytest.mark.parametrize("shape", [(48, 1, 3), (1, 64, 3), (1, 1, 3), (48, 1), (1, 1)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_a_flipped_image_of_one_pixel_a_side_becomes_a_tensor(shape, dtype) -> None:
    """A flip of an axis of length 1 is a view numpy calls contiguous (so no copy was made)
    with a negative stride, which ``torch.from_numpy`` refuses: a 1 px wide labelled image
    crashed every training with left-right flips (found by a newcomer)."""
    from napari_al.core.engine.inference import image_to_tensor

    rng = np.random.default_rng(0)
    img = (rng.random(shape) * (255 if dtype == np.uint8 else 1)).astype(dtype)
    for flip in (Flip(True, False), Flip(False, True), Flip(True, True)):
        flipped = flip.image(img)
        t = image_to_tensor(flipped)
        expect = np.asarray(flipped, np.float64)
        if dtype == np.uint8:
            expect = expect / 255.0
        elif dtype == np.uint16:
            expect = expect / 65535.0
        if expect.ndim == 2:
            expect = np.repeat(expect[:, :, None], 3, axis=2)
        np.testing.assert_allclose(t.permute(1, 2, 0).numpy(), expect, atol=1e-6)


def test_a_one_pixel_wide_image_trains_with_both_flips() -> None:
    det = Detector(["cell"], min_size=96, max_size=128, seed=0)
    img = np.full((48, 1, 3), 200, np.uint8)
    ex = TrainingExample(
        image=img, boxes=np.array([[0, 10, 1, 40]], np.float32), labels=np.array([0])
    )
    train(det, [ex, _tiny_example()], steps=4, seed=0, batch_size=2, augment="hflip,vflip")


def test_an_image_one_pixel_thin_and_longer_than_max_size_trains_and_predicts() -> None:
    """torchvision scales by ``max_size / long side`` and floors each side: a 1 x 1,400 px
    image at ``max_size`` 128 became 0 x 128 px and ``interpolate`` raised, in training,
    prediction and ranking alike (found by a newcomer). The thin side now stays 1 px."""
    det = Detector(["cell"], min_size=96, max_size=128, seed=0)
    thin = np.full((1, 1400, 3), 90, np.uint8)
    tall = np.full((640, 1, 3), 90, np.uint8)
    pred_thin, pred_tall, _ = det.predict([thin, tall, np.zeros((48, 64, 3), np.uint8)])
    for pred, (h, w) in ((pred_thin, (1, 1400)), (pred_tall, (640, 1))):
        b = pred.boxes.reshape(-1, 4)
        assert np.all(b[:, [0, 2]] <= w + 1e-3) and np.all(b[:, [1, 3]] <= h + 1e-3)
    ex = TrainingExample(
        image=tall, boxes=np.array([[0, 10, 1, 400]], np.float32), labels=np.array([0])
    )
    train(det, [ex, _tiny_example()], steps=3, seed=0, batch_size=2, augment="hflip,vflip")
