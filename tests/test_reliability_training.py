"""Training and scoring faults roll back; annotations made meanwhile are all kept.

Every fault below starts from a project whose model version 1 was trained here, and must leave:

- the previous model in use: ``store.latest_model_version()`` still version 1, its checkpoint
  byte-for-byte intact and loadable, and :func:`napari_al.core.workflow.load_model` (what the CLI
  and the GUI call next) giving version 1;
- the store intact (``integrity_check`` ok, no new model version);
- a message for the person (the run's ``message``/``stopped_reason``, or one CLI line).

Faults: a non-finite loss, an exception in the middle of an epoch, out of memory (simulated:
``torch.cuda.OutOfMemoryError`` and ``RuntimeError('... out of memory ...')`` raised from a
patched training step), cancellation, and a training process killed with SIGKILL (mid-training,
and while saving the checkpoint, before and after its atomic rename).

Concurrency: annotations made in another thread (its own store connection, as the GUI's main
thread is to a training worker) while a training run or a rescoring runs are all kept, the run
trained on one consistent snapshot (the labels as of its recorded ``last_action_id``, exactly),
and the next round sees the new annotations.

Tiny settings: 128-160 px inputs, 1-3 steps, 4 BCCD images.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_al import cli  # noqa: E402
from napari_al.core import engine  # noqa: E402
from napari_al.core.data import HUMAN_STATUSES  # noqa: E402
from napari_al.core.engine import training  # noqa: E402
from napari_al.core.project import import_into  # noqa: E402
from napari_al.core.store import ProjectStore  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "reliability_child.py"
SAMPLE = REPO / "sample_data" / "bccd_sample"
SIZE = {"min_size": 128, "max_size": 160}


def _model(**extra):
    from napari_al.core.workflow import ModelSettings

    return ModelSettings(**SIZE, **extra)


def _train(steps: int):
    from napari_al.core.workflow import TrainSettings

    return TrainSettings(steps=steps)


CLI_SIZE = ["--min-size", "128", "--max-size", "160", "--batch-size", "2"]


def _loop():
    """The workflow layer the CLI, the GUI and the simulator use."""
    from napari_al.core import workflow

    return workflow


def load_checkpoint(path: Path):
    """Load a checkpoint with the function the loop uses (``load``; ``load_checkpoint`` once)."""
    from napari_al.core.engine import checkpoints

    return (getattr(checkpoints, "load_checkpoint", None) or checkpoints.load)(path)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            st = (Path(dirpath) / f).stat()
            out[str(Path(dirpath) / f)] = (st.st_size, st.st_mtime_ns)
    return out


@dataclass
class Baseline:
    project: Path
    checkpoint: str  # relative to the project
    checkpoint_sha: str
    changed_by_training: set[str]
    root: Path


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    """A project (4 annotated BCCD images, 2 in the pool) with model version 1 trained here."""
    loop = _loop()
    root = tmp_path_factory.mktemp("train")
    voc = root / "data" / "voc"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "Annotations").mkdir()
    jpgs = sorted((SAMPLE / "JPEGImages").glob("*.jpg"))
    for p in jpgs[:4]:
        shutil.copyfile(p, voc / "JPEGImages" / p.name)
        shutil.copyfile(
            SAMPLE / "Annotations" / f"{p.stem}.xml", voc / "Annotations" / f"{p.stem}.xml"
        )
    pool = root / "data" / "pool"
    pool.mkdir()
    for p in jpgs[4:6]:
        shutil.copyfile(p, pool / p.name)
    project = root / "project"
    with ProjectStore.create(project) as store:
        import_into(store, voc, "voc")
        import_into(store, pool, "images")
        before = tree(root)
        detector = loop.load_model(store, _model())
        outcome = loop.train_model(store, detector, _train(1))
        assert outcome.model_version == 1, outcome.result.message
        latest = store.latest_model_version()
        assert latest is not None and latest.id == 1
        checkpoint = latest.path
    changed = {p for p, v in tree(root).items() if before.get(p) != v}
    return Baseline(project, checkpoint, sha(project / checkpoint), changed, root)


def fresh(baseline: Baseline, tmp_path: Path) -> Path:
    """A copy of the baseline project (store and models/; images stay where they are)."""
    project = tmp_path / "project"
    shutil.copytree(baseline.project, project)
    return project


def assert_previous_model_in_use(project: Path, baseline: Baseline) -> None:
    loop = _loop()
    with ProjectStore.open(project) as store:
        assert store.integrity_check() == "ok"
        versions = store.model_versions()
        assert [v.id for v in versions] == [1], "a failed run registered a model version"
        assert store.latest_model_version().path == baseline.checkpoint
        path = store.abs_path(store.latest_model_version())
        assert sha(path) == baseline.checkpoint_sha, "the previous checkpoint changed"
        again = loop.load_model(store, _model())  # loads it: what the CLI and GUI use next
        assert again.model_version == 1
        assert again.classes == [c.name for c in store.classes()]


class Fault:
    """Patch the training step: after ``after`` good steps, ``what`` happens on the next one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, after: int, what) -> None:
        self.calls = 0
        real = training.compute_losses

        def compute_losses(*args, **kwargs):
            self.calls += 1
            if self.calls <= after:
                return real(*args, **kwargs)
            if isinstance(what, BaseException):
                raise what
            return {"loss_classifier": torch.full((), float("nan"), requires_grad=True)}

        monkeypatch.setattr(training, "compute_losses", compute_losses)


def test_training_writes_checkpoints_only_under_the_project(baseline: Baseline) -> None:
    changed = {Path(p) for p in baseline.changed_by_training}
    assert baseline.project / baseline.checkpoint in changed
    for p in changed:
        assert p.is_relative_to(baseline.project), f"training wrote {p} outside the project"
    assert (baseline.project / baseline.checkpoint).parent.name == "models"


def test_non_finite_loss_keeps_the_previous_model(
    baseline: Baseline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = _loop()
    project = fresh(baseline, tmp_path)
    Fault(monkeypatch, after=1, what="nan")
    with ProjectStore.open(project) as store:
        detector = loop.load_model(store, _model())
        outcome = loop.train_model(store, detector, _train(3))
    assert outcome.result.stopped_reason == "non_finite"
    assert outcome.model_version is None and outcome.checkpoint is None
    assert "non_finite" in outcome.result.message
    assert_previous_model_in_use(project, baseline)


def test_exception_mid_epoch_keeps_the_previous_model(
    baseline: Baseline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = _loop()
    project = fresh(baseline, tmp_path)
    Fault(monkeypatch, after=1, what=ValueError("a bad batch in the middle of the epoch"))
    with ProjectStore.open(project) as store:
        detector = loop.load_model(store, _model())
        with pytest.raises(ValueError, match="a bad batch"):
            loop.train_model(store, detector, _train(3))
    assert_previous_model_in_use(project, baseline)
    assert sorted(p.name for p in (project / "models").iterdir()) == [
        Path(baseline.checkpoint).name
    ]


def test_cli_exception_says_nothing_was_saved(
    baseline: Baseline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A bug mid-run keeps its traceback, after one line saying the old model stays in use."""
    project = fresh(baseline, tmp_path)
    Fault(monkeypatch, after=0, what=KeyError("boxes"))
    with pytest.raises(KeyError):
        cli.main(["train", str(project), "--steps", "3", *CLI_SIZE])
    err = capsys.readouterr().err
    assert "napari-al: training failed; nothing was saved and model version 1 stays in use" in err
    assert_previous_model_in_use(project, baseline)


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:114] DefaultCPUAllocator: can't allocate"
                     " memory: you tried to allocate 4294967296 bytes. out of memory"),
    ],
    ids=["cuda-oom", "runtime-oom"],
)  # fmt: skip
def test_out_of_memory_keeps_the_previous_model_with_a_message(
    baseline: Baseline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    error: BaseException,
) -> None:
    """Through the CLI: one line saying what happened and that the old model stays in use."""
    project = fresh(baseline, tmp_path)
    Fault(monkeypatch, after=0, what=error)
    rc = cli.main(["train", str(project), "--steps", "3", *CLI_SIZE])
    err = capsys.readouterr().err
    assert rc == 1, err
    line = next(ln for ln in err.splitlines() if ln.startswith("napari-al: error:"))
    assert "out of memory" in line and "model version 1 stays in use" in line, line
    assert "Traceback" not in err
    assert_previous_model_in_use(project, baseline)


def test_cli_non_finite_loss_message(
    baseline: Baseline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    project = fresh(baseline, tmp_path)
    Fault(monkeypatch, after=0, what="nan")
    rc = cli.main(["train", str(project), "--steps", "3", *CLI_SIZE])
    err = capsys.readouterr().err
    assert rc == 1
    assert "training stopped (non_finite)" in err and "previous model stays in use" in err, err
    assert_previous_model_in_use(project, baseline)


def test_cancellation_keeps_the_previous_model(baseline: Baseline, tmp_path: Path) -> None:
    loop = _loop()
    project = fresh(baseline, tmp_path)
    steps: list[int] = []
    with ProjectStore.open(project) as store:
        detector = loop.load_model(store, _model())
        outcome = loop.train_model(
            store,
            detector,
            _train(5),
            progress=lambda step, *_: steps.append(step),
            should_stop=lambda: len(steps) >= 1,
        )
    assert outcome.result.stopped_reason == "cancelled"
    assert outcome.result.steps == 1 and steps == [1]  # stopped within one step
    assert outcome.model_version is None
    assert "cancelled" in outcome.result.message
    assert_previous_model_in_use(project, baseline)


def _child(project: Path, steps: int, how: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, str(CHILD), "train", str(project), str(steps), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def test_killed_training_process_keeps_the_previous_model(
    baseline: Baseline, tmp_path: Path
) -> None:
    """SIGKILL in the middle of training (after its first step)."""
    project = fresh(baseline, tmp_path)
    # 1. killed mid-training, after its first step
    proc = _child(project, 50, "run")
    lines = []
    try:
        while not any("step" in rec for rec in lines):
            line = proc.stdout.readline()
            assert line, f"child died early: {proc.stderr.read().decode()[-3000:]}"
            lines.append(json.loads(line))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert lines[0] == {"loaded": 1}
    assert_previous_model_in_use(project, baseline)


@pytest.mark.slow
def test_killed_while_saving_the_checkpoint_keeps_the_previous_model(
    baseline: Baseline, tmp_path: Path
) -> None:
    """SIGKILL while saving: before the atomic rename, then after it but before the store
    registered the version (an orphan file); the next run still registers version 2."""
    project = fresh(baseline, tmp_path)
    # 1. killed after the checkpoint's temporary file is written, before the rename
    proc = _child(project, 1, "die-before-rename")
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-3000:]
    assert_previous_model_in_use(project, baseline)
    assert not (project / "models" / "model-v0002.pt").exists()
    leftovers = [p.name for p in (project / "models").iterdir() if p.name.endswith(".tmp")]
    # 2. killed after the rename, before the store registered the version: an orphan file
    proc = _child(project, 1, "die-after-rename")
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-3000:]
    assert_previous_model_in_use(project, baseline)
    # the next run still works and registers version 2 (the orphan is not mistaken for it)
    loop = _loop()
    with ProjectStore.open(project) as store:
        detector = loop.load_model(store, _model())
        outcome = loop.train_model(store, detector, _train(1))
        assert outcome.model_version == 2
        latest = store.latest_model_version()
        assert latest.id == 2 and store.abs_path(latest) == outcome.checkpoint
        load_checkpoint(outcome.checkpoint)
    print(f"\nkilled training: temporary files left by a kill before the rename: {leftovers}")


# ---- concurrency ------------------------------------------------------------------------------


class Annotator(threading.Thread):
    """A person annotating in another thread (own store connection) until told to stop.

    Draws boxes on the training images, corrects and deletes its own boxes and accepts model
    proposals; records every action that RETURNED, with the box state it left.
    """

    def __init__(self, project: Path, min_actions: int = 4) -> None:
        super().__init__(daemon=True)
        self.project = project
        self.stop = threading.Event()
        self.started_enough = threading.Event()
        self.min_actions = min_actions
        self.done: list[tuple[int, int, dict | None]] = []  # (action id, box id, after)
        self.refused: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = np.random.default_rng(7)
        try:
            with ProjectStore.open(self.project) as store:
                images = store.images(split="train")
                cls = [c.id for c in store.classes()]
                mine: list[int] = []
                while not self.stop.is_set() or len(self.done) < self.min_actions:
                    op = rng.integers(4)
                    if op == 0 or not mine:
                        im = images[int(rng.integers(len(images)))]
                        x, y = float(rng.uniform(0, 500)), float(rng.uniform(0, 380))
                        box = store.draw_box(im.id, (x, y, x + 40, y + 40), int(rng.choice(cls)))
                        mine.append(box)
                        self._record(store, store.last_action_id(), box)
                    elif op == 1:
                        box = mine[int(rng.integers(len(mine)))]
                        b = store.box(box)
                        aid = store.correct_box(box, xyxy=(b.x1 + 1, b.y1, b.x2 + 1, b.y2))
                        self._record(store, aid, box)
                    elif op == 2:
                        box = mine.pop(int(rng.integers(len(mine))))
                        self._record(store, store.delete_box(box), box)
                    else:
                        predicted = store.boxes(statuses="predicted")
                        if predicted:
                            box = predicted[int(rng.integers(len(predicted)))].id
                            try:  # a rescoring may replace the proposal just now
                                aid = store.accept_box(box)
                            except Exception as e:
                                self.refused.append(str(e))
                            else:
                                self._record(store, aid, box)
                    if len(self.done) >= self.min_actions:
                        self.started_enough.set()
                    time.sleep(0.02)  # a fast person; leaves the CPU to training
        except BaseException as e:  # reported by the test
            self.error = e
            self.started_enough.set()

    def _record(self, store: ProjectStore, action_id: int, box_id: int) -> None:
        rows = store.boxes()
        after = next((b.to_dict() for b in rows if b.id == box_id), None)
        self.done.append((action_id, box_id, after))


def assert_all_kept(project: Path, annotator: Annotator) -> int:
    """Every returned action is in the log with its effect; boxes not changed since equal it."""
    with ProjectStore.open(project) as store:
        assert store.integrity_check() == "ok"
        by_id = {a.id: a for a in store.actions()}
        boxes = {b.id: b.to_dict() for b in store.boxes()}
        last: dict[int, tuple[int, dict | None]] = {}
        for aid, box_id, after in annotator.done:
            assert aid in by_id, f"action {aid} lost"
            assert by_id[aid].payload["after"] == after, f"action {aid}: effect differs"
            last[box_id] = (aid, after)
        for box_id, (_aid, after) in last.items():
            assert boxes.get(box_id) == after, f"box {box_id} is not as the person left it"
    return len(annotator.done)


def test_annotations_during_training_are_kept_and_the_snapshot_is_consistent(
    baseline: Baseline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = _loop()
    project = fresh(baseline, tmp_path)
    seen: list[list] = []
    real_train = engine.train

    def spy(detector, examples, *args, **kwargs):  # the labels the run actually trained on
        seen.append(examples)
        return real_train(detector, examples, *args, **kwargs)

    monkeypatch.setattr(engine, "train", spy)
    with ProjectStore.open(project) as store:
        state0 = {b.id: b.to_dict() for b in store.boxes()}
        first_action = store.last_action_id()
        annotator = Annotator(project)
        annotator.start()
        assert annotator.started_enough.wait(60)
        detector = loop.load_model(store, _model())
        outcome = loop.train_model(store, detector, _train(1))
        annotator.stop.set()
        annotator.join(60)
        assert annotator.error is None, annotator.error
        assert outcome.model_version == 2, outcome.result.message
        cut = outcome.last_action_id
        version = store.latest_model_version()
        assert version.metrics["last_action_id"] == cut
        assert load_checkpoint(store.abs_path(version))[1]["last_action_id"] == cut
        # the annotator went on after the snapshot: the run really overlapped with annotation
        assert any(aid > cut for aid, _b, _a in annotator.done), "no annotation during training"
        assert any(aid <= cut for aid, _b, _a in annotator.done)
        # the run trained on exactly the labels as of `cut`: replay the log onto the start state
        state = dict(state0)
        for a in store.actions(since_id=first_action):
            if a.id <= cut and a.box_id is not None and "after" in a.payload:
                state[a.box_id] = a.payload["after"]
        paths = {im.id: str(store.abs_path(im)) for im in store.images()}
        expected: dict[str, list] = {}
        for b in state.values():
            if b is not None and b["status"] in HUMAN_STATUSES:
                expected.setdefault(paths[b["image_id"]], []).append(
                    [b["x1"], b["y1"], b["x2"], b["y2"]]
                )
        (examples,) = seen
        got = {str(ex.path): sorted(ex.boxes.tolist()) for ex in examples}
        want = {p: sorted(np.asarray(v, np.float32).tolist()) for p, v in expected.items()}
        assert got == want, "the run did not train on one consistent snapshot"
    kept = assert_all_kept(project, annotator)
    # the next round sees every annotation
    with ProjectStore.open(project) as store:
        assert store.training_snapshot().last_action_id >= max(a for a, _b, _x in annotator.done)
    print(f"\nconcurrent training: {kept} annotations kept, snapshot at action {cut}")


def test_annotations_during_rescoring_are_kept(baseline: Baseline, tmp_path: Path) -> None:
    loop = _loop()
    project = fresh(baseline, tmp_path)
    with ProjectStore.open(project) as store:
        pool = [im.id for im in store.images(split="pool")]
        train_ids = [im.id for im in store.images(split="train")]
        detector = loop.load_model(store, _model())
        annotator = Annotator(project)
        annotator.start()
        assert annotator.started_enough.wait(60)
        # predictions on the images the person is working on, too
        n = len(loop.predict_images(store, detector, [*pool, train_ids[0]], batch_size=1))
        annotator.stop.set()
        annotator.join(60)
        assert annotator.error is None, annotator.error
        assert n == len(pool) + 1
        human = store.boxes(statuses=HUMAN_STATUSES)
        assert human, "the human boxes are gone"
    kept = assert_all_kept(project, annotator)
    print(f"\nconcurrent rescoring: {kept} annotations kept, {len(annotator.refused)} refused")


def test_unreadable_pool_image_is_skipped_with_a_clear_message(
    baseline: Baseline, tmp_path: Path
) -> None:
    """A pool image whose pixel data became corrupt after it joined the project (an import
    leaves out a file already corrupt) is left out of prediction and ranking, reported with a
    message naming the file; the rest of the pool is still scored and nothing a person made
    changes."""
    loop = _loop()
    project = fresh(baseline, tmp_path)
    bad = tmp_path / "pool2" / "cut.jpg"
    bad.parent.mkdir()
    data = (SAMPLE / "JPEGImages" / "BloodImage_00021.jpg").read_bytes()  # not in the project
    bad.write_bytes(data)
    with ProjectStore.open(project) as store:
        import_into(store, bad.parent, "images")
        bad.write_bytes(data[: len(data) * 6 // 10])
        human = [b.to_dict() for b in store.boxes(statuses=HUMAN_STATUSES)]
        detector = loop.load_model(store, _model())
        bad_id = store.image_by_path(bad).id
        skipped: list[tuple[int, str]] = []
        on_skip = lambda i, m: skipped.append((i, m))  # noqa: E731
        assert loop.predict_images(store, detector, [bad_id], on_skip=on_skip) == []
        assert skipped == [(bad_id, skipped[0][1])]
        assert "cut.jpg: image data is truncated or corrupt" in skipped[0][1]
        items = loop.rank_pool(store, detector, loop.QuerySettings(budget=50), on_skip=on_skip)
        assert len(skipped) == 2 and skipped[1][0] == bad_id
        assert items and bad_id not in {q.image for q in items}
        assert [b.to_dict() for b in store.boxes(statuses=HUMAN_STATUSES)] == human
        assert store.integrity_check() == "ok"
