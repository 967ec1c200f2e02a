"""Lines of CLI output a person copies from or a log keeps.

Found by newcomers: a progress bar that erases itself (``leave=False``) leaves its text and a
run of spaces in a pipe or log file, so the next line (an error, the summary) followed a bar's
remnant on the same line; and a file name starting with a space (``' b.png'``) was shown bare,
so the space read as the line's own and a copied path missed it. Every input is generated here.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from napari_al.cli import common
from napari_al.core.names import edge_spaces, shown


def _images(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("RGB", (64, 48), (40 * i, 100, 50)).save(folder / name, format="PNG")
    return folder


def test_a_piped_import_writes_no_bar_and_whole_lines(tmp_path: Path) -> None:
    folder = _images(tmp_path / "shots", [f"{i}.png" for i in range(3)])
    code = "from napari_al.cli import main; raise SystemExit(main())"
    run = subprocess.run(
        [sys.executable, "-c", code, "init", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "\r" not in run.stderr and "img/s" not in run.stderr, repr(run.stderr)
    assert "imported 3 images" in run.stderr + run.stdout
    assert "\r" not in run.stdout, repr(run.stdout)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = _Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    assert common.bars_shown()
    update, close = common.progress_bar("importing")
    update(0, 2)
    update(2, 2)
    close()
    assert "importing" in stream.getvalue()


def test_a_pipe_or_a_closed_stream_gets_none(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    assert not common.bars_shown()
    update, close = common.progress_bar("importing")
    update(1, 2)
    close()
    assert stream.getvalue() == ""
    stream.close()
    assert not common.bars_shown()


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("/data/ b.png", True),
        ("/data/b.png ", True),
        ("/scans /b.png", True),
        ("C:\\scans\\ b.png", True),
        ("/data/b c.png", False),
        ("/data/b.png", False),
    ],
)
def test_a_name_with_a_space_at_an_edge_is_quoted(name: str, quoted: bool) -> None:
    assert edge_spaces(name) is quoted
    assert shown(name) == (repr(name) if quoted else name)


def test_info_quotes_such_a_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from napari_al.cli import main

    folder = _images(tmp_path / "shots", [" b.png", "c.png"])
    assert main(["init", str(folder)]) == 0
    capsys.readouterr()
    assert main(["info", str(folder), "--images"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip("\n").splitlines()[-2].endswith("  ' b.png'"), out  # relative in it
    assert out.rstrip("\n").splitlines()[-1].endswith("  c.png"), out


def test_evaluate_says_a_class_without_boxes_has_no_ap() -> None:
    """``evaluate`` printed ``AP50 nan`` for a class the split holds no box of (found by a
    newcomer); JSON keeps null (``json_text``)."""
    from napari_al.cli.evaluate import class_line

    line = class_line("WBC", {"ap50": float("nan"), "ap": float("nan")}, "val")
    assert "nan" not in line and "no WBC box in val" in line
    assert class_line("RBC", {"ap50": 0.5, "ap": 0.25}, "val").split() == [
        "RBC", "AP50", "0.5000", "AP", "0.2500",
    ]  # fmt: skip
