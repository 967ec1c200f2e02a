"""Training on several processes (GPUs, or CPU processes): PyTorch DistributedDataParallel.

A process started by ``torchrun`` (``python -m torch.distributed.run``) finds its place in
the environment: ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``.
:func:`init_from_env` joins the process group then (backend ``nccl`` on CUDA, ``gloo`` on the
CPU); :func:`~napari_al.core.engine.training.train` calls it, wraps the model in
:class:`torch.nn.parallel.DistributedDataParallel` (gradients averaged over the ranks after
every backward pass) and gives each rank its :func:`shard` of every step's batch.

Outside torchrun (``WORLD_SIZE`` unset or 1) every function here says "one process, rank 0"
and nothing is initialised. Reference: Li et al., "PyTorch Distributed: Experiences on
Accelerating Data Parallel Training", VLDB 2020; https://pytorch.org/docs/stable/notes/ddp.html.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TypeVar

import torch

log = logging.getLogger(__name__)

_T = TypeVar("_T")


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when unset or not a number)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def world_size() -> int:
    """Processes training together: the process group's size once joined, else
    :func:`env_world_size`."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_world_size())
    return env_world_size()


def rank() -> int:
    """This process's rank (0 outside torchrun)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_rank())
    return _env_int("RANK", 0) if env_world_size() > 1 else 0


def is_main_process() -> bool:
    """Whether this process is rank 0: the one that writes the checkpoint and the store.
    True outside torchrun."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for a CUDA device under torchrun with
    several processes, else ``device`` unchanged."""
    if device.type == "cuda" and env_world_size() > 1:
        return torch.device("cuda", _env_int("LOCAL_RANK", 0))
    return device


def init_from_env(device: torch.device) -> bool:
    """Join the process group torchrun describes in the environment, once per process
    (backend ``nccl`` when ``device`` is CUDA, else ``gloo``); True when several processes
    train together. A process outside torchrun joins nothing and gets False.

    Raises RuntimeError (torch's) when the rendezvous fails (e.g. ``MASTER_ADDR`` unset).
    """
    if env_world_size() <= 1 or not torch.distributed.is_available():
        return False
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_device(device))
        torch.distributed.init_process_group(backend=backend, init_method="env://")
        log.info("rank %d of %d joined the process group (%s)", rank(), world_size(), backend)
    return world_size() > 1


def shard(batch: Sequence[_T], rank: int, world_size: int) -> list[_T]:
    """Rank ``rank``'s part of a global batch: the ``rank``-th of ``world_size`` contiguous,
    equal slices (``len(batch)`` must be a multiple of ``world_size``). The slices of all ranks
    are disjoint and together are the batch, in order.

    Raises ValueError when the batch does not split evenly or ``rank`` is out of range.
    """
    n = len(batch)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size} processes")
    if n % world_size:
        raise ValueError(f"a batch of {n} does not split evenly over {world_size} processes")
    per = n // world_size
    return list(batch[rank * per : (rank + 1) * per])


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` (the process group
    must be joined), with ``find_unused_parameters=False``: every architecture's loss reaches
    every trainable parameter at every step, also on a batch of negative images or with a
    class absent (checked for all of :data:`~napari_al.core.engine.build.ARCHS`;
    ``tests/test_ddp.py`` keeps checking the default one). Were that to change, DDP would
    fail at the next step with an error naming the parameters; ``True`` would then be the
    fix, at the price of one traversal of the autograd graph per step."""
    from torch.nn.parallel import DistributedDataParallel

    ids = None
    if device.type == "cuda":
        ids = [device.index if device.index is not None else torch.cuda.current_device()]
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


def all_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """The sums of ``values`` over all ranks (``values`` itself in one process); every rank
    must call it with as many values, at the same point."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [float(v) for v in values]
    dev = device if device.type == "cuda" else torch.device("cpu")
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=dev)
    torch.distributed.all_reduce(t)
    return [float(v) for v in t.cpu()]


def check_agree(values: Sequence[float], device: torch.device) -> None:
    """Raise RuntimeError on every rank unless all ranks have the same ``values`` (e.g. the
    number of examples and of steps: ranks that disagree would wait for each other forever).
    Nothing to check in one process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    here = [float(v) for v in values]
    sums = all_sum(here + [v * v for v in here], device)
    n = world_size()
    k = len(here)
    if any(
        abs(sums[k + i] * n - sums[i] ** 2) > 1e-6 * max(1.0, sums[k + i] * n) for i in range(k)
    ):
        raise RuntimeError(
            "the training processes read different examples (the project changed while they "
            "started); train again"
        )
