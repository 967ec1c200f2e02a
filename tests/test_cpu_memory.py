"""The engine keeps freed tensor memory in the process (``engine.device.keep_freed_memory``):
glibc unmapped every freed block over 32 MiB, so each CPU forward pass page-faulted its
activations afresh (half of prediction's CPU time on the 2-core VM was the kernel's)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)

# a pass of COUNT tensors of MIB MiB each, made, filled and freed 20 times, after the engine set
# the allocator up (or not)
PROBE = """
import json, resource, sys, torch
from napari_al.core.engine.device import keep_freed_memory
mib, count = int(sys.argv[1]), int(sys.argv[2])
kept = keep_freed_memory()

def one_pass():
    tensors = [torch.empty(mib << 18).fill_(1.0) for _ in range(count)]
    del tensors

for _ in range(3):
    one_pass()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    one_pass()
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"kept": kept, "faults": after - before}))
"""


def _probe(env_value: str | None, mib: int = 48, count: int = 1) -> dict:
    import os

    env = dict(os.environ)
    env.pop("NAPARI_AL_KEEP_FREED_MEMORY", None)
    if env_value is not None:
        env["NAPARI_AL_KEEP_FREED_MEMORY"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(mib), str(count)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("mib", "count"),
    [
        # an input-sized window's largest activation (the larger case below covers its
        # limits too; 10 s more: with -m slow)
        pytest.param(48, 1, marks=pytest.mark.slow),
        # a window twice the input per side: 118 MB blocks, over 256 MiB freed at once at the
        # heap's top (the limits before: 64 MiB blocks, trimmed beyond 256 MiB)
        (112, 3),
    ],
)
def test_freed_tensors_are_reused_without_page_faults(mib: int, count: int) -> None:
    on, off = _probe(None, mib, count), _probe("0", mib, count)
    assert on["kept"] is True and off["kept"] is False
    pages = 20 * count * (mib << 20) // 4096  # every page of every tensor, faulted afresh
    assert off["faults"] > pages // 2  # glibc's default: unmapped at free, faulted again
    assert on["faults"] < pages // 10  # kept in the heap and reused (at most a tensor or two)


def test_a_detector_sets_it_up_before_its_first_forward_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from napari_al.core.engine import Detector, detector

    calls: list[int] = []
    monkeypatch.setattr(detector, "keep_freed_memory", lambda: calls.append(1) or True)
    Detector(["cell"], min_size=64, max_size=96, device="cpu", seed=0)
    assert calls == [1]
