"""A user's mistake is one line naming the fix, never a traceback (issue 16 item 15).

Every input is generated here; none of these tests trains a model.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from napari_al.cli import main
from napari_al.core.store import ProjectStore


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    """The error line of stderr, checked to be the only one and no traceback (the detector
    line and one-line warnings aside)."""
    assert "Traceback" not in err
    lines = [
        ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("detector:", "warning:"))
    ]
    assert len(lines) == 1, err
    assert "error: " in lines[0]
    return lines[0]


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """A project with one class and two complete images in train (no model)."""
    from napari_al.core.data import BoxRecord, Dataset, ImageRecord

    project = tmp_path / "proj"
    recs = []
    for i in range(2):
        path = project / f"im{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (i * 80, 100, 50)).save(path)
        recs.append(ImageRecord(path, 64, 48, [BoxRecord(2, 2, 20, 20, "cell")], "train", True))
    with ProjectStore.create(project) as store:
        store.import_dataset(Dataset(["cell"], recs))
    return project


@pytest.fixture
def unlabelled(tmp_path: Path) -> Path:
    """A project made from plain images: no class."""
    folder = tmp_path / "plain"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (64, 48), (i * 80, 100, 50)).save(folder / f"im{i}.png")
    assert main(["init", str(folder)]) == 0
    return folder


def test_misspelled_strategy_suggests_the_nearest_name(labelled: Path, capsys) -> None:
    code, _out, err = run(capsys, "rank", str(labelled), "--strategy", "entrpy")
    line = one_line_error(err)
    assert code == 1 and "unknown scorer 'entrpy' (did you mean 'entropy'?)" in line
    code, _out, err = run(capsys, "rank", str(labelled), "--strategy", "entropy+missd")
    assert code == 1 and "did you mean 'missed'?" in one_line_error(err)
    code, _out, err = run(capsys, "rank", str(labelled), "--strategy", "entropy++margin")
    assert code == 1 and "malformed strategy" in one_line_error(err)


def test_unknown_arch_lists_the_architectures_without_torch(labelled: Path) -> None:
    """``train --arch foo``: one line listing the architectures, exit 2, torch never loaded."""
    code = (
        "import sys\n"
        "from napari_al.cli import main\n"
        "try:\n"
        f"    main(['train', {str(labelled)!r}, '--arch', 'fasterrcnn_mobilenet'])\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "exit 2 False", proc.stdout + proc.stderr
    line = one_line_error(proc.stderr)
    assert "invalid choice: 'fasterrcnn_mobilenet'" in line
    assert "fasterrcnn_mobilenet_v2_fpn" in line and "ssdlite320_mobilenet_v3_large" in line
    assert "did you mean" in line


def test_engine_builds_exactly_the_architectures_the_cli_offers() -> None:
    from napari_al.core import engine
    from napari_al.core.data import ARCHS

    assert engine.ARCHS == ARCHS and ARCHS[0] == engine.DEFAULT_ARCH


def test_coco_import_of_a_folder_names_its_json_files(tmp_path: Path, labelled: Path, capsys):
    folder = tmp_path / "coco"
    (folder / "annotations").mkdir(parents=True)
    (folder / "annotations" / "instances_val.json").write_text(json.dumps({"images": []}))
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    code, _out, err = run(capsys, "import", str(labelled), str(folder), "--format", "coco")
    line = one_line_error(err)
    assert code == 1 and "is a folder; COCO is one JSON file" in line
    assert "annotations/instances_val.json" in line
    (folder / "annotations" / "instances_val.json").unlink()
    code, _out, err = run(capsys, "import", str(labelled), str(folder), "--format", "coco")
    line = one_line_error(err)
    assert "1 image and no JSON file" in line and "--format images" in line


def test_round_commands_on_a_project_without_classes_say_how_to_add_one(
    unlabelled: Path, capsys
) -> None:
    for command in ("predict", "train", "evaluate", "rank"):
        code, _out, err = run(capsys, command, str(unlabelled))
        line = one_line_error(err)
        assert code == 1 and "no classes yet" in line, command
        assert f"napari-al add-class {unlabelled} NAME" in line
    code, out, _err = run(capsys, "add-class", str(unlabelled), "cell", "rbc", "cell")
    assert code == 0 and "the project's classes: cell, rbc" in out
    with ProjectStore.open(unlabelled) as store:
        assert [c.name for c in store.classes()] == ["cell", "rbc"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["rank", "{p}", "--budget", "0"], "--budget must be at least 1; got 0"),
        (["train", "{p}", "--batch-size", "0"], "--batch-size must be at least 1; got 0"),
        (["train", "{p}", "--steps", "-5"], "--steps must be at least 1; got -5"),
        (["train", "{p}", "--epochs", "0"], "--epochs must be more than 0; got 0.0"),
        (["train", "{p}", "--lambda-d", "2"], "--lambda-d must be at most 1.0; got 2.0"),
        (["predict", "{p}", "--device", "gpu0"], "--device 'gpu0' is not valid; expected cpu"),
        (["predict", "{p}", "--min-size", "0"], "--min-size must be at least 1; got 0"),
        (
            ["predict", "{p}", "--min-size", "600", "--max-size", "500"],
            "--max-size 500 must be at least the min size, 600 px",
        ),
        (
            ["rank", "{p}", "--unit", "box", "--diversity", "coreset"],
            "--diversity 'coreset' spreads",
        ),
        (
            ["rank", "{p}", "--unit", "question", "--diversity", "coreset"],
            "--diversity 'coreset' spreads image queries only; leave it out for question",
        ),
        (["rank", "{p}", "--unit", "boxes"], "invalid choice: 'boxes'"),
        # question flags with another unit changed nothing, silently
        (
            ["rank", "{p}", "--unit", "box", "--supervision", "click"],
            "--supervision only applies to --unit question (this is --unit box)",
        ),
        (
            ["rank", "{p}", "--scatter-images", "--saving-weight", "nan"],
            "--scatter-images, --saving-weight only apply to --unit question (this is --unit "
            "image); drop them",
        ),
        (
            ["rank", "{p}", "--supervision", "box"],
            "--supervision only applies to --unit question (this is --unit image); drop it",
        ),
        # query flags the unit does not read changed nothing, silently
        (
            ["rank", "{p}", "--region-block", "64"],
            "--region-block only applies to --unit region (this is --unit image); drop it or "
            "use --unit region",
        ),
        (
            ["rank", "{p}", "--unit", "box", "--region-block", "64"],
            "--region-block only applies to --unit region (this is --unit box)",
        ),
        (
            ["rank", "{p}", "--unit", "question", "--region-block", "64"],
            "--region-block only applies to --unit region (this is --unit question)",
        ),
        (
            ["rank", "{p}", "--unit", "box", "--aggregation", "max"],
            "--aggregation only applies to --unit image or question (this is --unit box); drop "
            "it or use --unit image or question",
        ),
        (
            ["rank", "{p}", "--unit", "region", "--aggregation", "max"],
            "--aggregation only applies to --unit image or question (this is --unit region)",
        ),
        (
            ["rank", "{p}", "--candidate-factor", "2"],
            "--candidate-factor only applies with --diversity (this ranks by score alone); drop "
            "it or add --diversity coreset or kmeans++",
        ),
        (
            ["rank", "{p}", "--unit", "question", "--candidate-factor", "2"],
            "--candidate-factor only applies to --unit image with --diversity (this is --unit "
            "question)",
        ),
        (["trian", "{p}"], "did you mean 'train'?"),
        (["train", "{p}", "--weights", "{p}/none.pth"], "none.pth"),
        # NaN passes every range check: --lr nan trained and saved a model of NaN weights.
        (["train", "{p}", "--lr", "nan"], "--lr must be a finite number; got nan"),
        (["train", "{p}", "--lambda-d", "nan"], "--lambda-d must be a finite number; got nan"),
        (["train", "{p}", "--lr", "inf"], "--lr must be a finite number; got inf"),
        (["rank", "{p}", "--candidate-factor", "nan"], "--candidate-factor must be a finite"),
    ],
)
def test_bad_values_are_one_line_errors(labelled: Path, capsys, argv, needle) -> None:
    """Settings out of range or unknown are refused before any model is built."""
    code, _out, err = run(capsys, *(a.format(p=labelled) for a in argv))
    assert code in (1, 2) and needle in one_line_error(err)


@pytest.mark.parametrize(
    "argv",
    [
        ["--aggregation", "max"],  # image queries rank by the aggregated box scores
        ["--unit", "question", "--aggregation", "max"],  # draw questions' gain: the image score
        ["--unit", "region", "--region-block", "64"],
        ["--diversity", "coreset", "--candidate-factor", "2"],
        ["--unit", "box", "--seed", "3", "--budget", "4", "--strategy", "entropy"],
    ],
)
def test_query_flags_the_unit_reads_are_accepted(argv: list[str]) -> None:
    """The refusal above is for flags a unit ignores only: none of these is refused."""
    from napari_al.cli import build_parser
    from napari_al.cli.questions import refuse_unit_flags

    refuse_unit_flags(build_parser().parse_args(["rank", "proj", *argv]))


def test_a_damaged_checkpoint_or_weights_file_is_one_line(labelled: Path, capsys) -> None:
    from napari_al.core.workflow import checkpoint_path

    bad = labelled / "bad.pth"
    bad.write_bytes(b"not a checkpoint at all")
    code, _out, err = run(capsys, "train", str(labelled), "--weights", str(bad))
    assert code == 1 and f"{bad}: not a weights file" in one_line_error(err)
    with ProjectStore.open(labelled) as store:
        path = checkpoint_path(store, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"PK\x03\x04 truncated")
        store.add_model_version(path, "fasterrcnn_mobilenet_v2_fpn")
    code, _out, err = run(capsys, "predict", str(labelled))
    line = one_line_error(err)
    assert code == 1 and "model version 1 cannot be read from" in line and "restore" in line


#: A file given as --weights that is none, and what the line says it is.
NOT_WEIGHTS = {
    "x.txt": (b"hello weights\n", "not a PyTorch file (text: 'hello weights')"),
    "empty.pt": (b"", "empty (0 bytes)"),
    "image.pth": (b"\x89PNG\r\n\x1a\n" + bytes(40), "not a PyTorch file"),
    "cut.pt": (b"PK\x03\x04" + bytes(20), "cut short or damaged"),
    "object.pkl": (pickle.dumps(Path("x")), "a Python pickle, not a PyTorch file"),
    "model.pt": (None, "Python objects besides tensors (torch.nn.modules.linear.Linear"),
}


@pytest.mark.parametrize("name", sorted(NOT_WEIGHTS))
def test_a_file_that_is_no_weights_file_says_what_one_is(labelled: Path, capsys, name: str) -> None:
    """Found by a newcomer: ``--weights x.txt`` (a text file) said ``cannot be used as
    fasterrcnn_mobilenet_v2_fpn weights (105)``, the bare key of a pickle error."""
    content, what = NOT_WEIGHTS[name]
    bad = labelled / name
    if content is None:  # a whole model, pickled by torch.save
        import torch

        torch.save(torch.nn.Linear(2, 2), bad)
    else:
        bad.write_bytes(content)
    code, _out, err = run(capsys, "train", str(labelled), "--weights", str(bad), "--steps", "1")
    assert "warning:" not in err, err  # torch's pickle warnings are not the user's concern
    line = one_line_error(err)
    assert code == 1 and f"{bad}: not a weights file: " in line and what in line, line
    assert "state dict saved with torch.save" in line and "models/" in line, line
    assert "coco-mnv2" in line and not re.search(r"\(\d+\)", line), line


def test_weights_of_another_architecture_are_refused_not_half_loaded(
    labelled: Path, capsys
) -> None:
    """Found by a new user: an SSDlite state dict given to the default Faster R-CNN loaded 0
    of its 290 tensors, said "weights from FILE" and trained from random weights."""
    import torch
    import torchvision.models.detection as tvdet

    ssd = tvdet.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)
    plain = labelled / "ssd.pth"
    torch.save(ssd.state_dict(), plain)
    code, _out, err = run(capsys, "train", str(labelled), "--weights", str(plain), "--steps", "1")
    line = one_line_error(err)
    assert code == 1 and f"weights from {plain}" in line
    assert "only 0 of the" in line and "the --arch it was saved from" in line
    # a napari-al checkpoint records its architecture: the fix names it
    saved = labelled / "ssd-checkpoint.pt"
    meta = {"arch": "ssdlite320_mobilenet_v3_large", "config": {}}
    torch.save(
        {"format": "napari-al-checkpoint", "metadata": meta, "state_dict": ssd.state_dict()}, saved
    )
    code, _out, err = run(capsys, "train", str(labelled), "--weights", str(saved), "--steps", "1")
    line = one_line_error(err)
    assert code == 1 and "saved from ssdlite320_mobilenet_v3_large" in line
    assert "pass --arch ssdlite320_mobilenet_v3_large" in line
    with ProjectStore.open(labelled) as store:
        assert store.latest_model_version() is None  # nothing trained, nothing recorded


def test_evaluate_without_reviewed_images_is_one_line(labelled: Path, capsys) -> None:
    code, _out, err = run(
        capsys, "evaluate", str(labelled), "--split", "test", "--min-size", "64", "--device", "cpu"
    )
    assert code == 1 and "no reviewed images in split 'test'" in one_line_error(err)


def test_file_system_errors_are_one_line(tmp_path: Path, labelled: Path, capsys) -> None:
    """OSError (a path through a file, no permission, a full disk) is the user's to fix."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _o, err = run(capsys, "export", str(labelled), str(blocker / "x"), "--format", "voc")
    assert code == 1 and "a_file" in one_line_error(err)
    code, _o, err = run(capsys, "init", str(blocker / "proj"))
    assert code == 1 and "a_file" in one_line_error(err)
    code, _o, err = run(capsys, "init", str(blocker))
    assert code == 1 and f"{blocker}: is a file, not a folder" in one_line_error(err)


@pytest.mark.parametrize("fmt", ["voc", "yolo", "coco"])
def test_export_onto_a_file_or_to_no_path_is_refused_in_one_line(
    tmp_path: Path, labelled: Path, capsys, monkeypatch, fmt: str
) -> None:
    """OUT naming a file (even with --force), or empty (it used to write into the working
    folder), is refused before anything is written; the message names the file and the fix."""
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    for out in (blocker, blocker / "deeper"):
        target = out / "x.json" if fmt == "coco" else out
        code, _o, err = run(
            capsys, "export", str(labelled), str(target), "--format", fmt, "--force"
        )
        line = one_line_error(err)
        assert code == 1 and f"{blocker}: is a file, not a folder" in line, line
        assert "choose another output path" in line
    assert blocker.read_text() == "keep me"
    monkeypatch.chdir(tmp_path)
    code, _o, err = run(capsys, "export", str(labelled), "", "--format", fmt)
    assert code == 1 and "OUT is empty" in one_line_error(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a_file", labelled.name])


def test_a_strict_import_refused_for_one_bad_file_names_skip_bad(
    labelled: Path, tmp_path: Path, capsys
) -> None:
    """A 0-byte image among good ones refused the whole import with no hint of the option
    that imports the rest (``init`` on the same folder skips it)."""
    folder = tmp_path / "more"
    folder.mkdir()
    Image.new("RGB", (32, 24), (200, 10, 10)).save(folder / "good.png")
    (folder / "zero.jpg").write_bytes(b"")
    code, _out, err = run(capsys, "import", str(labelled), str(folder), "--format", "images")
    line = one_line_error(err)
    assert code == 1 and "zero.jpg: empty file" in line and "--skip-bad" in line
    code, out, err = run(
        capsys, "import", str(labelled), str(folder), "--format", "images", "--skip-bad"
    )
    assert code == 0 and "imported 1 image" in out and "zero.jpg" in err
    # a file --skip-bad cannot help with gets no such hint
    (folder / "x.json").write_text("{")
    code, _out, err = run(
        capsys, "import", str(labelled), str(folder / "x.json"), "--format", "coco"
    )
    assert code == 1 and "--skip-bad" not in one_line_error(err)


TINY = ["--min-size", "64", "--max-size", "96", "--device", "cpu"]


def _save_model_version(project: Path, anchors: str | None = None) -> None:
    """Model version 1 of ``project``: a new tiny detector (``anchors``), saved untrained."""
    from napari_al.core import workflow
    from napari_al.core.engine import save_checkpoint

    settings = workflow.ModelSettings(min_size=64, max_size=96, device="cpu", anchors=anchors)
    with ProjectStore.open(project) as store:
        detector = workflow.load_model(store, settings)
        path = workflow.checkpoint_path(store, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(detector, path)
        assert store.add_model_version(path, detector.arch) == 1


def test_train_anchors_unlike_the_continued_models_are_refused(labelled: Path, capsys) -> None:
    """``train --anchors`` continued the project's model with its own anchors, silently; now
    one line saying --weights starts a new detector with them. Equal anchors are accepted."""
    from napari_al.core import workflow

    _save_model_version(labelled)  # the architecture's anchors, 32..512
    argv = ["train", str(labelled), "--anchors", "16,32,64,128,256", "--steps", "1", *TINY]
    code, _out, err = run(capsys, *argv)
    line = one_line_error(err)
    assert code == 1 and "model version 1" in line and "32,64,128,256,512" in line
    assert "--weights" in line
    with ProjectStore.open(labelled) as store:
        assert len(store.model_versions()) == 1  # nothing trained
        same = workflow.ModelSettings(anchors="32,64,128,256,512", device="cpu")
        assert workflow.load_model(store, same).model_version == 1
        fresh = workflow.ModelSettings(
            anchors="16,32,64,128,256", weights="coco-mnv2", min_size=64, device="cpu"
        )
        detector = workflow.load_model(store, fresh)
    assert detector.model_version == 0 and detector.config.anchor_sizes == [16, 32, 64, 128, 256]


def test_anchors_on_an_architecture_without_an_rpn_are_refused(labelled: Path) -> None:
    from napari_al.core import workflow

    settings = workflow.ModelSettings(
        arch="ssdlite320_mobilenet_v3_large", anchors="16,32,64,128,256", device="cpu"
    )
    with ProjectStore.open(labelled) as store, pytest.raises(workflow.WorkflowError) as info:
        workflow.load_model(store, settings)
    assert "has no RPN anchors" in str(info.value) and "Faster R-CNN" in str(info.value)


@pytest.mark.parametrize(
    ("anchors", "needle"),
    [
        ("512,256,128,64,32", "strictly increasing"),  # reversed: built and trained before
        ("16,16,32,64,128", "strictly increasing"),
        ("1,2,3,4,5,6,7,8,9", "at most 8"),
        ("16,32,64,128,100000", "at most 4096 px"),
        ("0,16,32,64,128", "sizes above 0"),
        ("-16,32,64,128,256", "sizes above 0"),
    ],
)
@pytest.mark.parametrize("command", ["train", "simulate"])
def test_absurd_anchors_are_one_line_errors(
    labelled: Path, tmp_path: Path, capsys, monkeypatch, command: str, anchors: str, needle: str
) -> None:
    """Refused before any detector is built or any data is read (train and simulate)."""
    from napari_al.simulation import parallel

    def no_data(config):
        raise AssertionError("the dataset was loaded before the settings were checked")

    monkeypatch.setattr(parallel, "load_data", no_data)
    if command == "train":
        argv = ["train", str(labelled), f"--anchors={anchors}", "--steps", "1", *TINY]
    else:
        argv = ["simulate", "--preset", "ci", "--out", str(tmp_path / "sim"), "--no-progress"]
        argv.append(f"--anchors={anchors}")
    code, _out, err = run(capsys, *argv)
    assert code == 1 and needle in one_line_error(err)
    with ProjectStore.open(labelled) as store:
        assert not store.model_versions()


@pytest.mark.parametrize(
    ("setup", "extra", "needle"),
    [
        ("no labels", [], "nothing to train on yet: no reviewed image has a box"),
        ("no classes", [], "the project has no classes yet"),
        ("no labels", ["--steps", "-5"], "--steps must be at least 1; got -5"),
        ("no labels", ["--anchors", "64,32"], "strictly increasing"),
    ],
)
def test_train_nproc_checks_what_one_process_checks_before_torchrun(
    unlabelled: Path, capsys, monkeypatch, setup: str, extra: list[str], needle: str
) -> None:
    """``train --nproc 2`` on a project with nothing to train (or another simple precondition
    failing) printed a wall of torchrun tracebacks, one per rank; now the one line of
    ``train`` without --nproc, before torchrun starts, and the lock is released."""
    import types

    from napari_al.cli import training
    from napari_al.core.store import project_lock

    def no_torchrun(*args, **kwargs):
        raise AssertionError("torchrun was started for a run that cannot train")

    monkeypatch.setattr(training, "subprocess", types.SimpleNamespace(Popen=no_torchrun))
    if setup == "no labels":
        assert main(["add-class", str(unlabelled), "cell"]) == 0
    capsys.readouterr()
    argv = ["train", str(unlabelled), "--steps", "1", *TINY, *extra]
    code, _out, err = run(capsys, *argv, "--nproc", "2")
    line = one_line_error(err)
    assert code == 1 and needle in line
    with project_lock(unlabelled, "checking"):  # released
        pass
    if not extra:  # the same line as one process gives (it builds a detector, trains nothing)
        code, _out, err = run(capsys, *argv)
        assert code == 1 and "Traceback" not in err and err.rstrip().endswith(line)


def test_mark_region_complete_clips_a_rectangle_reaching_past_the_image(
    unlabelled: Path, capsys
) -> None:
    """A rectangle partly outside was refused ("lies outside the image"); now it is clipped
    and the command says so. One entirely outside is refused in one line naming the image."""
    mark = ["mark-region-complete", str(unlabelled), "im0.png", "--xyxy"]
    code, out, err = run(capsys, *mark, "-10", "-5", "30", "100")
    assert code == 0, err
    assert "marked [0, 0, 30, 48] of im0.png complete" in out
    assert (
        "note: [-10, -5, 30, 100] reaches past the 64x48 px image; clipped to [0, 0, 30, 48]" in err
    )
    for outside in (["70", "0", "90", "10"], ["0", "48", "10", "60"]):  # past the right, below
        code, _out, err = run(capsys, *mark, *outside)
        line = one_line_error(err)
        assert code == 1 and "lies entirely outside" in line and "im0.png (64x48 px)" in line
    code, _out, err = run(capsys, *mark, "20", "5", "10", "9")  # x1 > x2: the store's message
    assert code == 1 and "is empty" in one_line_error(err)
    with ProjectStore.open(unlabelled) as store:
        assert [r.xyxy for r in store.reviewed_regions()] == [(0.0, 0.0, 30.0, 48.0)]


@pytest.mark.parametrize(
    "argv", [["info", "{p}"], ["info", "{p}", "--json"], ["add-class", "{p}", "cell"]]
)
def test_a_reader_that_closes_stdout_early_ends_the_command_quietly(
    unlabelled: Path, argv: list[str]
) -> None:
    """``napari-al info DIR | head -1`` printed a BrokenPipeError (an error line, or Python's
    "Exception ignored" at exit); now nothing on stderr and exit status 141 (as SIGPIPE)."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: every write fails
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "napari_al.cli", *(a.format(p=unlabelled) for a in argv)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.stderr == "" and proc.returncode == 141, (proc.returncode, proc.stderr)


def test_a_flag_value_starting_with_a_dash_is_told_to_go_after_equals(
    labelled: Path, capsys
) -> None:
    """argparse reads ``--anchors -16,32`` as two flags ("expected one argument"); the line now
    says how to pass such a value."""
    code, _out, err = run(capsys, "train", str(labelled), "--anchors", "-16,32,64", *TINY)
    line = one_line_error(err)
    assert code == 2 and "expected one argument" in line and "--anchors=-..." in line


def test_options_after_a_double_dash_are_told_to_go_before_it(tmp_path: Path, capsys) -> None:
    """``--`` ends the options (a name starting with '-' follows it): ``--xyxy`` written after
    it is read as a name and argparse says only that ``--xyxy`` is required (a newcomer's
    ``mark-region-complete P -- -leading.jpg --xyxy ...``); the line says where options go."""
    args = ["mark-region-complete", str(tmp_path), "--", "-a.jpg", "--xyxy", "0", "0", "9", "9"]
    code, _out, err = run(capsys, *args)
    line = one_line_error(err)
    assert code == 2 and "--xyxy" in line and "put options before it" in line
    code, _out, err = run(capsys, "mark-region-complete", str(tmp_path), "-a.jpg")
    assert code == 2 and "put options before it" not in one_line_error(err)


@pytest.mark.parametrize(
    ("strategy", "needs"),
    [
        ("mutual_information", "MC dropout over a box head"),
        ("vote_entropy", "MC dropout over a box head"),
        ("localization_tightness", "RPN proposals"),
        ("entropy+mutual_information", "MC dropout over a box head"),
    ],
)
def test_a_strategy_a_one_stage_model_cannot_compute_is_one_line(
    labelled: Path, capsys, strategy: str, needs: str
) -> None:
    """Found by a new user: these strategies on an SSDlite model ended in a MissingViewError
    traceback after the pool was scored."""
    ssd = ["--arch", "ssdlite320_mobilenet_v3_large", "--device", "cpu"]
    assert run(capsys, "train", str(labelled), *ssd, "--steps", "1")[0] == 0  # its model
    for unit in ("image", "question"):
        code, _out, err = run(capsys, "rank", str(labelled), "--strategy", strategy, "--unit", unit)
        line = one_line_error(err)
        assert code == 1 and f"needs {needs}, which only two-stage detectors" in line
        assert "ssdlite320_mobilenet_v3_large" in line and "pick another strategy" in line


def test_a_damaged_store_is_one_line_with_the_way_back(labelled: Path, capsys) -> None:
    """A project file SQLite cannot read (a disk fault, a copy cut short) names the file and
    where the way back is documented; the backup recipe of docs/store.md restores it."""
    import sqlite3

    store_file = labelled / "napari_al.sqlite"
    backup = labelled.parent / "backup.sqlite"
    sqlite3.connect(store_file).backup(sqlite3.connect(backup))  # docs/store.md's recipe
    good = store_file.read_bytes()
    # the schema page (found on opening), then every later page (found by a query)
    for start, end in ((100, 4096), (4096, len(good))):
        store_file.write_bytes(good[:start] + b"\xff" * (end - start) + good[end:])
        for command in ("info", "export"):
            argv = [command, str(labelled)]
            argv += (
                [str(labelled.parent / "out"), "--format", "coco"] if command == "export" else []
            )
            code, _out, err = run(capsys, *argv)
            line = one_line_error(err)
            assert code == 1 and "restore it from a backup" in line, line
            assert "docs/store.md" in line and "napari_al.sqlite" in line, line
    store_file.unlink()
    backup.rename(store_file)
    code, out, _err = run(capsys, "info", str(labelled))
    assert code == 0 and "images: " in out


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        (["train", "--steps", "1"], "nothing to train on yet"),
        (["evaluate", "--split", "test"], "no reviewed images in split 'test'"),
    ],
)
def test_nothing_to_train_or_evaluate_is_said_before_a_model_is_built(
    unlabelled: Path, capsys, monkeypatch, command: list[str], needle: str
) -> None:
    """A newcomer's first ``train`` / ``evaluate`` on an unlabelled project built a detector
    (seconds) and only then said there was nothing to do."""
    from napari_al.core import workflow

    def must_not_load(*_a, **_k):
        raise AssertionError("a detector was built before the cheap checks")

    monkeypatch.setattr(workflow, "load_model", must_not_load)
    assert main(["add-class", str(unlabelled), "cell"]) == 0
    capsys.readouterr()
    code, _out, err = run(capsys, command[0], str(unlabelled), *command[1:])
    assert code == 1 and needle in one_line_error(err)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["init", ""], "DIR is empty"),
        (["info", " "], "DIR is empty"),
        (["open", ""], "DIR is empty"),
        (["import", "{p}", "", "--format", "images"], "PATH is empty"),
        (["export", "{p}", "", "--format", "voc"], "OUT is empty"),
    ],
)
def test_an_empty_path_is_refused_not_taken_for_the_working_folder(
    labelled: Path, tmp_path: Path, capsys, monkeypatch, argv: list[str], needle: str
) -> None:
    """``napari-al init "$DIR"`` with DIR unset made the working folder a project."""
    work = tmp_path / "work"
    work.mkdir()
    Image.new("RGB", (32, 24)).save(work / "holiday.png")
    monkeypatch.chdir(work)
    code, _out, err = run(capsys, *(a.format(p=labelled) for a in argv))
    assert code == 1 and needle in one_line_error(err)
    assert sorted(p.name for p in work.iterdir()) == ["holiday.png"]


def test_copying_the_images_onto_themselves_is_one_line(tmp_path: Path, capsys) -> None:
    """--copy-images into the folder that holds the project's images printed Python's
    'PosixPath(...) and PosixPath(...) are the same file'."""
    folder = tmp_path / "d"
    (folder / "JPEGImages").mkdir(parents=True)
    Image.new("RGB", (32, 24), (9, 9, 9)).save(folder / "JPEGImages" / "a.png")
    assert main(["init", str(folder)]) == 0
    capsys.readouterr()
    argv = ["export", str(folder), str(folder), "--format", "voc", "--copy-images", "--all"]
    code, _out, err = run(capsys, *argv, "--force")
    line = one_line_error(err)
    # refused before any copy as an export into the project's own folder (the store is there)
    assert code == 1 and "the project's own folder" in line and "PosixPath" not in line
    assert (folder / "JPEGImages" / "a.png").stat().st_size > 0
