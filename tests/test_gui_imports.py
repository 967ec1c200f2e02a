"""Importing any ``napari_al.gui`` module changes nothing process-wide.

The triton guard (``sys.modules["triton"] = None``) and torch's thread count belong to the
entry points (the CLI's ``main``, the widget's first background job through
``gui.tasks.ensure_torch``), never to an import. Each check runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

IMPORT_ALL = r"""
import importlib, json, pkgutil, sys

import napari_al.gui as gui

names = sorted(m.name for m in pkgutil.walk_packages(gui.__path__, "napari_al.gui."))
for name in names:
    importlib.import_module(name)
torch_imported = "torch" in sys.modules
triton = sys.modules.get("triton", "absent")
threads = None
try:  # imported now if the GUI did not: catches thread settings made through the environment
    import torch

    threads = torch.get_num_threads()
except ImportError:
    pass
print(json.dumps({
    "modules": names,
    "triton_is_none": triton is None,
    "torch_imported": torch_imported,
    "threads": threads,
}))
"""

FRESH_THREADS = r"""
import json
try:
    import torch
    print(json.dumps(torch.get_num_threads()))
except ImportError:
    print(json.dumps(None))
"""


def _run(code: str) -> object:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("NAPARI_AL_ALLOW_TRITON", None)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_gui_modules_changes_nothing_process_wide() -> None:
    pytest.importorskip("qtpy")
    pytest.importorskip("napari")
    report = _run(IMPORT_ALL)
    assert isinstance(report, dict)
    modules = report["modules"]
    for name in ("widget", "controller", "tasks", "workers", "session", "sections.project"):
        assert f"napari_al.gui.{name}" in modules
    assert not report["triton_is_none"], "importing napari_al.gui installed the triton guard"
    assert report["threads"] == _run(FRESH_THREADS), "importing napari_al.gui changed threads"
