"""Child process of ``tests/test_reliability_crash.py``: a scripted annotation session.

Opens the project the way the GUI does (:func:`napari_al.core.project.open_or_init`) and walks,
through the GUI's :class:`~napari_al.core.annotator.Annotator` (undo and redo included), a
fixed script of user actions (predict, accept, reject, correct, draw, delete, set class,
undo, redo, complete, import of a small VOC dataset) as fast as it can. After each action
RETURNS it prints one JSON line (flushed) saying what it returned and what the store shows
for the thing it changed. The parent SIGKILLs it at random moments, then checks that every
printed action is still there with that effect.

Usage: python reliability_child.py PROJECT_DIR SOURCES_DIR RUN START_STEP MAX_STEPS

Training mode (for ``tests/test_reliability_training.py``):
``python reliability_child.py train PROJECT_DIR STEPS HOW`` trains the project's model with
:func:`napari_al.core.workflow.train_model` at a tiny input size, printing ``step N`` after each
step; ``HOW`` is ``run`` (the parent kills it mid-training), ``die-before-rename`` or
``die-after-rename`` (it SIGKILLs itself while saving the checkpoint: after the temporary file
is written but before it replaces the target, or after that but before the store records the
new model version).

``RUN`` seeds the random choices and names the datasets it imports (``SOURCES_DIR/rRUN_sSTEP``);
``START_STEP`` is where in the script to continue, so a restarted child picks up the session.
Each line: ``{"step", "op", "kind", "id", ...}`` where ``id`` is the logged action's id and
``kind`` its kind; box actions add ``box`` and ``after`` (the box row as a dict, ``null`` when
deleted), review actions ``image`` and ``after`` (the review state), ``predict`` adds
``added``/``removed`` box ids, ``import`` adds ``paths`` and ``boxes``.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

#: The scripted session, cycled. Every kind of user action appears, plus a model's proposals
#: (``predict``) for the person to accept/reject, and a dataset import.
SCRIPT = (
    "predict",
    "accept",
    "draw",
    "correct",
    "set_class",
    "reject",
    "undo",
    "redo",
    "delete",
    "undo",
    "complete",
    "draw",
    "accept",
    "import",
    "undo",
    "redo",
    "delete",
    "set_class",
    "complete",
    "correct",
)

TEMPLATE = "template.png"  # in SOURCES_DIR, written by the parent (64x48)
TEMPLATE_W, TEMPLATE_H = 64, 48


def tag(path: Path, run: int, step: int) -> None:
    """Make the copied template unique to its run and step (three pixels): an import leaves
    out a file whose content is already in the project."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
    for k, value in enumerate((run % 256, step % 256, step // 256 % 256)):
        im.putpixel((k, 0), (value, value, value))
    im.save(path)


def emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def random_box(rng: random.Random, width: int, height: int) -> tuple[float, ...]:
    x1 = rng.uniform(0, width - 8)
    y1 = rng.uniform(0, height - 8)
    return (x1, y1, min(width, x1 + rng.uniform(4, 60)), min(height, y1 + rng.uniform(4, 60)))


def main() -> None:
    project, sources, run, start, n_steps = sys.argv[1:6]
    run, start, n_steps = int(run), int(start), int(n_steps)
    rng = random.Random(run * 1_000_003 + start)

    from napari_al.core.annotator import Annotator, StaleCommand
    from napari_al.core.project import open_or_init

    store = open_or_init(Path(project))  # the GUI's code path
    ann = Annotator(store)  # the GUI's actions and undo; a restarted child has an empty stack

    def box_record(kind: str, action_id: int, box_id: int) -> dict:
        boxes = store.boxes()
        after = next((b.to_dict() for b in boxes if b.id == box_id), None)
        return {"kind": kind, "id": action_id, "box": box_id, "after": after}

    def pick_box(prefer: str | None = None):
        boxes = store.boxes(statuses=prefer) if prefer else []
        boxes = boxes or store.boxes()
        return rng.choice(boxes) if boxes else None

    def draw() -> dict:
        image = rng.choice(store.images())
        cls = rng.choice(store.classes()).id
        cmd = ann.draw(image.id, random_box(rng, image.width, image.height), cls)
        return box_record("draw", cmd.action_id, cmd.box_id)

    def undo_redo(kind: str) -> dict:
        last = store.last_action_id()
        try:
            target = ann.undo() if kind == "undo" else ann.redo()
        except StaleCommand:  # changed since by a prediction or an import: dropped
            target = None
        if target is None:
            return draw()
        row = store.actions(since_id=last)[-1]  # what the undo/redo logged last
        if row.box_id is not None:
            return box_record(kind, row.id, row.box_id)
        state = store.image(row.image_id).review_state
        return {"kind": kind, "id": row.id, "image": row.image_id, "after": state}

    def import_voc(step: int) -> dict:
        folder = Path(sources) / f"r{run}_s{step}"
        shutil.rmtree(folder, ignore_errors=True)  # left half-written by an earlier kill
        (folder / "JPEGImages").mkdir(parents=True)
        (folder / "Annotations").mkdir()
        shutil.copyfile(Path(sources) / TEMPLATE, folder / "JPEGImages" / "im.png")
        tag(folder / "JPEGImages" / "im.png", run, step)
        names = [c.name for c in store.classes()]
        if rng.random() < 0.2:
            names.append(f"Cell{run}x{step}")  # the import adds a class
        objects = ""
        for _ in range(rng.randint(1, 3)):
            x1, y1 = rng.randint(1, 40), rng.randint(1, 30)
            objects += (
                f"<object><name>{rng.choice(names)}</name><bndbox><xmin>{x1}</xmin>"
                f"<ymin>{y1}</ymin><xmax>{x1 + rng.randint(0, 20)}</xmax>"
                f"<ymax>{y1 + rng.randint(0, 15)}</ymax></bndbox></object>"
            )
        (folder / "Annotations" / "im.xml").write_text(
            f"<annotation><filename>im.png</filename><size><width>{TEMPLATE_W}</width>"
            f"<height>{TEMPLATE_H}</height></size>{objects}</annotation>"
        )
        from napari_al.core.project import import_into

        dataset, summary = import_into(store, folder, "voc")
        return {
            "kind": "import",
            "id": summary["action_id"],
            "paths": [store.rel_path(im.path) for im in dataset.images],
            "boxes": summary["boxes_added"],
        }

    for step in range(start, start + n_steps):
        op = SCRIPT[step % len(SCRIPT)]
        if op == "predict":
            image = rng.choice(store.images())
            classes = [c.id for c in store.classes()]
            preds = [
                (random_box(rng, image.width, image.height), rng.choice(classes), rng.random())
                for _ in range(rng.randint(1, 3))
            ]
            before = [b.id for b in store.boxes(image_id=image.id, statuses="predicted")]
            added = store.replace_predictions(image.id, preds, model_version=None)
            rec = {
                "kind": "predict",
                "id": store.last_action_id(),
                "image": image.id,
                "added": added,
                "removed": before,
            }
        elif op in ("accept", "reject"):
            box = pick_box("predicted")
            if box is None:
                rec = draw()
            elif op == "accept":
                rec = box_record(op, ann.accept(box.id).action_id, box.id)
            else:
                rec = box_record(op, ann.reject(box.id).action_id, box.id)
        elif op == "correct":
            box = pick_box()
            if box is None:
                rec = draw()
            else:
                image = store.image(box.image_id)
                xyxy = random_box(rng, image.width, image.height)
                rec = box_record(op, ann.correct(box.id, xyxy).action_id, box.id)
        elif op == "set_class":
            box = pick_box()
            others = [c.id for c in store.classes() if box is None or c.id != box.class_id]
            if box is None or not others:
                rec = draw()
            else:
                rec = box_record(op, ann.set_class(box.id, rng.choice(others)).action_id, box.id)
        elif op == "delete":
            box = pick_box()
            rec = draw() if box is None else box_record(op, ann.delete(box.id).action_id, box.id)
        elif op == "draw":
            rec = draw()
        elif op in ("undo", "redo"):
            rec = undo_redo(op)
        elif op == "complete":
            todo = [im for im in store.images() if im.review_state != "complete"]
            if todo:
                image, state = rng.choice(todo), "complete"
                command = ann.complete_image(image.id)
                assert command is not None
                action_id = command.action_id
            else:  # not a command of the GUI: straight to the store
                image, state = rng.choice(store.images()), "partial"
                action_id = store.set_review_state(image.id, state)
            kind = "complete" if state == "complete" else "review_state"
            rec = {"kind": kind, "id": action_id, "image": image.id, "after": state}
        elif op == "import":
            rec = import_voc(step)
        else:  # pragma: no cover - the script is fixed
            raise AssertionError(op)
        rec.update(step=step, op=op)
        emit(rec)
    store.close()


def train_main() -> None:
    import os
    import signal

    project, steps, how = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):  # the checkpoint's atomic rename
        if not str(dst).endswith(".pt"):
            return real_replace(src, dst, *args, **kwargs)
        if how == "die-before-rename":
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)
        if how == "die-after-rename":
            os.kill(os.getpid(), signal.SIGKILL)
        return None

    os.replace = replace
    from napari_al.core.store import ProjectStore
    from napari_al.core.workflow import ModelSettings, TrainSettings, load_model, train_model

    with ProjectStore.open(project) as store:
        detector = load_model(store, ModelSettings(min_size=128, max_size=160))
        emit({"loaded": detector.model_version})

        def progress(step, total, loss, epoch) -> None:
            emit({"step": step, "loss": loss})

        outcome = train_model(store, detector, TrainSettings(steps=steps), progress=progress)
        emit({"done": outcome.model_version})


def open_main() -> None:
    """``open FOLDER DIE_AT``: open a plain image folder the GUI's way (it becomes a project).

    ``DIE_AT`` (``none``, ``migrate``, ``import``) SIGKILLs the process when the store is about
    to create its schema, or to import the folder's images: the first open interrupted.
    """
    import os
    import signal

    from napari_al.core import store as store_mod
    from napari_al.core.project import open_or_init

    folder, die_at = sys.argv[2], sys.argv[3]

    def die(*_args, **_kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if die_at == "migrate":
        store_mod.ProjectStore._migrate = staticmethod(die)
    elif die_at == "import":
        store_mod.ProjectStore.import_dataset = die
    with open_or_init(Path(folder)) as store:
        emit({"images": len(store.images())})


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train_main()
    elif sys.argv[1] == "open":
        open_main()
    else:
        main()
