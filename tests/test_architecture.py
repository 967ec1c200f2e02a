"""The layering we hold to: ``napari_al.core`` is Qt-free and napari-free."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import napari_al.core

FORBIDDEN = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "vispy", "magicgui")


def core_modules() -> list[str]:
    names = ["napari_al.core"]
    for info in pkgutil.walk_packages(napari_al.core.__path__, "napari_al.core."):
        names.append(info.name)
    return names


def test_core_modules_exist() -> None:
    names = core_modules()
    for expected in ("store", "formats", "boxes", "images", "data", "project", "engine"):
        assert f"napari_al.core.{expected}" in names


def test_importing_core_pulls_in_no_qt_or_napari() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {core_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    offenders = [
        m for m in loaded if m.split(".")[0] in FORBIDDEN and not m.startswith("napari_al")
    ]
    assert offenders == [], f"core imports GUI modules: {offenders[:10]}"
