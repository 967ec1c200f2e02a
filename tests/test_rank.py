"""``napari-al rank``: the pool ranked by a strategy, per image, box or region, with caching."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from napari_al.cli import main
from napari_al.core.boxes import box_iou
from napari_al.core.store import ProjectStore

TINY = ["--min-size", "128", "--max-size", "160", "--device", "cpu"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    """The BCCD sample as labelled train/val images plus 4 unlabelled pool images (mirror
    images of four of them: a byte-for-byte copy would be left out of the import)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("rank")
    proj = root / "proj"
    pool = root / "pool"
    pool.mkdir()
    for p in sorted((sample_dir / "JPEGImages").glob("*.jpg"))[:4]:
        with Image.open(p) as im:
            im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(pool / f"pool_{p.name}")
    assert main(["init", str(proj)]) == 0
    assert main(["import", str(proj), str(sample_dir), "--format", "voc"]) == 0
    assert main(["import", str(proj), str(pool), "--format", "images"]) == 0
    return proj


def rank(capsys: pytest.CaptureFixture[str], project: Path, *extra: str) -> list[dict]:
    capsys.readouterr()
    assert main(["rank", str(project), *TINY, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_image_ranking_covers_the_pool_in_score_order(project: Path, capsys) -> None:
    items = rank(capsys, project, "--strategy", "entropy", "--budget", "10")
    assert len(items) == 4  # only the unreviewed pool is ranked
    assert all(Path(it["image"]).name.startswith("pool_") for it in items)
    scores = [it["score"] for it in items]
    assert scores == sorted(scores, reverse=True)
    assert all("entropy" in it["breakdown"] for it in items)


def test_combined_strategy_reports_each_component(project: Path, capsys) -> None:
    items = rank(capsys, project, "--strategy", "entropy+margin", "--budget", "2")
    assert len(items) == 2
    assert set(items[0]["breakdown"]) == {"entropy", "margin"}


def test_box_level_items_carry_their_box(project: Path, capsys) -> None:
    items = rank(
        capsys, project, "--strategy", "least_confidence", "--unit", "box", "--budget", "5"
    )
    assert items, "an untrained detector still proposes candidate boxes"
    for it in items:
        assert it["unit"] == "box" and len(it["box"]) == 4
        x1, y1, x2, y2 = it["box"]
        assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480


def test_diverse_selection_respects_the_budget(project: Path, capsys) -> None:
    items = rank(
        capsys, project, "--strategy", "entropy", "--budget", "2", "--diversity", "coreset"
    )
    assert len(items) == 2 and len({it["image_id"] for it in items}) == 2


def test_scores_are_cached_per_model_version(project: Path, capsys) -> None:
    assert main(["train", str(project), *TINY, "--steps", "1"]) == 0
    assert "trained 1 step on " in capsys.readouterr().out  # not '1 steps'
    first = rank(capsys, project, "--strategy", "entropy")
    with ProjectStore.open(project) as store:
        version = store.latest_model_version().id
    # white-box look at the cache table, through a separate read-only connection
    with sqlite3.connect(f"file:{project / 'napari_al.sqlite'}?mode=ro", uri=True) as conn:
        cached = conn.execute(
            "SELECT COUNT(*) FROM score_cache WHERE model_version = ?", (version,)
        ).fetchone()[0]
    assert cached == 4
    second = rank(capsys, project, "--strategy", "entropy")
    assert [(i["image_id"], i["score"]) for i in second] == [
        (i["image_id"], i["score"]) for i in first
    ]
    # a damaged entry (zeros over a page of an overflowing value: sqlite reads it back without
    # complaint) is scored again, not a traceback (KeyError from numpy's zip reader)
    with sqlite3.connect(project / "napari_al.sqlite") as conn:
        rows = conn.execute("SELECT rowid, payload FROM score_cache").fetchall()
        for rowid, payload in rows:
            damaged = payload[:60] + bytes(len(payload) - 160) + payload[-100:]
            conn.execute("UPDATE score_cache SET payload = ? WHERE rowid = ?", (damaged, rowid))
    third = rank(capsys, project, "--strategy", "entropy")
    assert [(i["image_id"], i["score"]) for i in third] == [
        (i["image_id"], i["score"]) for i in first
    ]


def test_predict_stores_pool_boxes_and_evaluate_reports_map(project: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["predict", str(project), *TINY]) == 0
    out = capsys.readouterr().out
    assert "predicted 4 images still to review" in out  # the 4 pool images: the rest is complete
    with ProjectStore.open(project) as store:
        pool = store.images(split="pool")
        predicted = store.boxes(statuses=("predicted",))
        assert {b.image_id for b in predicted} <= {r.id for r in pool}
        assert all(b.score is not None and b.model_version is not None for b in predicted)
        human_before = len(store.boxes(statuses=("accepted",)))
    assert main(["evaluate", str(project), *TINY, "--split", "val", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"map50", "map", "per_class"} <= set(result)
    assert set(result["per_class"]) == {"Platelets", "RBC", "WBC"}
    assert 0.0 <= result["map50"] <= 1.0 and result["images"] == 4
    with ProjectStore.open(project) as store:
        assert len(store.boxes(statuses=("accepted",))) == human_before


def test_box_level_never_asks_again_about_a_judged_object(project: Path, capsys) -> None:
    first = rank(
        capsys, project, "--strategy", "least_confidence", "--unit", "box", "--budget", "3"
    )
    top = first[0]
    with ProjectStore.open(project) as store:
        cls = store.classes()[0].id
        store.draw_box(top["image_id"], tuple(top["box"]), cls)  # the person answered it
        store.set_review_state(top["image_id"], "partial")
    again = rank(
        capsys, project, "--strategy", "least_confidence", "--unit", "box", "--budget", "50"
    )
    assert again
    same_image = [it["box"] for it in again if it["image_id"] == top["image_id"]]
    assert same_image, "the image still has other candidates to ask about"
    assert box_iou(np.asarray([top["box"]]), np.asarray(same_image)).max() < 0.5


def _project_with_a_broken_image(tmp_path: Path, sample_dir: Path) -> tuple[Path, list[Path]]:
    """Two good sample images and ``broken.jpg`` (header fine, pixels cut after it joined the
    project: an import leaves out a file already cut) in a new project with one class;
    returns the project and the good images."""
    pool = tmp_path / "pool"
    pool.mkdir()
    jpgs = sorted((sample_dir / "JPEGImages").glob("*.jpg"))
    for p in jpgs[:2]:
        shutil.copy(p, pool / p.name)
    data = jpgs[2].read_bytes()
    (pool / "broken.jpg").write_bytes(data)
    proj = tmp_path / "proj"
    assert main(["init", str(proj)]) == 0
    assert main(["import", str(proj), str(pool), "--format", "images"]) == 0
    (pool / "broken.jpg").write_bytes(data[: len(data) // 3])
    with ProjectStore.open(proj) as store:
        store.add_class("RBC")
    return proj, jpgs[:2]


def test_an_unreadable_pool_image_is_skipped_not_fatal(tmp_path: Path, sample_dir: Path, capsys):
    proj, good = _project_with_a_broken_image(tmp_path, sample_dir)
    capsys.readouterr()
    assert main(["predict", str(proj), *TINY]) == 0
    out, err = capsys.readouterr()
    assert "predicted 2 images" in out and "1 unreadable image skipped" in out
    # one line of its own (not inside the progress bar's), naming the file and what to do
    (line,) = [ln for ln in err.splitlines() if "broken.jpg" in ln]
    assert line.startswith("warning: skipped unreadable image") and "napari-al info" in line
    items = rank(capsys, proj, "--strategy", "entropy", "--budget", "5")
    assert sorted(Path(it["image"]).name for it in items) == sorted(p.name for p in good)


def test_background_query_job_reports_unreadable_images(tmp_path: Path, sample_dir: Path):
    """The GUI's rescore job (Qt-free generator over the workflow's round) skips and reports a
    broken file, with the broken image on screen."""
    import threading

    from napari_al.core.workflow import ModelSettings, QuerySettings, RoundSettings
    from napari_al.gui.tasks import rescore_job, run_job

    proj, _ = _project_with_a_broken_image(tmp_path, sample_dir)
    with ProjectStore.open(proj) as store:
        broken = next(r.id for r in store.images() if r.path.endswith("broken.jpg"))
    settings = RoundSettings(
        model=ModelSettings(min_size=128, max_size=160, device="cpu"),
        query=QuerySettings(budget=5),
    )
    result = run_job(rescore_job(proj, None, settings, threading.Event(), current_image=broken))
    assert result.error is None, result.details
    assert len(result.skipped) == 1 and "broken.jpg" in result.skipped[0]
    assert len(result.queries) == 2 and broken not in {q.image for q in result.queries}
    assert result.missed.get(broken, []) == []


def test_coreset_starts_from_the_labelled_images(project: Path, monkeypatch) -> None:
    """k-center greedy covers the pool given the labelled set (Sener & Savarese 2018): the
    embeddings of the completed training images reach the selection."""
    from napari_al.core import selection, workflow

    seen: dict = {}
    real = selection.select_images

    def spy(*args, **kwargs):
        seen["labelled"] = kwargs.get("labeled_embeddings")
        seen["pool"] = kwargs.get("embeddings")
        return real(*args, **kwargs)

    monkeypatch.setattr(selection, "select_images", spy)
    with ProjectStore.open(project) as store:
        train = [
            r
            for r in store.images()
            if r.review_state != "unseen" and r.split not in ("val", "test")
        ]
        detector = workflow.load_model(
            store, workflow.ModelSettings(min_size=128, max_size=160, device="cpu")
        )
        items = workflow.rank_pool(
            store, detector, workflow.QuerySettings(budget=2, diversity="coreset")
        )
        assert len(items) == 2
        assert seen["labelled"].shape == (len(train), seen["pool"].shape[1])
        assert len(train) > 0
        seen.clear()
        # no diversity: no labelled pass
        workflow.rank_pool(store, detector, workflow.QuerySettings(budget=2))
        assert seen["labelled"] is None


def test_question_unit_plans_stores_and_prints_the_dialog_queue(project: Path, capsys) -> None:
    from napari_al.core.workflow import stored_questions

    with ProjectStore.open(project) as store:
        trained = store.latest_model_version() is not None
    if not trained:
        assert main(["train", str(project), *TINY, "--steps", "1"]) == 0
    rows = rank(capsys, project, "--unit", "question", "--budget", "6", "--supervision", "box")
    assert 0 < len(rows) <= 6
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert [r["value"] for r in rows] == sorted((r["value"] for r in rows), reverse=True)
    with ProjectStore.open(project) as store:
        version = store.latest_model_version().id
        pool = {r.id for r in store.images(split="pool")}
        # the planning pass stored this model's predictions of the pool: the boxes asked about
        preds = store.boxes(statuses="predicted")
        assert {b.model_version for b in preds if b.image_id in pool} == {version}
        for r in rows:
            assert r["image_id"] in pool and r["kind"] in ("verify", "region", "draw")
            assert r["supervision"] == "box" and r["value"] > 0 and r["keys"]
            if r["kind"] == "verify":
                box = store.box(r["box_id"])
                assert (box.status, box.model_version) == ("predicted", version)
                assert r["text"].startswith("is this") and "W yes" in r["keys"]
        # stored: the viewer's Questions panel and a restart see the same queue
        stored = stored_questions(store)
        assert len(stored) == len(rows)
        assert [q.to_dict() for q in stored] == [
            {k: r[k] for k in q.to_dict()} for q, r in zip(stored, rows, strict=True)
        ]
    capsys.readouterr()
    assert main(["rank", str(project), *TINY, "--unit", "question", "--budget", "2"]) == 0
    out, err = capsys.readouterr()
    assert out.count("\n") == 2 and "keys:" in out and "supervision:" in err


@pytest.mark.parametrize("unit", ["region", "box", "question"])
def test_a_rank_that_finds_nothing_says_why_not_that_the_pool_is_empty(
    project: Path, capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, unit: str
) -> None:
    """`rank --strategy missed --unit region` on a pool of unreviewed images said "the pool
    has no image still to review" when every region scored 0 (the missed-only strategy has
    no box scores; where the model leaves no candidate unmatched nothing remains)."""
    from napari_al.core import workflow

    monkeypatch.setattr(workflow, "rank_pool", lambda *a, **k: [])
    monkeypatch.setattr(workflow, "plan_questions", lambda *a, **k: [])
    extra = ["--strategy", "missed"] if unit == "region" else []
    capsys.readouterr()
    assert main(["rank", str(project), *TINY, "--unit", unit, *extra]) == 0
    err = capsys.readouterr().err
    assert "in the 4 pool images still to review" in err and "no image still" not in err
    assert "saved as" not in err  # nothing was ranked: no "saved" line after it
    assert ("every region scores 0 under --strategy missed" in err) == (unit == "region")
    assert ("no box there not judged already" in err) == (unit == "box")
    assert ("no question is worth its seconds" in err) == (unit == "question")
    empty = tmp_path / "empty"
    assert main(["init", str(empty)]) == 0 and main(["add-class", str(empty), "cell"]) == 0
    capsys.readouterr()
    assert main(["rank", str(empty), *TINY, "--unit", unit]) == 0
    err = capsys.readouterr().err
    assert "the pool has no image still to review" in err
    assert f"'napari-al import {empty} --format images FOLDER'" in err  # the fix, runnable


def test_a_rank_of_an_unreadable_pool_says_every_image_was_skipped(
    tmp_path: Path, sample_dir: Path, capsys
) -> None:
    from PIL import Image

    proj, pool = tmp_path / "proj", tmp_path / "pool"
    pool.mkdir()
    src = sorted((sample_dir / "JPEGImages").glob("*.jpg"))[0]
    with Image.open(src) as im:
        im.save(pool / "a.png")
    assert main(["init", str(proj)]) == 0 and main(["add-class", str(proj), "cell"]) == 0
    assert main(["import", str(proj), str(pool), "--format", "images"]) == 0
    (pool / "a.png").write_bytes(b"not a png any more")
    capsys.readouterr()
    assert main(["rank", str(proj), *TINY, "--unit", "region"]) == 0
    err = capsys.readouterr().err
    assert "skipped unreadable image" in err
    assert "nothing to rank in the 1 pool image still to review: every one was skipped" in err


def test_the_question_queue_leaves_out_a_pool_image_it_could_not_read(
    project: Path, tmp_path: Path, capsys
) -> None:
    """The planner warned that an image was skipped as unreadable, then queued a draw question
    about it all the same."""
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    with ProjectStore.open(copy) as store:
        if store.latest_model_version() is None:
            assert main(["train", str(copy), *TINY, "--steps", "1"]) == 0
        pool = [r for r in store.images(split="pool") if r.review_state != "complete"]
        gone = store.abs_path(pool[0])
    saved = gone.read_bytes()
    try:
        gone.write_bytes(b"not a jpeg any more")
        rows = rank(capsys, copy, "--unit", "question", "--budget", "50", "--supervision", "box")
    finally:
        gone.write_bytes(saved)
    assert rows and pool[0].id not in {r["image_id"] for r in rows}


def test_box_queries_by_an_image_scorer_alone_are_refused(project: Path, capsys) -> None:
    """`--unit box --strategy missed` listed every box at score 0.0000 with an empty
    breakdown: the missed scorer scores images, not boxes."""
    capsys.readouterr()
    assert main(["rank", str(project), *TINY, "--unit", "box", "--strategy", "missed"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'missed' scores whole images, not boxes" in err
    assert rank(capsys, project, "--unit", "box", "--strategy", "entropy+missed", "--budget", "2")


def test_fewer_regions_than_the_budget_are_explained(
    project: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_al.core import workflow
    from napari_al.core.selection import QueryItem

    two = [QueryItem(1, 0.5, "region", (0.0, 0.0, 9.0, 9.0)), QueryItem(1, 0.2, "region", None)]
    monkeypatch.setattr(workflow, "rank_pool", lambda *a, **k: two)
    capsys.readouterr()
    argv = ["rank", str(project), *TINY, "--unit", "region", "--budget", "20"]
    assert main([*argv, "--strategy", "missed"]) == 0
    assert (
        "note: 2 regions, fewer than --budget 20: no other region of the pool scores above 0"
        in (capsys.readouterr().err)
    )
    assert main([*argv, "--budget", "2"]) == 0
    assert "fewer than --budget" not in capsys.readouterr().err
