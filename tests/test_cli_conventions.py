"""Command-line conventions (issue 16 item 18): ``--epochs`` beside ``--steps``, ``--threads``
on the round commands, ``--version``, and Ctrl+C during ``train``. Inputs are generated here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

import napari_al
from napari_al.cli import main
from napari_al.core.store import ProjectStore

TINY = ["--min-size", "64", "--max-size", "96", "--device", "cpu"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: --version, usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def make_project(folder: Path, n: int = 3) -> Path:
    """``n`` complete 64x48 images in train, one box each, class ``cell``; no model."""
    from napari_al.core.data import BoxRecord, Dataset, ImageRecord

    recs = []
    for i in range(n):
        path = folder / f"im{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (i * 60, 120, 40)).save(path)
        recs.append(ImageRecord(path, 64, 48, [BoxRecord(4, 4, 30, 30, "cell")], "train", True))
    with ProjectStore.create(folder) as store:
        store.import_dataset(Dataset(["cell"], recs))
    return folder


def test_version(capsys) -> None:
    code, out, _err = run(capsys, "--version")
    assert code == 0 and out.strip() == f"napari-al {napari_al.__version__}"


def test_epochs_and_steps_are_exclusive(tmp_path: Path, capsys) -> None:
    code, _out, err = run(capsys, "train", str(tmp_path), "--steps", "3", "--epochs", "1")
    assert code == 2 and "--epochs: not allowed with argument --steps" in err
    code, _out, err = run(capsys, "train", str(tmp_path), "--epochs", "0")
    assert "--epochs must be more than 0; got 0.0" in err


def test_epochs_are_passes_over_the_training_examples(tmp_path: Path, capsys) -> None:
    """3 examples at batch size 2: one epoch is ceil(3 / 2) = 2 steps, so 1.5 epochs is 3."""
    project = make_project(tmp_path / "p", n=3)
    code, out, err = run(
        capsys, "train", str(project), "--epochs", "1.5", "--batch-size", "2", *TINY
    )
    assert code == 0, err
    assert "trained 3 steps on 3 images" in out
    with ProjectStore.open(project) as store:
        (version,) = store.model_versions()
    assert version.metrics["epochs"] == 1.5 and version.metrics["steps"] == 3


def test_settings_keep_epochs_with_their_unit() -> None:
    import dataclasses

    from napari_al.core.workflow import TrainSettings

    field = {f.name: f for f in dataclasses.fields(TrainSettings)}["epochs"]
    assert (
        TrainSettings().epochs is None and "ceil(examples / batch_size)" in field.metadata["help"]
    )


@pytest.mark.parametrize("command", ["train", "predict", "evaluate", "rank"])
def test_threads_apply_to_the_command(tmp_path: Path, capsys, monkeypatch, command) -> None:
    """``--threads N`` sets torch's CPU threads at the CLI entry (napari_al.runtime)."""
    import napari_al.runtime as runtime

    calls: list[int | None] = []
    monkeypatch.setattr(runtime, "set_torch_threads", calls.append)
    ProjectStore.create(tmp_path / "empty").close()  # no classes: the command stops early
    code, _out, err = run(capsys, command, str(tmp_path / "empty"), "--threads", "3")
    assert code == 1 and "no classes yet" in err
    assert calls == [3]
    code, _out, err = run(capsys, command, str(tmp_path / "empty"), "--threads", "0")
    assert code == 2 and "--threads: must be at least 1" in err


def test_ctrl_c_in_train_names_the_model_kept(tmp_path: Path, capsys, monkeypatch) -> None:
    """An interrupt inside the training run: nothing saved, the previous version named, 130."""
    from napari_al.core import workflow

    project = make_project(tmp_path / "p", n=2)
    with ProjectStore.open(project) as store:
        ckpt = project / "models" / "model-v0001.pt"
        ckpt.parent.mkdir()
        ckpt.write_bytes(b"stand-in")
        store.add_model_version(ckpt, "fasterrcnn_mobilenet_v2_fpn")

    class Stub:
        model_version = 1

    def interrupted(*_a, progress=None, **_k):
        progress(1, 10, 1.0, 0.1)
        raise KeyboardInterrupt

    monkeypatch.setattr(workflow, "load_model", lambda *a, **k: Stub())
    monkeypatch.setattr(workflow, "describe", lambda d: "stub")
    monkeypatch.setattr(workflow, "train_model", interrupted)
    code, out, err = run(capsys, "train", str(project), "--steps", "10")
    assert code == 130 and "trained" not in out
    assert "training interrupted: nothing was saved and model version 1 stays in use" in err
    with ProjectStore.open(project) as store:
        assert len(store.model_versions()) == 1


@pytest.mark.parametrize(
    ("command", "target", "kept"),
    [
        ("predict", "predict_images", "the images predicted before it keep their new boxes"),
        ("rank", "rank_pool", "the project's previous query list stays"),
    ],
)
def test_ctrl_c_in_predict_or_rank_says_what_is_kept(
    tmp_path: Path, capsys, monkeypatch, command: str, target: str, kept: str
) -> None:
    from napari_al.core import workflow

    project = make_project(tmp_path / "p", n=2)

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    class Stub:
        model_version = 0

    monkeypatch.setattr(workflow, "load_model", lambda *a, **k: Stub())
    monkeypatch.setattr(workflow, "describe", lambda d: "stub")
    monkeypatch.setattr(workflow, target, interrupted)
    code, _out, err = run(capsys, command, str(project))
    assert code == 130 and f"napari-al: interrupted; {kept}" in err


def test_ctrl_c_in_export_removes_what_it_wrote_and_says_so(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    import shutil

    project = make_project(tmp_path / "p", n=3)
    out = tmp_path / "exported"
    real_copy, calls = shutil.copy2, []

    def copy_then_ctrl_c(*a, **k):
        calls.append(real_copy(*a, **k))
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "copy2", copy_then_ctrl_c)
    code, _out, err = run(
        capsys, "export", str(project), str(out), "--format", "yolo", "--copy-images", "--all"
    )
    assert code == 130 and len(calls) == 2
    assert "napari-al: interrupted; the files it had written were removed" in err
    assert not out.exists()


def test_sigint_during_a_real_training_run_keeps_the_previous_model(tmp_path: Path) -> None:
    """Ctrl+C (SIGINT) to a real ``napari-al train``: exit 130, nothing saved, version named."""
    project = make_project(tmp_path / "p", n=2)
    env = dict(os.environ, PYTHONPATH=str(Path(napari_al.__file__).parent.parent))
    cli = [sys.executable, "-m", "napari_al.cli"]
    first = subprocess.run(
        [*cli, "train", str(project), "--steps", "1", *TINY], env=env, capture_output=True
    )
    assert first.returncode == 0, first.stderr.decode()[-2000:]
    proc = subprocess.Popen(
        [*cli, "train", str(project), "--steps", "100000", *TINY],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.set_blocking(proc.stderr.fileno(), False)
    seen, t0 = b"", time.monotonic()
    while b"loss=" not in seen and time.monotonic() - t0 < 180 and proc.poll() is None:
        seen += proc.stderr.read() or b""
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    err = (seen + err).decode()
    assert proc.returncode == 130, err[-2000:]
    assert "training interrupted: nothing was saved and model version 1 stays in use" in err
    assert "Traceback" not in err and b"trained" not in out
    with ProjectStore.open(project) as store:
        assert [v.id for v in store.model_versions()] == [1]
    assert sorted(p.name for p in (project / "models").iterdir()) == ["model-v0001.pt"]


def test_the_first_ctrl_c_asks_to_stop_and_the_second_interrupts() -> None:
    """``stop_on_sigint``: SIGINT sets a flag a run polls between steps (it cannot be lost in
    a finalizer as a KeyboardInterrupt can); a second SIGINT interrupts; the handler is put
    back afterwards."""
    from napari_al.cli.common import stop_on_sigint

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), stop_on_sigint() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert stop.is_set()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is before


#: Run in the child before the CLI: the default architecture's COCO weights cannot be had.
NO_COCO_MNV2 = (
    "from napari_al.core.engine import convert_tf_mnv2; convert_tf_mnv2.graph_path = lambda: None"
)


@pytest.mark.parametrize(
    ("arch", "patch", "needle"),
    [
        (["--arch", "fasterrcnn_resnet50_fpn_v2"], "", "no pretrained weights found in"),
        # the same mechanism through another fallback: 8 s more, with -m slow
        pytest.param([], NO_COCO_MNV2, "coco-mnv2 weights unavailable (", marks=pytest.mark.slow),
    ],
)
def test_a_detector_built_without_its_weights_is_warned_of_once(
    tmp_path: Path, monkeypatch, caplog, arch: list[str], patch: str, needle: str
) -> None:
    """A real ``napari-al train`` where the architecture's pretrained weights are not found
    (empty caches; downloads are off): said once, in the detector line, where logging
    printed it a second time, word for word. A child process, since pytest captures the
    logging in this one. The workflow under the GUI and the simulator (which print no
    detector line) still logs it once, and the detector's build message carries it."""
    from napari_al.core import workflow

    project = make_project(tmp_path / "p", n=2)
    cache = tmp_path / "cache"
    empty = {"XDG_CACHE_HOME": str(cache), "TORCH_HOME": str(cache / "torch")}
    empty["NAPARI_AL_CACHE_DIR"] = str(cache / "napari-al")
    env = dict(os.environ, PYTHONPATH=str(Path(napari_al.__file__).parent.parent), **empty)
    cli = [sys.executable, "-m", "napari_al.cli"]
    if patch:  # the same entry, after the patch
        cli[1:] = ["-c", f"import sys; {patch}; from napari_al.cli import main; sys.exit(main())"]
    argv = ["train", str(project), *arch, "--steps", "1", *TINY]
    done = subprocess.run([*cli, *argv], env=env, capture_output=True)
    err = done.stderr.decode()
    assert done.returncode == 0, err[-2000:]
    assert err.count(needle) == 1, err
    assert "detector: " in err and needle in err.split("detector: ")[1].splitlines()[0]
    for name, value in empty.items():
        monkeypatch.setenv(name, value)
    if patch:
        from napari_al.core.engine import convert_tf_mnv2

        monkeypatch.setattr(convert_tf_mnv2, "graph_path", lambda: None)
    settings = workflow.ModelSettings(
        arch=arch[1] if arch else None, min_size=64, max_size=96, device="cpu"
    )
    with caplog.at_level("WARNING"), ProjectStore.open(make_project(tmp_path / "q")) as store:
        detector = workflow.load_model(store, settings)  # no model yet: built
    warned = [r.getMessage() for r in caplog.records if needle in r.getMessage()]
    assert len(warned) == 1 and warned[0] in detector.build_message, caplog.text


def test_log_warnings_held_over_a_failed_build_are_said(capsys) -> None:
    """What the CLI holds back while a detector is built (to say once) is said, one
    ``warning:`` line each, when the build fails; logging is put back as it was."""
    import logging

    from napari_al.cli.common import log_warnings_held

    logger = logging.getLogger("napari_al")
    handlers = list(logger.handlers)
    with pytest.raises(ValueError, match="no build"), log_warnings_held() as held:
        logging.getLogger("napari_al.core.engine.weights").warning("weights: %s", "gone")
        logging.getLogger("napari_al.core.engine.build").info("not held")
        raise ValueError("no build")
    assert held == ["weights: gone"]
    assert capsys.readouterr().err == "warning: weights: gone\n"
    assert logger.handlers == handlers and logger.propagate
