"""Compute device selection, CPU thread and CPU memory settings for the detector engine.

``select_device(None)`` picks CUDA, then Apple MPS, then the CPU; a string (``"cpu"``,
``"cuda"``, ``"cuda:1"``, ``"mps"``) overrides it. Mixed precision (autocast) is used on CUDA
only: on CPU it is slower than float32 for these models and on MPS autocast is incomplete.
"""

from __future__ import annotations

import contextlib
import os

import torch

from napari_al.core.data import DEVICE_ENV
from napari_al.core.engine.ddp import local_device

#: Set to ``0`` to leave the C allocator's settings alone (:func:`keep_freed_memory`).
KEEP_FREED_MEMORY_ENV = "NAPARI_AL_KEEP_FREED_MEMORY"
#: :func:`keep_freed_memory`'s glibc ``mallopt`` settings: blocks up to 128 MiB (a forward
#: pass's activations: 118 MB for the 96-channel layers of a 960 x 1,280 px window) come from
#: the heap, not their own ``mmap``; larger ones keep their own mapping, returned when freed,
#: so they do not fragment the heap; free memory at the heap's top is returned beyond 1 GiB
#: (below that a pass of a large window freed enough at the top to be trimmed, and the next
#: pass faulted it in again).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MALLOPT = (
    (_M_MMAP_THRESHOLD, 128 << 20),
    (_M_TRIM_THRESHOLD, 1024 << 20),
    (_M_TOP_PAD, 16 << 20),
)
_kept: bool | None = None


def select_device(preference: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``preference`` if given (``"auto"`` = None), else
    ``$NAPARI_AL_DEVICE`` if set (e.g. ``cpu`` to keep a busy GPU free), else CUDA > MPS > CPU.

    Under torchrun with several processes, ``cuda`` (no index) is this rank's GPU,
    ``cuda:LOCAL_RANK`` (:func:`~napari_al.core.engine.ddp.local_device`).

    Raises ``ValueError`` (one line, with the fix) when an explicitly requested accelerator is
    not available, or ``cuda:N`` names a GPU the machine does not have.
    """
    if isinstance(preference, torch.device):
        preference = str(preference)
    source = ""
    if preference is None or preference == "auto":
        preference = os.environ.get(DEVICE_ENV) or None
        source = f" (by ${DEVICE_ENV})" if preference else ""
    if preference is None or preference == "auto":
        if torch.cuda.is_available():
            return local_device(torch.device("cuda"))
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except RuntimeError:  # torch's list of every device type it knows, not ours
        raise ValueError(
            f"device {preference!r}{source} is not valid; expected cpu, mps, cuda or cuda:N"
        ) from None
    fix = "use device 'cpu' (--device cpu), or leave the device out for the best one available"
    if device.type == "cuda" and not torch.cuda.is_available():
        why = "no GPU driver found" if torch.version.cuda else "this torch is built without CUDA"
        raise ValueError(
            f"device {preference!r} requested{source} but CUDA is not available ({why}); {fix}"
        )
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise ValueError(
                f"device {preference!r} requested{source} but this machine has {count} CUDA "
                f"device{'s' if count != 1 else ''} (cuda:0 to cuda:{count - 1}); pick one of "
                "them or 'cuda'"
            )
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(
                f"device {preference!r} requested{source} but MPS is not available; {fix}"
            )
    return local_device(device) if device.index is None else device


def keep_freed_memory() -> bool:
    """Keep the memory of freed tensors in the process for the next forward pass (glibc only;
    once per process; returns whether the settings are in place).

    glibc gives every block over its mmap threshold (at most 32 MiB) its own ``mmap`` and
    unmaps it when freed, so a CPU forward pass, whose activations are tens of MB each, page-
    faults all of them afresh every time: on the project's 2-core VM half of the CPU time of
    prediction was the kernel's (``/usr/bin/time -v``: 410 s system time of 1,520 s; 480,000
    minor page faults per megapixel predicted). ``mallopt`` (glibc's documented tuning, the
    same as ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` in the environment) lets
    the heap keep them (:data:`_MALLOPT`): 35 % less wall time per image measured there, the
    same peak memory, which the process then keeps. The limits were raised from 64 MiB (trim
    256 MiB) for windows twice the model's input (``TileSettings.window_scale``): 3 million
    page faults and 5 s of system time in 26 s of predicting a 6,400 x 4,800 px mosaic, none
    after (23 s; docs/large-images.md, run 15). ``$NAPARI_AL_KEEP_FREED_MEMORY=0`` turns
    it off; a no-op where there is no glibc (macOS, Windows, musl)."""
    global _kept
    if _kept is not None:
        return _kept
    _kept = False
    if os.environ.get(KEEP_FREED_MEMORY_ENV, "1") == "0":
        return False
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _kept = all(libc.mallopt(option, value) == 1 for option, value in _MALLOPT)
    except (OSError, AttributeError):
        _kept = False
    return _kept


def default_num_threads() -> int:
    """CPU threads for torch: the cores this process may use, at most 8 (more rarely helps)."""
    try:
        n = len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def configure_threads(n: int | None = None) -> int:
    """Set ``torch.set_num_threads`` to ``n`` (default: :func:`default_num_threads`); returns it."""
    n = default_num_threads() if n is None else max(1, int(n))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """Mixed-precision context: float16/bfloat16 autocast on CUDA, a no-op elsewhere."""
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)
    return contextlib.nullcontext()


def autocast_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The dtype :func:`autocast` uses on ``device`` (None when it is a no-op)."""
    if enabled and device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def num_threads(n: int | None) -> contextlib.AbstractContextManager[None]:
    """Temporarily use ``n`` torch CPU threads (None: leave as is); process-wide, restored
    after (:func:`napari_al.runtime.torch_threads`)."""
    from napari_al.runtime import torch_threads

    return torch_threads(n)
