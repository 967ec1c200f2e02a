"""``--scheduler ADDRESS`` / ``--dask-workers N``: ``rank``'s scoring and ``predict``'s pass as
a Dask task graph (:mod:`napari_al.core.workflow.distributed`, docs/scale.md)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from napari_al.cli.common import counted

#: The flags, from :class:`~napari_al.core.workflow.DistributedSettings` (its ``device``
#: follows the command's ``--device``).
FIELDS = ("scheduler", "connect_timeout", "workers", "chunk_size", "worker_threads")


def dask_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--scheduler``, ``--scheduler-timeout``, ``--dask-workers``, ``--dask-chunk`` and
    ``--dask-threads``."""
    from napari_al.core.workflow import DistributedSettings, add_arguments

    group = p.add_argument_group("distributed scoring (Dask; default: one process; docs/scale.md)")
    add_arguments(group, DistributedSettings, only=FIELDS)


@contextlib.contextmanager
def dask_cluster(args: argparse.Namespace) -> Iterator[Any]:
    """None (no Dask flag given), or a :class:`~napari_al.core.workflow.distributed.DaskCluster`
    for the ``with`` block, started only if some image needs the model (it says so on stderr:
    where, how many workers, the dashboard) and closed after; when none did, a note on stderr
    says that Dask was not used. Raises
    :class:`~napari_al.core.workflow.SettingsError` for ``--scheduler`` with
    ``--dask-workers``, and for a Dask flag the run would not use (``--dask-chunk`` or
    ``--dask-threads`` without either; ``--scheduler-timeout`` without ``--scheduler``)."""
    from napari_al.core.workflow import DistributedSettings, from_args

    settings = from_args(DistributedSettings, args)  # device: the command's --device
    _refuse_unused_flags(settings, args)
    if not settings.active:
        yield None
        return
    from napari_al.core.workflow.distributed import DaskCluster

    with DaskCluster(settings, on_start=lambda line: print(line, file=sys.stderr)) as cluster:
        yield cluster
        if not cluster.used:  # a mistyped --scheduler would otherwise go unnoticed
            where = (
                f"the scheduler at {settings.scheduler} was not contacted"
                if settings.scheduler
                else f"the {counted(settings.workers, 'local worker')} "
                f"{'was' if settings.workers == 1 else 'were'} not started"
            )
            print(
                f"note: Dask was not used: no image needed the model (scores cached, or nothing "
                f"to predict); {where}",
                file=sys.stderr,
            )


def _refuse_unused_flags(settings: Any, args: argparse.Namespace) -> None:
    """One line for a Dask flag given where no Dask runs (it used to be accepted and unused)."""
    from napari_al.core.workflow import DistributedSettings, SettingsError, flags_given

    if not settings.active:
        given = flags_given(
            DistributedSettings, args, only=("chunk_size", "worker_threads", "connect_timeout")
        )
        if given:
            raise SettingsError(
                f"{given[0]} applies to Dask scoring only: give --dask-workers N (local worker "
                "processes) or --scheduler ADDRESS with it, or leave it out"
            )
    elif settings.scheduler is None and flags_given(
        DistributedSettings, args, only=("connect_timeout",)
    ):
        raise SettingsError(
            "--scheduler-timeout applies to --scheduler only (local workers need no wait); "
            "leave it out"
        )
