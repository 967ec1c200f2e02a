"""Shared fixtures: where the real data lives, and a small project built from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The suite compares against torchvision's CPU reference bit for bit and checks seeded
# reproducibility, so it runs on the CPU even where a GPU is present; tests/test_cuda.py
# exercises the CUDA path explicitly.
os.environ.setdefault("NAPARI_AL_DEVICE", "cpu")

REPO = Path(__file__).resolve().parent.parent
#: BCCD (364 images, VOC), kept beside the repository in ../shared/datasets/bccd.
BCCD_DIR = REPO.parent / "shared" / "datasets" / "bccd"
SAMPLE_DIR = REPO / "sample_data" / "bccd_sample"


@pytest.fixture(scope="session")
def bccd_dir() -> Path:
    """The full BCCD dataset; its absence is a setup error, not a reason to skip."""
    assert (BCCD_DIR / "Annotations").is_dir(), f"BCCD not found at {BCCD_DIR}"
    return BCCD_DIR


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The 16-image BCCD sample shipped in sample_data/."""
    assert (SAMPLE_DIR / "Annotations").is_dir(), f"sample not found at {SAMPLE_DIR}"
    return SAMPLE_DIR
