"""Child process of ``test_store.test_kill_loses_no_returned_action`` and
``test_store.test_kill_inside_a_transaction_leaves_nothing``.

Opens the store given on the command line and performs random user actions as fast as it can,
through the :class:`~napari_al.core.annotator.Annotator` as the GUI does (undo and redo
included), printing the newest action id after each call returns (flushed), until the parent
kills it.
One op is a batch: ONE :meth:`~napari_al.core.store.ProjectStore.transaction` of five writes
(``batch_start``, three draws, ``batch_end``, the markers carrying one token), so a kill can
land inside it; the parent checks every batch in the log is whole.

Usage: python store_kill_child.py PROJECT_DIR SEED MAX_ACTIONS [hang]

With ``hang`` the child opens a transaction, makes three writes, prints ``inside`` and waits
there to be killed.
"""

from __future__ import annotations

import random
import sys
import time

from napari_al.core.annotator import Annotator, StaleCommand
from napari_al.core.store import ProjectStore


def batch(store: ProjectStore, rng: random.Random, image, class_ids: list[int]) -> None:
    """Five writes in ONE transaction, with a short pause inside for a kill to land in."""
    token = rng.getrandbits(48)
    with store.transaction():
        store.log_action("batch_start", image.id, payload={"token": token})
        for k in range(3):
            store.draw_box(image.id, (k, k, k + 5, k + 5), rng.choice(class_ids))
            time.sleep(0.0005)
        store.log_action("batch_end", image.id, payload={"token": token})


def hang(store: ProjectStore) -> None:
    """Three writes of an open transaction, then wait to be killed inside it."""
    image = store.images()[0]
    cls = store.classes()[0].id
    with store.transaction():
        store.log_action("batch_start", image.id, payload={"token": -1})
        store.draw_box(image.id, (1, 1, 9, 9), cls)
        store.set_review_state(image.id, "complete")
        print("inside", flush=True)
        time.sleep(60)


def main() -> None:
    project_dir, seed, max_actions = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    with ProjectStore.open(project_dir) as store:
        if sys.argv[4:] == ["hang"]:
            hang(store)
            return
        images = store.images()
        class_ids = [c.id for c in store.classes()]
        ann = Annotator(store)  # the undo system; a restarted child starts with an empty stack
        for _ in range(max_actions):
            image = rng.choice(images)
            boxes = store.boxes(image_id=image.id)
            op = rng.random()
            x1, y1 = rng.uniform(0, image.width / 2), rng.uniform(0, image.height / 2)
            xyxy = (
                x1,
                y1,
                min(image.width, x1 + rng.uniform(1, 50)),
                min(image.height, y1 + rng.uniform(1, 50)),
            )
            if op < 0.1:
                batch(store, rng, image, class_ids)
            elif not boxes or op < 0.2:
                ann.draw(image.id, xyxy, rng.choice(class_ids))
            elif op < 0.3:
                ann.accept(rng.choice(boxes).id)
            elif op < 0.4:
                ann.reject(rng.choice(boxes).id)
            elif op < 0.5:
                ann.correct(rng.choice(boxes).id, xyxy)
            elif op < 0.55:
                ann.set_class(rng.choice(boxes).id, rng.choice(class_ids))
            elif op < 0.6:
                with ann.group("delete"):  # a selection deleted at once
                    for box in rng.sample(boxes, min(2, len(boxes))):
                        ann.delete(box.id)
            elif op < 0.7:
                ann.delete(rng.choice(boxes).id)
            elif op < 0.8:  # someone else changes the review state (undo may become stale)
                state = rng.choice(["unseen", "partial", "complete"])
                if store.set_review_state(image.id, state) is None:
                    store.log_action("skip", image.id)
            else:
                try:
                    done = ann.undo()
                    if done is not None and op < 0.9:  # and redo it straight away
                        print(store.last_action_id(), flush=True)
                        done = ann.redo()
                except StaleCommand:
                    done = None
                if done is None:
                    store.log_action("skip", image.id)
            print(store.last_action_id(), flush=True)


if __name__ == "__main__":
    main()
