"""Training on several processes: ``napari-al train --nproc N`` (torchrun, DDP, gloo on CPU)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.conftest import REPO, TINY_MODEL


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return {**env, **extra}


def test_shards_are_disjoint_and_cover_the_batch() -> None:
    from napari_al.core.engine.ddp import shard

    batch = list(range(12))
    for world in (1, 2, 3, 4):
        parts = [shard(batch, r, world) for r in range(world)]
        assert [i for p in parts for i in p] == batch  # in order, disjoint, nothing left out
        assert {len(p) for p in parts} == {12 // world}
    with pytest.raises(ValueError, match="split evenly"):
        shard(list(range(5)), 0, 2)
    with pytest.raises(ValueError, match="not in a world"):
        shard(batch, 2, 2)


def test_each_rank_trains_on_its_slice_of_the_same_global_batch() -> None:
    """Two ranks' batches (same seed) are disjoint, together the global batch of 2 x batch
    size, with its flips; one process draws that same global batch."""
    from napari_al.core.engine.augment import Augmentation
    from napari_al.core.engine.training import _Batches

    usable = list(range(7))
    aug = Augmentation(hflip=True)
    ranks = [_Batches(usable, 2, 5, aug, rank=r, world_size=2) for r in range(2)]
    single = _Batches(usable, 4, 5, aug)
    for _ in range(5):  # across epoch boundaries (7 examples, 4 a step)
        (b0, f0), (b1, f1) = (b.next() for b in ranks)
        whole, flips = single.next()
        assert len(b0) == len(b1) == 2
        assert b0 + b1 == whole and f0 + f1 == flips


def test_a_child_of_the_lock_holder_works_under_its_lock(empty_project: Path) -> None:
    """The ranks borrow the launching command's lock; any other process stays locked out."""
    from napari_al.core.store import lend_env, project_lock

    child = textwrap.dedent(
        f"""
        from napari_al.core.store import ProjectBusyError, project_lock
        try:
            with project_lock({str(empty_project)!r}, "training"):
                print("held")
        except ProjectBusyError:
            print("busy")
        """
    )
    with project_lock(empty_project, "training"):
        runs = {
            "lent": _env(**lend_env(empty_project)),
            "not lent": _env(),
            "lent by another pid": _env(NAPARI_AL_LOCK_LENT_BY=f"1:{empty_project.resolve()}"),
        }
        out = {
            name: subprocess.run(
                [sys.executable, "-c", child], env=env, capture_output=True, text=True, check=True
            ).stdout.strip()
            for name, env in runs.items()
        }
    assert out == {"lent": "held", "not lent": "busy", "lent by another pid": "busy"}


def test_train_on_two_gloo_processes_saves_one_loadable_model(labelled_project: Path) -> None:
    """``napari-al train --nproc 2`` on the CPU: two ranks train (gloo), rank 0 alone records
    one model version, whose checkpoint (the usual format) loads and predicts."""
    from napari_al.core.engine import load_checkpoint
    from napari_al.core.store import HOLDER_FILENAME, ProjectStore

    with ProjectStore.open(labelled_project) as store:
        before = [v.id for v in store.model_versions()]
        image = store.abs_path(store.images()[0])
    size = ["--min-size", str(TINY_MODEL["min_size"]), "--max-size", str(TINY_MODEL["max_size"])]
    argv = ["train", str(labelled_project), "--nproc", "2", "--steps", "3", "--device", "cpu"]
    done = subprocess.run(
        [sys.executable, "-m", "napari_al.cli", *argv, *size, "--threads", "1"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 2 processes" in done.stdout
    assert done.stdout.count("saved model version") == 1  # rank 0 only
    with ProjectStore.open(labelled_project) as store:
        new = [v for v in store.model_versions() if v.id not in before]
        assert len(new) == 1
        assert new[0].metrics["world_size"] == 2
        assert new[0].metrics["steps"] == 3
        path = store.abs_path(new[0])
    assert not (labelled_project / HOLDER_FILENAME).exists()  # the lock was given back
    detector, meta = load_checkpoint(path, device="cpu")
    assert meta["world_size"] == 2
    from napari_al.core.engine import load_image

    (pred,) = detector.predict([load_image(image)])
    assert pred.boxes.shape[1] == 4 and np.isfinite(pred.scores).all()


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "P", "--nproc", "2", "--steps", "3"],
        ["train", "P", "--nproc=2", "--steps", "3"],
        ["train", "P", "--npr", "2", "--steps", "3"],
        ["train", "P", "--steps", "3", "--nproc", "2"],
    ],
)
def test_the_ranks_get_the_command_without_nproc(argv: list[str]) -> None:
    """torchrun's parser would read ``--nproc`` as its own ``--nproc-per-node``."""
    from napari_al.cli.training import rank_argv

    assert rank_argv(argv) == ["train", "P", "--steps", "3"]


@pytest.mark.parametrize("case", ["boxes", "negative", "a class absent"])
def test_every_trainable_parameter_gets_a_gradient(case: str) -> None:
    """DDP runs with find_unused_parameters=False: the default detector's partial-label loss
    must reach every trainable parameter, whatever the batch holds."""
    from napari_al.core.engine import DEFAULT_ARCH, Detector, TrainingExample
    from napari_al.core.engine.training import compute_losses

    img = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    example = {
        "boxes": TrainingExample(image=img, boxes=[[10, 10, 50, 60]], labels=[0]),
        "negative": TrainingExample(image=img, complete=True),
        "a class absent": TrainingExample(image=img, boxes=[[10, 10, 50, 60]], labels=[1]),
    }[case]
    detector = Detector(
        ["a", "b"], DEFAULT_ARCH, pretrained_backbone=False, min_size=128, max_size=128,
        device="cpu",
    )  # fmt: skip
    sum(compute_losses(detector, [example, example]).values()).backward()
    trainable = [(n, p) for n, p in detector.model.named_parameters() if p.requires_grad]
    assert trainable
    assert [n for n, p in trainable if p.grad is None] == []


def _ranks(launcher: psutil.Process) -> list[psutil.Process]:
    """The training processes under ``launcher`` (torchrun's workers, not torchrun itself)."""
    out = []
    for p in launcher.children(recursive=True):
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        if "napari_al.cli" in cmd and "torch.distributed.run" not in cmd:
            out.append(p)
    return out


@pytest.mark.parametrize(
    "sig",
    # SIGTERM (15 s) takes the launcher's own clean-up path as well: with -m slow
    [signal.SIGKILL, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
    ids=["SIGKILL", "SIGTERM"],
)
def test_killing_the_launcher_ends_every_rank(labelled_project: Path, sig: int) -> None:
    """``kill -9`` (or ``kill``) of ``napari-al train --nproc 2`` frees the project lock; the
    ranks under it must end too (they exit when their lender is gone), never saving a model
    beside the next holder of the lock."""
    from napari_al.core.store import ProjectStore

    with ProjectStore.open(labelled_project) as store:
        before = len(store.model_versions())
    size = ["--min-size", str(TINY_MODEL["min_size"]), "--max-size", str(TINY_MODEL["max_size"])]
    argv = ["train", str(labelled_project), "--nproc", "2", "--steps", "100000", "--device", "cpu"]
    launcher = subprocess.Popen(
        [sys.executable, "-m", "napari_al.cli", *argv, *size, "--threads", "1"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    parent = psutil.Process(launcher.pid)
    everything = [parent]
    try:
        deadline = time.monotonic() + 120
        while len(_ranks(parent)) < 2:  # both ranks started
            assert time.monotonic() < deadline, "the ranks never started"
            time.sleep(0.5)
        ranks = _ranks(parent)
        everything = [parent, *parent.children(recursive=True)]
        time.sleep(8)  # the ranks import torch, borrow the lock and start training
        parent.send_signal(sig)
        gone, alive = psutil.wait_procs(everything, timeout=60)
        assert not alive, [p.cmdline() for p in alive]
        assert all(r in gone for r in ranks)
    finally:  # nothing left behind whatever failed (orphans are no longer our children)
        for p in everything:
            with contextlib.suppress(psutil.Error):
                p.kill()
        launcher.wait()
    with ProjectStore.open(labelled_project) as store:
        assert len(store.model_versions()) == before
