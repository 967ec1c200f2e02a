"""Crash safety: SIGKILL a scripted annotation session at random moments, lose nothing.

A child process (``tests/reliability_child.py``) opens a project the way the GUI does and runs
a scripted session (predict, accept, reject, correct, draw, delete, set class, undo, redo,
complete, import), printing one line per action after it returns. The parent kills it with
SIGKILL at seeded random moments (during start-up, between actions, inside a transaction),
then after EVERY kill:

- ``PRAGMA integrity_check`` is ok (raw SQLite first, then the store's check with foreign keys);
- every action the child printed is in the log, of the same kind, with the same effect (the
  logged ``after`` state equals what the child saw after the call returned);
- every box and every image's review state equals the effect of the newest printed action that
  touched it, unless a later logged action (one that committed but had not been printed yet)
  changed it; and the database as a whole equals a replay of its own action log;
- every imported image is there;
- the project opens through the GUI's code path (:func:`napari_al.core.project.open_or_init`)
  and every image's boxes can be read.

The project persists across kills: each restart continues the script where the last child was.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from napari_al.core.project import import_into, open_or_init
from napari_al.core.store import STORE_FILENAME, ProjectStore

REPO = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "reliability_child.py"
SAMPLE = REPO / "sample_data" / "bccd_sample"

#: Kills per run (the issue asks for at least 50) and the seed of their timing.
KILLS = 60
SEED = 20240607


def make_project(tmp_path: Path) -> tuple[Path, Path]:
    """A project opened from a folder of 3 BCCD images (pool), plus 2 annotated ones via VOC."""
    project = tmp_path / "project"
    (project / "images").mkdir(parents=True)
    jpgs = sorted((SAMPLE / "JPEGImages").glob("*.jpg"))
    for p in jpgs[:3]:
        shutil.copyfile(p, project / "images" / p.name)
    voc = tmp_path / "voc"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "Annotations").mkdir()
    for p in jpgs[3:5]:
        shutil.copyfile(p, voc / "JPEGImages" / p.name)
        shutil.copyfile(
            SAMPLE / "Annotations" / f"{p.stem}.xml", voc / "Annotations" / f"{p.stem}.xml"
        )
    sources = tmp_path / "sources"
    sources.mkdir()
    Image.new("RGB", (64, 48), (200, 100, 50)).save(sources / "template.png")
    with open_or_init(project) as store:  # a plain folder becomes a project, images in the pool
        assert len(store.images()) == 3
        import_into(store, voc, "voc")
        assert len(store.images()) == 5
    return project, sources


def replay(store: ProjectStore) -> tuple[dict, dict, list]:
    """Box and review states implied by the action log: ``{id: (action_id, state)}``."""
    boxes: dict[int, tuple[int, object]] = {}
    reviews: dict[int, tuple[int, str]] = {}
    actions = store.actions()
    for a in actions:
        if a.kind == "predict":
            for b in a.payload["removed"]:
                boxes[b] = (a.id, None)
            for b in a.payload["added"]:
                boxes[b] = (a.id, "predicted")
        elif a.box_id is not None and "after" in a.payload:
            boxes[a.box_id] = (a.id, a.payload["after"])
            if "review" in a.payload:  # the same action changed the image's review state
                reviews[a.image_id] = (a.id, a.payload["review"]["after"])
        elif a.image_id is not None and isinstance(a.payload.get("after"), str):
            reviews[a.image_id] = (a.id, a.payload["after"])
    return boxes, reviews, actions


def verify(project: Path, printed: list[dict]) -> dict[str, int]:
    """All checks after one kill; returns counts (actions verified, lost)."""
    raw = sqlite3.connect(project / STORE_FILENAME)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        raw.close()
    counts = {"verified": 0, "lost": 0, "superseded": 0}
    lost: list[str] = []
    with open_or_init(project) as store:  # the GUI's code path
        assert store.integrity_check() == "ok"
        log_boxes, log_reviews, actions = replay(store)
        by_id = {a.id: a for a in actions}
        counts["max_log"] = max(by_id)
        boxes = {b.id: b.to_dict() for b in store.boxes()}
        images = store.images()
        for image in images:  # what the GUI reads when it shows an image
            store.boxes(image_id=image.id)
        review = {im.id: im.review_state for im in images}

        # 1. the database equals a replay of its own log
        for box_id, (_aid, state) in log_boxes.items():
            if state is None:
                assert box_id not in boxes, f"box {box_id} should be gone"
            elif state == "predicted":
                assert boxes[box_id]["status"] == "predicted"
            else:
                assert boxes.get(box_id) == state, f"box {box_id} differs from its log"
        for box_id, box in boxes.items():
            if box_id not in log_boxes:
                assert box["source"] == "import", f"box {box_id} appeared without an action"
        for image_id, (_aid, state) in log_reviews.items():
            assert review[image_id] == state

        # 2. every printed action is in the log with the effect the child saw
        last_box: dict[int, tuple[int, object]] = {}
        last_review: dict[int, tuple[int, str]] = {}
        paths = {im.path for im in images}
        for rec in printed:
            a = by_id.get(rec["id"])
            if a is None or a.kind != rec["kind"]:
                lost.append(f"action {rec['id']} ({rec['kind']}) missing")
                continue
            if rec["kind"] == "predict":
                if a.payload["added"] != rec["added"]:
                    lost.append(f"predict {rec['id']} logged other boxes")
                for b in rec["removed"]:
                    last_box[b] = (rec["id"], None)
                for b in rec["added"]:
                    last_box[b] = (rec["id"], "predicted")
            elif rec["kind"] == "import":
                missing = [p for p in rec["paths"] if p not in paths]
                if missing or a.payload["boxes_added"] != rec["boxes"]:
                    lost.append(f"import {rec['id']}: images {missing} missing")
            elif "box" in rec:
                if a.box_id != rec["box"] or a.payload["after"] != rec["after"]:
                    lost.append(f"{rec['kind']} {rec['id']}: logged effect differs")
                last_box[rec["box"]] = (rec["id"], rec["after"])
            else:
                if a.image_id != rec["image"] or a.payload["after"] != rec["after"]:
                    lost.append(f"{rec['kind']} {rec['id']}: logged review state differs")
                last_review[rec["image"]] = (rec["id"], rec["after"])
            counts["verified"] += 1

        # 3. each printed effect is still in force unless a later logged action changed it
        for box_id, (aid, state) in last_box.items():
            log_aid, _ = log_boxes[box_id]
            if log_aid > aid:
                counts["superseded"] += 1
                continue
            if log_aid != aid:
                lost.append(f"box {box_id}: printed action {aid} newer than the log's {log_aid}")
            elif state is None and box_id in boxes:
                lost.append(f"box {box_id} came back")
            elif state == "predicted" and boxes.get(box_id, {}).get("status") != "predicted":
                lost.append(f"predicted box {box_id} lost")
            elif isinstance(state, dict) and boxes.get(box_id) != state:
                lost.append(f"box {box_id}: {boxes.get(box_id)} != printed {state}")
        for image_id, (aid, state) in last_review.items():
            log_aid, _ = log_reviews[image_id]
            if log_aid > aid:
                continue
            if log_aid != aid or review[image_id] != state:
                lost.append(f"image {image_id}: review state {review[image_id]} != {state}")
    counts["lost"] = len(lost)
    assert not lost, lost[:10]
    return counts


def run_child(project: Path, sources: Path, run: int, start: int, rng: random.Random):
    """Start the child, kill it at a random moment; return (printed records, how it was killed)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(project), str(sources), str(run), str(start), "100000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    lines: list[bytes] = []
    try:
        if rng.random() < 0.15:  # anywhere, start-up and opening the store included
            how = "timed"
            time.sleep(rng.uniform(0.0, 0.6))
        else:  # after some actions returned, then a little later: inside a transaction
            how = "after-lines"
            for _ in range(rng.randint(1, 12)):
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
            time.sleep(rng.uniform(0.0, 0.004))
    finally:
        proc.send_signal(signal.SIGKILL)
        rest, err = proc.communicate()
    lines += rest.splitlines(keepends=True)
    assert proc.returncode == -signal.SIGKILL, f"child failed: {err.decode()[-3000:]}"
    printed = [json.loads(ln) for ln in lines if ln.endswith(b"\n")]  # a cut line never returned
    return printed, how


def test_sigkill_at_random_moments_loses_no_returned_action(tmp_path: Path) -> None:
    project, sources = make_project(tmp_path)
    rng = random.Random(SEED)
    printed: list[dict] = []
    kinds: dict[str, int] = {}
    hows: dict[str, int] = {}
    survived = 0
    verified_total = 0
    lost_total = 0
    unprinted = 0  # kills that landed after a commit, before its line was printed
    seen_log = 0
    start = 0
    t0 = time.perf_counter()
    for run in range(KILLS):
        new, how = run_child(project, sources, run, start, rng)
        hows[how] = hows.get(how, 0) + 1
        printed += new
        for rec in new:
            kinds[rec["kind"]] = kinds.get(rec["kind"], 0) + 1
        start = (new[-1]["step"] + 1) if new else start
        counts = verify(project, printed)
        verified_total += counts["verified"]
        lost_total += counts["lost"]
        last_printed = max((r["id"] for r in new), default=seen_log)
        unprinted += counts["max_log"] > max(last_printed, seen_log)
        seen_log = counts["max_log"]
        survived += 1
    elapsed = time.perf_counter() - t0
    print(
        f"\ncrash harness: kills survived {survived}/{KILLS} ({hows}), actions returned "
        f"{len(printed)}, action checks after kills {verified_total}, data lost {lost_total}, "
        f"{elapsed:.1f} s; kills between a commit and its print {unprinted}; "
        f"kinds {dict(sorted(kinds.items()))}"
    )
    assert survived == KILLS >= 50
    assert lost_total == 0
    # the script really exercised every kind of action
    for kind in ("predict", "accept", "reject", "correct", "draw", "delete", "set_class"):
        assert kinds.get(kind, 0) > 0, kind
    for kind in ("undo", "redo", "complete", "import"):
        assert kinds.get(kind, 0) > 0, kind
    assert len(printed) >= 2 * KILLS


def test_child_runs_to_completion_and_matches_the_log(tmp_path: Path) -> None:
    """The harness's own check: without kills a full pass of the script verifies cleanly."""
    project, sources = make_project(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, str(CHILD), str(project), str(sources), "0", "0", "40"],
        capture_output=True,
        env=env,
        check=True,
    )
    printed = [json.loads(ln) for ln in out.stdout.splitlines()]
    assert [r["step"] for r in printed] == list(range(40))
    counts = verify(project, printed)
    assert counts["verified"] == 40
    assert counts["lost"] == 0


def test_verifier_catches_lost_or_changed_data(tmp_path: Path) -> None:
    """The checks have teeth: a changed box, a lost action or a changed effect all fail."""
    project, sources = make_project(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, str(CHILD), str(project), str(sources), "0", "0", "20"],
        capture_output=True,
        env=env,
        check=True,
    )
    printed = [json.loads(ln) for ln in out.stdout.splitlines()]
    verify(project, printed)
    # an action the child saw return but the log lacks
    with pytest.raises(AssertionError, match="missing"):
        verify(project, [*printed, {"id": 10**6, "kind": "draw", "box": 1, "after": None}])
    # the effect the child saw differs from the stored one
    rec = next(r for r in printed if r.get("after") and "box" in r)
    changed = dict(rec, after=dict(rec["after"], x1=rec["after"]["x1"] + 1))
    with pytest.raises(AssertionError, match="differs"):
        verify(project, [*printed, changed])
    # a box changed behind the log's back (as a torn write would)
    box_id = next(r["box"] for r in reversed(printed) if r.get("after") and "box" in r)
    conn = sqlite3.connect(project / STORE_FILENAME)
    with conn:
        conn.execute("UPDATE boxes SET x2 = x2 + 0.5 WHERE id = ?", (box_id,))
    conn.close()
    with pytest.raises(AssertionError):
        verify(project, printed)


def test_a_killed_first_open_of_an_image_folder_still_finds_its_images(tmp_path: Path) -> None:
    """Opening a folder of images makes it a project; killing that first open at any moment
    (creating the store, making its schema, importing the images, or at a random time) must
    not leave a project that has forgotten the folder's images."""
    folder = tmp_path / "images"
    folder.mkdir()
    jpgs = sorted((SAMPLE / "JPEGImages").glob("*.jpg"))[:3]
    for p in jpgs:
        shutil.copyfile(p, folder / p.name)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rng = random.Random(SEED + 2)
    plans = ["migrate", "import"] + [f"after {rng.uniform(0.05, 0.35):.3f}" for _ in range(6)]
    outcomes = []
    for plan in plans:
        for f in folder.glob(f"{STORE_FILENAME}*"):
            f.unlink()
        die_at = plan if not plan.startswith("after") else "none"
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), "open", str(folder), die_at],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        if plan.startswith("after"):
            time.sleep(float(plan.split()[1]))
            proc.send_signal(signal.SIGKILL)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), err.decode()[-2000:]
        outcomes.append((plan, proc.returncode, (folder / STORE_FILENAME).exists()))
        with open_or_init(folder) as store:  # the GUI opens the folder again
            assert store.integrity_check() == "ok"
            names = sorted(Path(im.path).name for im in store.images())
            assert names == [p.name for p in jpgs], f"{plan}: the project lost its images"
            assert all(im.split == "pool" for im in store.images())
    print(f"\nkilled first opens: {outcomes}")


@pytest.mark.gui
def test_killed_project_opens_in_napari(tmp_path: Path, make_napari_viewer) -> None:
    """After kills, the project opens in the real widget (one open; needs a display)."""
    project, sources = make_project(tmp_path)
    rng = random.Random(SEED + 1)
    start = 0
    for run in range(3):
        new, _ = run_child(project, sources, run, start, rng)
        start = (new[-1]["step"] + 1) if new else start
    from napari_al.gui.session import open_project

    viewer = make_napari_viewer()
    session = open_project(project, viewer=viewer)
    assert session.widget.store is not None
    assert session.widget.store.integrity_check() == "ok"
    n_images = len(session.widget.store.images())
    session.widget.store.close()
    with ProjectStore.open(project) as store:
        assert len(store.images()) == n_images
