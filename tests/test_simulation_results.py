"""``results.csv`` of a simulation folder written with other columns (an older napari-al):
resuming into it is refused with one line, before anything is loaded or written.

Before, rows were appended under the old header, shifted by the missing columns, and the
next read failed with "invalid literal for int()". The files are generated here; nothing
trains or loads a dataset.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from napari_al.cli import main
from napari_al.simulation import CSV_COLUMNS, RESULTS_CSV, read_results
from napari_al.simulation.results import append_result

#: An older header: no calibration columns, no per-stage times.
OLD_COLUMNS = [c for c in CSV_COLUMNS if not c.startswith("ece") and c[-2:] != "_s"]


def _row(strategy: str, round_: int) -> dict[str, object]:
    """A row with every column of :data:`CSV_COLUMNS` (numbers made up)."""
    row: dict[str, object] = {c: 1.0 for c in CSV_COLUMNS}
    ints = ("seed", "round", "boxes_drawn", "verifications", "class_changes", "images")
    row.update({c: 1 for c in (*ints, "human_boxes", "train_steps")})
    row.update(strategy=strategy, unit="image", oracle="draw", seed=0, round=round_)
    return row


def _old_results(folder: Path) -> Path:
    """``folder/results.csv`` with :data:`OLD_COLUMNS` and one row of round 0."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RESULTS_CSV
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(OLD_COLUMNS)
        w.writerow([str(_row("random", 0)[c]) for c in OLD_COLUMNS])
    return path


def test_appending_to_results_of_other_columns_is_refused(tmp_path: Path) -> None:
    path = _old_results(tmp_path / "out")
    before = path.read_text()
    with pytest.raises(ValueError, match="other columns") as info:
        append_result(path, _row("random", 1))
    message = str(info.value)
    assert str(path) in message and "new --out folder" in message and "\n" not in message
    assert "lacks ece_before" in message
    assert path.read_text() == before  # nothing appended
    with pytest.raises(ValueError, match="other columns"):
        read_results(path)


def test_results_of_the_current_columns_resume(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_CSV
    assert append_result(path, _row("random", 0)) and append_result(path, _row("random", 1))
    assert not append_result(path, _row("random", 1))  # already there
    assert [r["round"] for r in read_results(path)] == [0, 1]


@pytest.mark.parametrize("report_only", [False, True])
def test_simulate_into_a_folder_of_old_results_is_one_line(
    tmp_path: Path, capsys, monkeypatch, report_only: bool
) -> None:
    """The CLI refuses at once (before loading the data), exit 1, the file untouched."""
    from napari_al.simulation import parallel

    def no_data(config):  # resuming must be refused before the dataset is read
        raise AssertionError("the dataset was loaded before the results file was checked")

    monkeypatch.setattr(parallel, "load_data", no_data)
    path = _old_results(tmp_path / "out")
    before = path.read_text()
    argv = ["simulate", "--preset", "ci", "--out", str(path.parent), "--no-progress"]
    code = main([*argv, "--report-only"] if report_only else argv)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"napari-al: error: {path} has other columns")
    assert f"move the old {RESULTS_CSV} away" in line
    assert path.read_text() == before
    assert not (path.parent / "config.json").exists()  # nothing written beside it either
