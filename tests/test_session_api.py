"""The notebook ``Session`` (``napari_al.open_project(..., viewer=False)``) after a newcomer's
first hour: a failed ``load_detector`` leaves the session as it was, results of untrained
heads come with a warning, ``steps`` beside ``epochs`` is refused as the CLI refuses it,
arguments of the wrong type are refused in one line naming them, and a first model step on a
thread says what to do. Every project is generated here (one small image)."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fake_workflow import FakeDetector, use_fake_workflow
from gui_helpers import blob_project

from napari_al.core import workflow
from napari_al.core.workflow import (
    ModelSettings,
    SettingsError,
    SettingsTypeError,
    TrainSettings,
    UntrainedModelWarning,
    WorkflowError,
)
from napari_al.gui import session as session_module
from napari_al.gui.session import Session


@pytest.fixture
def session(tmp_path: Path) -> Any:
    s = Session.open(blob_project(tmp_path / "project"))
    yield s
    s.close()


def _failing_loads(monkeypatch: pytest.MonkeyPatch) -> list[ModelSettings]:
    """``load_model`` as the real one fails (a device not here, a missing weights file),
    else a fake detector; the settings of every call, in order. No torch."""
    seen: list[ModelSettings] = []

    def load_model(store: Any, settings: ModelSettings | None = None) -> Any:
        s = settings or ModelSettings()
        seen.append(s)
        if s.device == "cuda":
            raise WorkflowError("device 'cuda' requested but CUDA is not available")
        if s.weights is not None and not Path(s.weights).exists():
            raise FileNotFoundError(f"weights file not found: {s.weights}")
        return FakeDetector([c.name for c in store.classes()])

    monkeypatch.setattr(workflow, "load_model", load_model)
    monkeypatch.setattr(session_module, "_ensure_torch", lambda: None)
    return seen


# -- 1. a failed load_detector changes nothing ----------------------------------------------


def test_a_failed_load_keeps_the_settings_and_the_model(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fake_workflow(monkeypatch, step_s=0.0)
    seen = _failing_loads(monkeypatch)
    with pytest.raises(WorkflowError, match="cuda"):
        session.load_detector(device="cuda")
    assert session.model == ModelSettings()  # was: device 'cuda' kept for every later call
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):  # was: the cuda error again
        session.load_detector(weights=str(missing))
    assert session.model == ModelSettings()
    first = session.load_detector(min_size=96)  # the device left out: the best one
    assert seen[-1].device is None and seen[-1].weights is None
    # every setting load_detector takes: a failed call with several keeps them all
    with pytest.raises(WorkflowError):
        session.load_detector(ModelSettings(arch=None, max_size=200), device="cuda", seed=3)
    assert session.model == ModelSettings(min_size=96)
    assert session.detector is first
    with pytest.warns(UntrainedModelWarning):
        assert session.predict([1]) == 1
    session.load_detector()  # the next load: the settings of the last one that succeeded
    assert seen[-1] == ModelSettings(min_size=96)


def test_a_device_not_here_then_the_default_and_a_missing_file(
    session: Session, tmp_path: Path
) -> None:
    """The real loader: no machine has 100 GPUs; the file's own error comes next."""
    with pytest.raises(WorkflowError, match="cuda:99"):
        session.load_detector(device="cuda:99")
    assert session.model.device is None
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
        session.load_detector(weights=str(tmp_path / "nope.pt"))
    assert session.model == ModelSettings()


def test_a_failed_training_from_scratch_keeps_the_model_in_use(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = use_fake_workflow(monkeypatch, step_s=0.0)
    _failing_loads(monkeypatch)
    in_use = session.load_detector()
    fake.fail = "out of memory"
    with pytest.raises(RuntimeError, match="out of memory"):
        session.train(steps=1, from_scratch=True)
    assert session.detector is in_use  # was: a fresh detector loaded for the failed run


# -- 2. untrained heads ----------------------------------------------------------------------


def _untrained(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, UntrainedModelWarning)]


def test_results_of_untrained_heads_come_with_one_warning_per_call(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fake_workflow(monkeypatch, step_s=0.0)
    calls = {
        "predict": session.predict,
        "rank": lambda: session.rank(budget=1),
        "evaluate": lambda: session.evaluate("val"),
    }
    for name, call in calls.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        said = _untrained(caught)
        assert len(said) == 1, name
        assert "untrained detection heads" in said[0] and "session.train()" in said[0]
    session.train(steps=1)
    for name, call in calls.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        assert not _untrained(caught), name


def test_untrained_reason_names_new_classes(session: Session) -> None:
    store = session.store
    assert workflow.untrained_reason(store, SimpleNamespace(model_version=3)) is None
    fresh = SimpleNamespace(model_version=0)
    assert "no trained model yet" in (workflow.untrained_reason(store, fresh) or "")
    store.add_model_version(store.project_dir / "m.pt", "fake", {})
    assert "classes changed" in (workflow.untrained_reason(store, fresh) or "")


# -- 3. steps and epochs ---------------------------------------------------------------------


def test_steps_beside_epochs_is_refused_before_any_model(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = use_fake_workflow(monkeypatch, step_s=0.0)
    with pytest.raises(SettingsError, match="give one or the other"):
        session.train(steps=3, epochs=1)
    with pytest.raises(SettingsError, match="give one or the other"):
        session.train(TrainSettings(epochs=2), steps=200)  # the default, but given
    with pytest.raises(SettingsError, match="give one or the other"):
        session.train(TrainSettings(steps=5), epochs=1)
    assert fake.calls == []
    with pytest.raises(SettingsError, match="epochs 1 and steps 3"):
        TrainSettings(steps=3, epochs=1)  # every entry point: the settings refuse it
    assert TrainSettings(epochs=1).epochs == 1
    session.train(epochs=1)
    assert fake.calls == ["load", "train"]


# -- 4. arguments of the wrong type ------------------------------------------------------------


WRONG_TYPES = [
    ("train", lambda s: s.train(steps="5"), "steps must be a whole number"),
    ("train float", lambda s: s.train(steps=5.0), "steps must be a whole number"),
    ("train bool", lambda s: s.train(from_scratch="yes"), "from_scratch must be True or False"),
    ("rank", lambda s: s.rank(budget="3"), "budget must be a whole number"),
    ("rank text", lambda s: s.rank(strategy=3), "strategy must be text"),
    ("load", lambda s: s.load_detector(min_size="480"), "min_size must be a whole number"),
    ("predict text", lambda s: s.predict("13"), "image_ids must be a list of image ids"),
    ("predict none", lambda s: s.predict(object()), "image_ids must be a list of image ids"),
    ("predict item", lambda s: s.predict(["1"]), "image_ids must be image ids"),
    ("click id", lambda s: s.click("1", 3, 3), "image_id must be an image id"),
    ("click x", lambda s: s.click(1, "a", 3), "x must be a number"),
    ("click cls", lambda s: s.click(1, 3, 3, 1.5), "cls must be a class name or a class id"),
    ("answer", lambda s: s.answer("1", "yes"), "box_id must be a box id"),
    ("regions", lambda s: s.region_questions(1.0), "image_id must be an image id"),
    ("answer region", lambda s: s.answer_region(None, False), "question must be a question"),
    ("show", lambda s: s.show("1"), "image_id must be an image id"),
]


@pytest.mark.parametrize(
    ("call", "expected"), [w[1:] for w in WRONG_TYPES], ids=[w[0] for w in WRONG_TYPES]
)
def test_arguments_of_the_wrong_type_are_named_in_one_line(
    session: Session, monkeypatch: pytest.MonkeyPatch, call: Any, expected: str
) -> None:
    fake = use_fake_workflow(monkeypatch, step_s=0.0)
    with pytest.raises(SettingsTypeError, match=expected) as raised:
        call(session)
    assert isinstance(raised.value, TypeError) and isinstance(raised.value, SettingsError)
    assert "\n" not in str(raised.value) and "got" in str(raised.value)
    assert fake.calls == []  # refused before any model step


def test_a_region_answer_is_a_bool(session: Session) -> None:
    """``answer_region(q, "no")`` recorded a yes ("no" is truthy)."""
    q = workflow.RegionQuestion(
        image_id=1, class_id=1, class_name="cell", xyxy=(0, 0, 10, 10), expected=1.0, chance=0.6
    )
    with pytest.raises(SettingsTypeError, match="yes must be True or False"):
        session.answer_region(q, "no")  # type: ignore[arg-type]
    assert session.store.actions() == []


def test_predict_takes_one_id(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = use_fake_workflow(monkeypatch, step_s=0.0)
    with pytest.warns(UntrainedModelWarning):
        assert session.predict(1) == 1
    assert fake.calls == ["load", "predict"]


# -- 5. the first model step on a thread -----------------------------------------------------


def test_a_first_model_step_on_a_thread_says_what_to_do(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_al.gui import tasks

    monkeypatch.setattr(tasks, "_torch_ready", False)  # as in a fresh process
    errors: list[BaseException] = []

    def run() -> None:
        try:
            session.train(steps=1)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    text = str(errors[0])
    assert "session.load_detector()" in text and "main thread" in text
    assert "conventions" not in text and "ensure_torch" not in text
