"""The project's detector: load the latest model version, build a new one, find checkpoints.

A detector's ``model_version`` is the store's model version its weights came from (0: not
trained in this project yet); :func:`load_model` and :func:`napari_al.core.workflow.training
.train_model` are the only places that set it.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from napari_al.core.data import DEVICE_ENV
from napari_al.core.workflow.errors import WorkflowError
from napari_al.core.workflow.settings import WEIGHT_SOURCES, ModelSettings

if TYPE_CHECKING:
    from napari_al.core.engine import Detector
    from napari_al.core.store import ProjectStore

#: Folder (inside the project) that holds checkpoints.
MODELS_DIR = "models"
#: Input size of a new project detector: BCCD-like microscopy at 480-640 px.
DEFAULT_MIN_SIZE = 480
DEFAULT_MAX_SIZE = 640
#: How many earlier checkpoints form the ensemble of ``source='ensemble'`` scorers.
ENSEMBLE_SIZE = 3


def checkpoint_path(store: ProjectStore, version: int) -> Path:
    """Where model version ``version`` of this project is saved."""
    return Path(store.project_dir) / MODELS_DIR / f"model-v{version:04d}.pt"


def next_checkpoint_path(store: ProjectStore) -> Path:
    """A checkpoint path no model version uses yet."""
    version = len(store.model_versions()) + 1
    path = checkpoint_path(store, version)
    while path.exists():
        version += 1
        path = checkpoint_path(store, version)
    return path


def check_device(device: str | None) -> None:
    """Raise :class:`WorkflowError` (one line) when ``device`` (``cpu``, ``cuda``, ``cuda:N``,
    ``mps``; None: ``$NAPARI_AL_DEVICE`` where set, else the best present) is not available
    here."""
    if device is None and not os.environ.get(DEVICE_ENV):
        return  # the best device present, always one: no need to import torch to say so
    from napari_al.core.engine import select_device

    try:
        select_device(device)
    except (ValueError, RuntimeError) as exc:
        raise WorkflowError(str(exc)) from None


def load_model(store: ProjectStore, settings: ModelSettings | None = None) -> Detector:
    """The project's latest model version, or a new detector on the pretrained backbone.

    A new detector is built when the project has no model yet, when ``settings.weights`` is
    given (a weight source: ``imagenet``, ``coco-mnv2``, ``torchvision-coco``, or a file; see
    :mod:`napari_al.core.engine.weights`) or when ``settings.arch`` differs from the latest
    checkpoint's architecture; it starts from ``settings.weights``, else the architecture's
    default (``coco-mnv2`` for the default one). When the project's classes changed since the
    latest version (``add-class``), the new detector carries that version's weights over, the
    output rows of the classes it knew included (:mod:`napari_al.core.engine.class_change`).
    ``min_size``/``max_size`` override the input size.

    Raises :class:`WorkflowError` (a ValueError) when the project has no classes, when the
    requested device is not available, when ``settings.anchors`` differ from those of the
    model continued (only a new detector takes them) or the architecture has no RPN, when
    the weight source does not fit the architecture or ``settings.weights`` cannot be loaded,
    and when the latest model version's checkpoint is missing or cannot be read;
    FileNotFoundError for a source that cannot be had here (``engine.WeightsUnavailable``, one
    line saying how to get it).
    """
    from napari_al.core.engine import DEFAULT_ARCH, AnchorSizesError, Detector, load_checkpoint

    s = settings or ModelSettings()
    classes = [c.name for c in store.classes()]
    if not classes:
        raise WorkflowError(
            "the project has no classes yet: import annotations or add a class first"
        )
    check_device(s.device)  # the setting, or $NAPARI_AL_DEVICE
    latest = store.latest_model_version()
    if latest is not None and s.weights is None and s.arch in (None, latest.arch):
        path = store.abs_path(latest)
        try:
            detector, _meta = load_checkpoint(path, device=s.device)
        except Exception as exc:  # a missing or damaged file: one line naming it
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
            raise WorkflowError(
                f"model version {latest.id} cannot be read from {path} ({first}); restore the "
                "file, or start a new model from other weights or another architecture"
            ) from exc
        if list(detector.classes) == classes:
            if s.anchors is not None:  # part of its structure: other ones cannot apply
                _check_continued_anchors(detector, s.anchors, latest.id)
            if s.min_size or s.max_size:
                detector.set_input_size(
                    s.min_size or detector.config.min_size, s.max_size or detector.config.max_size
                )
            detector.model_version = latest.id
            return detector
        return _for_new_classes(detector, classes, latest.id, s)
    try:
        with warnings.catch_warnings(record=True) as caught:  # shown below, unless refused
            warnings.simplefilter("always")
            detector = Detector(
                classes,
                s.arch or DEFAULT_ARCH,
                weights=s.weights,
                min_size=s.min_size or DEFAULT_MIN_SIZE,
                max_size=s.max_size or DEFAULT_MAX_SIZE,
                device=s.device,
                seed=s.seed,
                rpn_proposals_train=s.rpn_proposals_train,
                rpn_proposals_test=s.rpn_proposals_test,
                box_batch_size_per_image=s.box_batch_size_per_image,
                anchor_sizes=s.anchor_sizes,
            )
    except AnchorSizesError as exc:
        _show(caught)
        raise WorkflowError(str(exc)) from None
    except Exception as exc:  # a weights file that is not one: say so, in one line
        if s.weights is None or isinstance(exc, FileNotFoundError):
            _show(caught)
            raise
        problem = not_weights_problem(Path(s.weights), exc)
        if problem is not None:  # torch's pickle warnings about it say nothing more
            line = f"{s.weights}: not a weights file: {problem}; {WEIGHTS_FILE}"
            raise WorkflowError(line) from exc
        _show(caught)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise WorkflowError(
            f"{s.weights}: cannot be used as {s.arch or DEFAULT_ARCH} weights ({first})"
        ) from exc
    _show(caught)
    if s.anchors is not None:
        _two_stage_only(detector, s.anchors)  # the build checked the count per level
    detector.model_version = 0
    return detector


#: What a weights file is, and the alternatives (the end of the line refusing one that is not).
WEIGHTS_FILE = (
    "a weights file is a PyTorch state dict saved with torch.save (.pt or .pth): a checkpoint "
    "from a project's models/ folder, or a torchvision detector's or backbone's weights; or "
    f"name a weight source: {', '.join(WEIGHT_SOURCES)}"
)


def not_weights_problem(path: Path, exc: BaseException) -> str | None:
    """Why ``path``, which failed to load as weights with ``exc``, is no weights file at all,
    from its first bytes and the error: empty, not a PyTorch file (text, an image...), a
    PyTorch file cut short or damaged, or one holding Python objects besides tensors (which a
    weights-only load refuses: loading them would run code from the file). None when it is a
    PyTorch file whose content does not fit (the engine's own message says how)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    if not head:
        return "it is empty (0 bytes)"
    text = str(exc)
    if head.startswith(b"PK\x03\x04"):  # torch.save's zip format
        if "PytorchStreamReader" in text or type(exc).__name__ in ("BadZipFile", "EOFError"):
            return f"it is a PyTorch file cut short or damaged ({type(exc).__name__})"
    elif head[:1] != b"\x80":  # not a pickle (torch.save's legacy format) either
        try:
            words = head.decode("utf-8").splitlines()[0].strip()
        except (UnicodeDecodeError, IndexError):
            return "it is not a PyTorch file"
        if not words:
            return "it is not a PyTorch file"
        return (
            f"it is not a PyTorch file (text: {words[:40] + ('...' if len(words) > 40 else '')!r})"
        )
    elif isinstance(exc, EOFError):
        return "it is a pickle cut short"
    if "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if found:
            return (
                f"it holds Python objects besides tensors ({found.group(1)}: a whole pickled "
                "model?), which napari-al does not load, since loading them runs code from the "
                "file"
            )
        if head[:1] == b"\x80":
            return "it is a Python pickle, not a PyTorch file"
        return "it is a PyTorch file that holds more than tensors"
    return None


def _show(caught: list[warnings.WarningMessage]) -> None:
    """Show again the warnings recorded while a detector was built."""
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _for_new_classes(
    trained: Detector, classes: list[str], version: int, s: ModelSettings
) -> Detector:
    """A new detector for the project's changed ``classes`` carrying over model version
    ``version`` (``trained``): its weights, and in the class-specific layers the rows of the
    classes it knew (:func:`napari_al.core.engine.class_change.with_classes`); what was kept
    is in its ``build_message``. ``s.anchors``/``min_size``/``max_size`` as for a continued
    model."""
    from napari_al.core.engine.class_change import with_classes

    if s.anchors is not None:
        _check_continued_anchors(trained, s.anchors, version)
    detector, kept = with_classes(trained, classes)
    if s.min_size or s.max_size:
        detector.set_input_size(
            s.min_size or detector.config.min_size, s.max_size or detector.config.max_size
        )
    change = []
    if kept.added:
        change.append(f"{', '.join(kept.added)} added")
    gone = [c for c in trained.classes if c not in classes]
    if gone:
        change.append(f"{', '.join(gone)} gone")
    detector.build_message = (
        f"the project's classes changed since model version {version} "
        f"({'; '.join(change) or 'reordered'}): a new detector with its weights, the output "
        f"rows of {', '.join(kept.shared) or 'no class'} kept, those of new classes fresh; "
        "train to make it a model version"
    )
    return detector


def _anchor_sizes(detector: Detector) -> list[list[int]]:
    """The anchor sizes of each RPN feature level of a Faster R-CNN ``detector``."""
    generator = detector.model.rpn.anchor_generator
    return [[int(v) for v in level] for level in generator.sizes]


def _two_stage_only(detector: Detector, anchors: str) -> None:
    if not detector.two_stage:
        raise WorkflowError(
            f"--anchors {anchors}: {detector.arch} has no RPN anchors to set; only the Faster "
            "R-CNN architectures take --anchors (leave it out, or give --arch)"
        )


def _check_continued_anchors(detector: Detector, anchors: str, version: int) -> None:
    """``anchors`` asked for while the project's model ``version`` (``detector``) is the one
    continued: its anchors are part of its trained structure, so unless they are the same,
    refuse in one line naming the way to a new detector, rather than ignore them."""
    _two_stage_only(detector, anchors)
    have = _anchor_sizes(detector)
    if have == [[int(v)] for v in anchors.split(",")]:
        return
    shown = ",".join(str(level[0]) for level in have) if all(len(x) == 1 for x in have) else have
    raise WorkflowError(
        f"--anchors {anchors}: the project's model version {version}, which this continues "
        f"from, has anchors {shown}; add --weights SOURCE (e.g. coco-mnv2, docs/weights.md) to "
        "start a new detector with these anchors, or leave out --anchors"
    )


def describe(detector: Detector) -> str:
    """One line naming the detector and where its weights came from."""
    source = (
        f"model version {detector.model_version}"
        if detector.model_version
        else detector.build_message
    )
    return f"{detector.arch} on {detector.device} ({source})"


class UntrainedModelWarning(UserWarning):
    """Predictions, a ranking or an evaluation came from a detector that is no model version
    of the project: its detection heads, or the output rows of classes added since its latest
    model, are untrained, so the boxes and scores mean little (train first)."""


def untrained_reason(store: ProjectStore, detector: Detector) -> str | None:
    """Why results of ``detector`` are weak when it is no model version of the project (the
    text of :class:`UntrainedModelWarning`, without the fix, which each front end words);
    None when it is one."""
    if getattr(detector, "model_version", None):
        return None
    if store.latest_model_version() is not None:  # classes changed since: carried over
        return (
            "the project's classes changed since its latest model, so these results come "
            "from its weights with untrained output rows for the new classes"
        )
    return (
        "the project has no trained model yet, so these results come from untrained detection heads"
    )


def ensemble_members(
    store: ProjectStore, detector: Detector, size: int = ENSEMBLE_SIZE
) -> list[Detector]:
    """Earlier checkpoints of the project with the same classes (newest first, excluding the
    detector's own version); unreadable checkpoints are skipped."""
    from napari_al.core.engine import load_checkpoint

    members: list[Detector] = []
    for row in reversed(store.model_versions()):
        if row.id == detector.model_version or len(members) >= size:
            continue
        try:
            det, _ = load_checkpoint(store.abs_path(row), device=str(detector.device))
        except (OSError, ValueError, RuntimeError):
            continue
        if list(det.classes) == list(detector.classes):
            det.model_version = row.id
            members.append(det)
    return members
