"""Child process of ``test_store.test_kill_loses_no_returned_action``.

Opens the store given on the command line and performs random user actions as fast as it can,
printing the newest action id after each call returns (flushed), until the parent kills it.

Usage: python store_kill_child.py PROJECT_DIR SEED MAX_ACTIONS
"""

from __future__ import annotations

import random
import sys

from napari_al.core.store import ProjectStore


def main() -> None:
    project_dir, seed, max_actions = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    with ProjectStore.open(project_dir) as store:
        images = store.images()
        class_ids = [c.id for c in store.classes()]
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
            if not boxes or op < 0.2:
                store.draw_box(image.id, xyxy, rng.choice(class_ids))
            elif op < 0.3:
                store.accept_box(rng.choice(boxes).id)
            elif op < 0.4:
                store.reject_box(rng.choice(boxes).id)
            elif op < 0.5:
                store.correct_box(rng.choice(boxes).id, xyxy=xyxy)
            elif op < 0.6:
                store.set_box_class(rng.choice(boxes).id, rng.choice(class_ids))
            elif op < 0.7:
                store.delete_box(rng.choice(boxes).id)
            elif op < 0.8:
                state = rng.choice(["unseen", "partial", "complete"])
                if store.set_review_state(image.id, state) is None:
                    store.log_action("skip", image.id)
            elif op < 0.9:
                if store.undo_last() is None:
                    store.log_action("skip", image.id)
            else:
                if store.redo() is None:
                    store.log_action("skip", image.id)
            print(store.last_action_id(), flush=True)


if __name__ == "__main__":
    main()
