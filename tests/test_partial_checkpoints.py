"""The temporary file of a checkpoint save killed before its rename is reported and removed.

Found by a newcomer: ``kill -9`` of ``napari-al train`` while it saved the checkpoint left
``models/.model-v0002.pt.<random>.tmp`` (~78 MB) for good. ``napari-al info`` now names such
files and the fix, and the next training, which holds the project lock (so no live writer can
own one), removes them before it saves. Every input is generated here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import TINY_MODEL

from napari_al.cli import main
from napari_al.core import workflow
from napari_al.core.atomic_files import partial_writes
from napari_al.core.store import ProjectStore

TINY_CLI = ["--min-size", "128", "--max-size", "160", "--device", "cpu"]
REPO = Path(__file__).resolve().parents[1]

#: Saves a checkpoint (a stand-in detector; torch.save writing a little, then hanging) and
#: says so once the temporary file is there: the parent kills it then.
CHILD = r"""
import sys, time
from types import SimpleNamespace
import torch
from napari_al.core.engine import checkpoints

def slow_save(payload, f):
    f.write(b"x" * 4096)
    f.flush()
    print("saving", flush=True)
    time.sleep(120)

torch.save = slow_save
config = SimpleNamespace(min_size=64, max_size=96, to_dict=lambda: {})
detector = SimpleNamespace(arch="fake", classes=["cell"], config=config, state_dict=lambda: {})
checkpoints.save(detector, sys.argv[1])
"""


def _killed_save(target: Path) -> Path:
    """Kill -9 a process saving a checkpoint to ``target``; returns the file it left."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(target)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "saving"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    left = partial_writes(target.parent)
    assert len(left) == 1 and not target.exists(), left
    assert left[0].name.startswith(f".{target.name}.") and left[0].stat().st_size == 4096
    return left[0]


def test_info_names_them_and_the_next_training_removes_them(trained_project: Path, capsys) -> None:
    models = trained_project / "models"
    left = _killed_save(models / "model-v0002.pt")
    other = models / "notes.tmp"  # not a save's temporary file: never touched
    other.write_text("mine")
    assert main(["info", str(trained_project)]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "temporary file" in ln]
    assert len(lines) == 1, err
    assert "models/ holds 1 temporary file of checkpoint saves that were killed" in lines[0]
    assert left.name in lines[0] and f"napari-al train {trained_project}" in lines[0]
    assert "removes them" in lines[0]
    assert main(["info", str(trained_project), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["partial_checkpoints"] == {"files": [left.name], "bytes": 4096, "held_by": None}
    with ProjectStore.open(trained_project) as store:
        detector = workflow.load_model(store, workflow.ModelSettings(**TINY_MODEL))
        outcome = workflow.train_model(store, detector, workflow.TrainSettings(steps=1))
    assert outcome.model_version == 2 and outcome.checkpoint.exists()
    assert (outcome.removed_partial_writes, outcome.removed_partial_bytes) == (1, 4096)
    assert not left.exists() and partial_writes(models) == []
    assert other.read_text() == "mine"
    assert main(["info", str(trained_project)]) == 0
    assert "temporary file" not in capsys.readouterr().err


def test_train_says_what_it_removed(trained_project: Path, capsys) -> None:
    """The next training removed a killed save's file (73 MB for a real model) without a
    word (found by a newcomer): it says so in one note."""
    _killed_save(trained_project / "models" / "model-v0002.pt")
    capsys.readouterr()
    assert main(["train", str(trained_project), *TINY_CLI, "--steps", "1"]) == 0
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if "leftover" in ln]
    assert line.startswith("note: removed 1 leftover temporary file (0 MB)"), line
    assert main(["train", str(trained_project), *TINY_CLI, "--steps", "1"]) == 0
    assert "leftover" not in capsys.readouterr().err  # none the next time


def test_a_project_without_them_says_nothing(tmp_path: Path, capsys) -> None:
    with ProjectStore.create(tmp_path / "proj"):
        pass
    assert main(["info", str(tmp_path / "proj"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["partial_checkpoints"] == {"files": [], "bytes": 0, "held_by": None}
