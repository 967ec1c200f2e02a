"""Process-wide settings that only entry points may apply (CLI ``main``, the widget's start).

Importing any napari-al module changes no process state; these functions do, and are called
where a process starts its work:

- :func:`block_triton`: keeps torch from importing ``triton`` in a GUI process. Importing
  ``triton`` (which ``torchvision.ops`` pulls in through ``torch._dynamo``) after a napari viewer
  has created its OpenGL context segfaults in ``libtriton``'s loader, on the main thread as in
  a worker (measured with Mesa's llvmpipe under Xvfb; both bundle LLVM). triton only serves
  ``torch.compile``, which napari-al does not use. ``NAPARI_AL_ALLOW_TRITON=1`` opts out.
- :func:`set_torch_threads`: torch's CPU thread count for the process.
- :func:`torch_threads`: the same for the length of a ``with`` block, restored after (the
  simulator's run functions: results differ bitwise between thread counts, so each applies its
  configured count).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

#: Set to 1 to let torch import triton in the GUI process (see :func:`block_triton`).
ALLOW_TRITON_ENV = "NAPARI_AL_ALLOW_TRITON"


def block_triton() -> bool:
    """Make ``import triton`` fail in this process unless it is loaded already or the user
    opted out; returns whether the guard is in place."""
    if "triton" in sys.modules or os.environ.get(ALLOW_TRITON_ENV) == "1":
        return sys.modules.get("triton", "absent") is None
    sys.modules["triton"] = None  # type: ignore[assignment]  # import triton -> ImportError
    return True


def set_torch_threads(n: int | None) -> None:
    """``torch.set_num_threads(n)`` for the whole process (None: leave torch's default)."""
    if n is None:
        return
    import torch

    torch.set_num_threads(max(1, int(n)))


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` torch CPU threads inside the ``with`` block (None: leave as is).

    ``torch.set_num_threads`` is process-wide: every thread of the process (a GUI's too) runs
    torch ops with the new count until the block ends and the previous count is restored.
    """
    if n is None:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)
