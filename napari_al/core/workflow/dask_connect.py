"""Connecting to a running Dask scheduler (``DistributedSettings.scheduler``) within a
wall-clock bound, every failure one line naming the address and the fix.

``distributed.Client(address, timeout=...)`` alone bounds only the TCP connect: a port that
accepts and then says nothing keeps it waiting for ever, and a peer that answers in another
protocol (an HTTP server) makes Dask's frame decoder fail in any way (a MemoryError for a
frame length of 3 EiB read from text). :func:`connect` makes the client in a daemon thread,
waits for it at most the timeout, and turns whatever went wrong into a
:class:`~napari_al.core.workflow.errors.WorkflowError`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from napari_al.core.workflow.errors import WorkflowError

if TYPE_CHECKING:
    from distributed import Client


def _unreachable(address: str, reason: str) -> WorkflowError:
    return WorkflowError(
        f"cannot reach the Dask scheduler at {address} ({reason}): is a Dask scheduler "
        "running there? start one with 'dask scheduler' (docs/scale.md), or use "
        "--dask-workers N instead of --scheduler"
    )


def _refuse_closed_port(address: str, timeout: float) -> None:
    """Raise at once when nothing listens at a ``tcp://`` ``address`` (connection refused),
    where Dask would retry until its timeout; any other outcome is left to Dask's client.
    (A scheduler logs this probe as a connection "closed before handshake completed".)"""
    import socket

    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address, strict=False)
        if scheme != "tcp":
            return
        host, port = parse_host_port(location)
    except (ValueError, TypeError):
        return  # not ours to judge: Dask's client says what is wrong with it
    try:
        socket.create_connection((host, int(port)), timeout=min(timeout, 5.0)).close()
    except ConnectionRefusedError:
        raise _unreachable(address, "connection refused: nothing listens on that port") from None
    except OSError:
        return


def connect(address: str, timeout: float) -> Client:
    """A Dask client of the running scheduler at ``address``, connected within ``timeout``
    seconds of wall clock, or :class:`WorkflowError` (one line naming the address and the
    fix) for any failure: nothing listening (said at once), no answer in time (a port that
    accepts and says nothing, where ``Client(timeout=...)`` alone can wait for ever), an
    answer in another protocol (an HTTP server: Dask's decoder may then fail in any way,
    e.g. a MemoryError for a frame length read from text). The client is made in a daemon
    thread; one that connects after the wait is closed there."""
    from distributed import Client

    _refuse_closed_port(address, timeout)
    lock = threading.Lock()
    box: dict[str, Any] = {}

    def attempt() -> None:
        try:
            client = Client(address, timeout=timeout)
        except BaseException as exc:  # garbage from the peer: any exception at all
            box["error"] = exc
            return
        with lock:
            if "abandoned" not in box:
                box["client"] = client
                return
        client.close()

    thread = threading.Thread(target=attempt, name="napari-al-dask-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    with lock:
        if "client" in box:
            return box["client"]
        box["abandoned"] = True
    exc = box.get("error")
    if exc is None:
        reason = f"no answer within {timeout:g} s; --scheduler-timeout sets the wait"
    elif isinstance(exc, OSError | TimeoutError | ValueError):
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    else:
        reason = f"the answer is not Dask's protocol: {type(exc).__name__}"
    raise _unreachable(address, reason)
