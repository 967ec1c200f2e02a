"""The install's size and the no-display hint are stated where a newcomer reads them
(issue 16 item 19): the README, and ``make demo`` without a display."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``make`` in the repository with a fresh stamp, so nothing is installed."""
    stamp = tmp_path / "stamp"
    stamp.touch()  # newer than pyproject.toml: the install step is up to date
    return subprocess.run(
        ["make", "--no-print-directory", f"STAMP={stamp}", f"VENV={tmp_path / 'venv'}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@needs_make
def test_make_demo_without_a_display_says_how_to_get_xvfb(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = make(tmp_path, "demo", env=env)
    assert proc.returncode != 0
    assert "xvfb-run -a make demo" in proc.stdout
    assert "apt-get install -y xvfb" in proc.stdout


@needs_make
def test_make_installs_cpu_torch_from_an_index_when_asked(tmp_path: Path) -> None:
    """``TORCH_INDEX`` installs the pinned torch and torchvision from that index first."""
    pins = re.findall(r'"(torch(?:vision)?==[^"]+)"', (REPO / "pyproject.toml").read_text())
    assert len(pins) == 2
    proc = make(
        tmp_path,
        "install",
        f"STAMP={tmp_path / 'missing-stamp'}",
        "PYTHON=true",
        "PY=echo",  # print the pip commands instead of running them
        "TORCH_INDEX=https://download.pytorch.org/whl/cpu",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    first = next(i for i, ln in enumerate(lines) if "--index-url" in ln)
    assert lines[first].endswith(
        f"--index-url https://download.pytorch.org/whl/cpu {' '.join(pins)}"
    )
    assert first < next(i for i, ln in enumerate(lines) if "-e .[qt,testing" in ln)


def test_readme_states_the_install_size_and_the_cpu_only_install() -> None:
    readme = (REPO / "README.md").read_text()
    assert re.search(r"install is large: about \d+\.\d GB", readme)
    assert "CUDA libraries" in readme
    assert "TORCH_INDEX=https://download.pytorch.org/whl/cpu" in readme
    assert "apt-get install -y xvfb" in readme
