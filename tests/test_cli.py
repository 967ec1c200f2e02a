"""The ``napari-al`` command line: project commands on real data, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from napari_al.cli import main

REPO = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_bccd_import_info_json(tmp_path: Path, bccd_dir: Path, capsys) -> None:
    project = tmp_path / "proj"
    assert run(capsys, "init", str(project))[0] == 0
    code, out, _ = run(capsys, "import", str(project), str(bccd_dir), "--format", "voc")
    assert code == 0 and "364 images and 4888 boxes" in out
    code, out, _ = run(capsys, "info", str(project), "--json")
    info = json.loads(out)
    assert info["images"] == 364
    assert info["boxes"] == 4888
    assert sorted(info["classes"]) == ["Platelets", "RBC", "WBC"]
    assert info["boxes_by_status"]["accepted"] == 4888
    assert info["boxes_by_class"] == {"Platelets": 361, "RBC": 4155, "WBC": 372}
    assert info["images_by_split"] == {"pool": 0, "train": 205, "val": 87, "test": 72}
    # Imported annotations count as reviewed human labels.
    assert info["images_by_review_state"]["complete"] == 364


def test_export_refuses_to_overwrite_without_force(tmp_path: Path, sample_dir: Path, capsys):
    project = tmp_path / "proj"
    run(capsys, "init", str(project))
    run(capsys, "import", str(project), str(sample_dir), "--format", "voc")
    out_dir = tmp_path / "out"
    code, out, _ = run(capsys, "export", str(project), str(out_dir), "--format", "coco")
    assert code == 0 and "16 images and 251 boxes" in out
    data = json.loads((out_dir / "annotations.json").read_text())
    assert len(data["annotations"]) == 251
    before = (out_dir / "annotations.json").stat().st_mtime_ns
    code, _, err = run(capsys, "export", str(project), str(out_dir), "--format", "coco")
    assert code == 1
    assert "already exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert (out_dir / "annotations.json").stat().st_mtime_ns == before
    code, _, _ = run(capsys, "export", str(project), str(out_dir), "--format", "coco", "--force")
    assert code == 0


def test_export_import_round_trip_through_the_cli(tmp_path: Path, sample_dir: Path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    run(capsys, "init", str(a))
    run(capsys, "import", str(a), str(sample_dir), "--format", "voc")
    for fmt in ("voc", "yolo", "coco"):
        out = tmp_path / f"export-{fmt}"
        assert run(capsys, "export", str(a), str(out), "--format", fmt)[0] == 0
        target = b / fmt
        run(capsys, "init", str(target))
        src = out / "annotations.json" if fmt == "coco" else out
        code, _, err = run(capsys, "import", str(target), str(src), "--format", fmt)
        assert code == 0, err
        ia = json.loads(_info(capsys, a))
        ib = json.loads(_info(capsys, target))
        assert ib["boxes_by_class"] == ia["boxes_by_class"]
        assert ib["images"] == ia["images"]


def _info(capsys, project: Path) -> str:
    main(["info", str(project), "--json"])
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["info", "{tmp}/nowhere"], "not a napari-al project, no such folder"),
        (["info", "{tmp}"], "not a napari-al project, but it holds one: give"),
        (["info", "{proj}/napari_al.sqlite"], "give the project's folder"),
        (["predict", "{proj}/napari_al.sqlite"], "give the project's folder"),
        (["import", "{proj}", "{tmp}/missing", "--format", "voc"], "missing"),
        (["init", "{proj}"], "already a napari-al project"),
    ],
)
def test_errors_are_one_line_and_nonzero(tmp_path: Path, capsys, argv, needle) -> None:
    proj = tmp_path / "proj"
    main(["init", str(proj)])
    capsys.readouterr()
    argv = [a.format(tmp=tmp_path, proj=proj) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-al: error:") and needle in lines[0]


def test_malformed_import_changes_nothing(tmp_path: Path, sample_dir: Path, capsys) -> None:
    proj = tmp_path / "proj"
    run(capsys, "init", str(proj))
    run(capsys, "import", str(proj), str(sample_dir), "--format", "voc")
    before = _info(capsys, proj)
    bad = tmp_path / "bad"
    shutil.copytree(sample_dir, bad)
    xml = sorted((bad / "Annotations").glob("*.xml"))[3]
    xml.write_text(xml.read_text().replace("<xmin>", "<xmin>abc", 1))
    code, _, err = run(capsys, "import", str(proj), str(bad), "--format", "voc")
    assert code == 1 and xml.name in err and "xmin" in err
    assert _info(capsys, proj) == before
    # --skip-bad imports the rest and reports the bad file.
    other = tmp_path / "proj2"
    run(capsys, "init", str(other))
    code, out, err = run(capsys, "import", str(other), str(bad), "--format", "voc", "--skip-bad")
    assert code == 0 and "16 images and 250 boxes" in out and xml.name in err


def test_open_on_a_plain_image_folder_makes_a_pool(tmp_path: Path, sample_dir: Path) -> None:
    from napari_al.core.project import open_or_init

    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted((sample_dir / "JPEGImages").glob("*.jpg"))[:3]:
        shutil.copy(p, folder / p.name)
    with open_or_init(folder) as store:
        info = store.info()
    assert info["images"] == 3
    assert info["images_by_split"]["pool"] == 3
    assert info["images_by_review_state"]["unseen"] == 3


def test_manifest_is_valid() -> None:
    npe2 = Path(sys.executable).with_name("npe2")
    result = subprocess.run(
        [str(npe2), "validate", "napari-al"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_sample_data_contribution(sample_dir: Path) -> None:
    from napari_al.gui.sample_layers import bccd_sample_layers

    (image, _image_meta, kind), (shapes, meta, shapes_kind) = bccd_sample_layers()
    assert kind == "image" and image.shape == (480, 640, 3)
    assert shapes_kind == "shapes" and len(shapes) > 0
    assert len(meta["features"]["label"]) == len(shapes)


@pytest.mark.gui
def test_demo_opens_napari_with_the_sample(tmp_path: Path) -> None:
    """The README's demo command, headless: napari opens docked on the sample in the middle of
    the loop (a few labelled images, an unlabelled pool), the first model trains in the
    background through the widget's retrain job (here tiny), the query list fills, and the
    screenshot is taken then."""
    if not os.environ.get("DISPLAY"):
        pytest.fail("GUI tests run under xvfb-run (make test); DISPLAY is not set")
    shot = tmp_path / "demo.png"
    exe = Path(sys.executable).with_name("napari-al")
    tiny = ["--steps", "2", "--min-size", "128", "--device", "cpu"]
    result = subprocess.run(
        [str(exe), "demo", "--project", str(tmp_path / "demo"), "--screenshot", str(shot), *tiny],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.stat().st_size > 50_000
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size[0] >= 1000
    from napari_al.core.store import ProjectStore

    with ProjectStore.open(tmp_path / "demo") as store:
        info = store.info()
        assert info["images"] == 16
        assert info["images_by_split"]["pool"] == 8
        assert info["images_by_review_state"]["unseen"] >= 7  # the pool is still to annotate
        version = store.latest_model_version()
        assert version is not None and version.metrics["steps"] == 2
        queries = store.latest_queries()
        assert queries is not None and queries.items
        assert {q.image_id for q in queries.items} <= {r.id for r in store.images(split="pool")}


def test_demo_without_display_explains_xvfb(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    exe = Path(sys.executable).with_name("napari-al")
    result = subprocess.run(
        [str(exe), "demo", "--project", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "xvfb-run" in result.stderr and "Traceback" not in result.stderr


def test_info_images_lists_each_image_with_the_id_and_path_other_commands_take(
    tmp_path: Path, sample_dir: Path, capsys
) -> None:
    """A newcomer could not find an image's id or stored path for `mark-region-complete`."""
    project = tmp_path / "proj"
    run(capsys, "init", str(project))
    run(capsys, "import", str(project), str(sample_dir), "--format", "voc")
    code, out, _ = run(capsys, "info", str(project), "--images", "--json")
    listed = json.loads(out)["image_list"]
    assert code == 0 and len(listed) == json.loads(out)["images"]
    first = listed[0]
    assert first["human_boxes"] > 0 and first["predicted_boxes"] == 0
    assert (first["width"], first["height"]) == (640, 480)
    code, out, _ = run(capsys, "info", str(project), "--images")
    lines = out.splitlines()
    head = next(i for i, x in enumerate(lines) if x.split()[:2] == ["id", "split"])
    table = lines[head:]
    assert len(table) == 1 + len(listed)
    assert len({x.index(listed[k]["path"]) for k, x in enumerate(table[1:])}) == 1  # aligned
    line = next(x for x in table if x.endswith(first["path"]))
    assert line.split()[0] == str(first["id"]) and "640x480" in line
    region = ["mark-region-complete", str(project), str(first["id"]), "--xyxy", "0", "0", "9", "9"]
    assert run(capsys, *region)[0] == 0
    from PIL import Image

    Image.new("RGB", (64, 48), (9, 90, 9)).save(tmp_path / "plain.png")
    assert (
        run(capsys, "import", str(project), str(tmp_path / "plain.png"), "--format", "images")[0]
        == 0
    )
    again = json.loads(run(capsys, "info", str(project), "--images", "--json")[1])
    plain = next(im for im in again["image_list"] if im["path"].endswith("plain.png"))
    assert plain["reviewed_regions"] == 0
    region = ["mark-region-complete", str(project), str(plain["id"]), "--xyxy", "0", "0", "9", "9"]
    assert run(capsys, *region)[0] == 0
    again = json.loads(run(capsys, "info", str(project), "--images", "--json")[1])
    assert [im["reviewed_regions"] for im in again["image_list"] if im["id"] == plain["id"]] == [1]
    # two --xyxy: refused, nothing marked (argparse kept only the last one, silently)
    twice = [*region[:3], "--xyxy", "0", "0", "5", "5", "--xyxy", "10", "10", "20", "20"]
    code, _, err = run(capsys, *twice)
    assert code != 0 and "--xyxy given 2 times" in err and "nothing was marked" in err
    again = json.loads(run(capsys, "info", str(project), "--images", "--json")[1])
    assert [im["reviewed_regions"] for im in again["image_list"] if im["id"] == plain["id"]] == [1]
    assert "image_list" not in json.loads(run(capsys, "info", str(project), "--json")[1])
