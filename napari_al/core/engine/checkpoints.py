"""Saving and loading detector checkpoints, atomically and safely.

A checkpoint is one ``torch.save`` file holding plain data only, so it loads with
``torch.load(..., weights_only=True)`` (no pickled code is ever executed)::

    {"format": "napari-al-checkpoint", "version": 1,
     "metadata": {...plain types...}, "state_dict": {name: tensor}}

``metadata`` always carries ``arch``, ``classes``, ``min_size``, ``max_size`` and ``config``
(the full :class:`~napari_al.core.engine.build.DetectorConfig`, enough to rebuild the structure)
plus whatever the caller adds (project data hash, metrics, step counts...): dicts with string
keys, lists, str, int, float (NaN allowed), bool and None. numpy scalars/arrays, tuples, paths
and objects with ``as_dict()`` are converted; anything else is refused before writing.

The project store's model version is not part of a checkpoint: the store owns versions, and a
loaded detector's ``model_version`` is 0 until its loader sets it.

Writing is atomic: a temporary file in the same directory, flushed and fsynced, then
``os.replace`` over the target and an fsync of the directory, so a crash leaves either the old
or the new checkpoint, never a torn one. A writer killed before the rename leaves the
temporary file (:mod:`napari_al.core.atomic_files`: the project's next training removes it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import io
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_al.core.atomic_files import TEMP_SUFFIX, temp_prefix
from napari_al.core.engine.build import DetectorConfig
from napari_al.core.engine.detector import Detector
from napari_al.core.file_modes import new_file_mode

FORMAT = "napari-al-checkpoint"
VERSION = 1


def plain(obj: Any, where: str = "metadata") -> Any:
    """``obj`` as weights_only-safe plain data (raises ``TypeError`` for anything else)."""
    # exact builtin types only: subclasses (e.g. torch's TorchVersion str) would be pickled by
    # class and refused by weights_only loading
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, np.generic):
        return plain(obj.item(), where)
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist(), where)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings, got {k!r}")
            out[k] = plain(v, f"{where}.{k}")
        return out
    if isinstance(obj, (list, tuple)):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "as_dict") and callable(obj.as_dict):
        return plain(obj.as_dict(), where)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return plain(dataclasses.asdict(obj), where)
    raise TypeError(f"{where}: {type(obj).__name__} cannot be stored in a checkpoint")


def _fsync_dir(directory: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(str(directory), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(detector: Detector, path: str | Path, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``detector``'s weights and metadata to ``path`` atomically; returns the path.

    ``metadata`` (e.g. ``{"data_hash": ..., "metrics": eval_result, "steps": 120}``) is merged
    over the detector's own description (arch, classes, input size, config)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "arch": detector.arch,
        "classes": list(detector.classes),
        "min_size": detector.config.min_size,
        "max_size": detector.config.max_size,
        "config": detector.config.to_dict(),
        "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }
    meta.update(plain(dict(metadata or {})))
    payload = _payload(detector, meta)
    # a writer killed before the rename leaves this file: napari_al.core.atomic_files finds it
    fd, tmp = tempfile.mkstemp(
        dir=str(path.parent), prefix=temp_prefix(path.name), suffix=TEMP_SUFFIX
    )
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _payload(detector: Detector, meta: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint holds: plain metadata and the weights as CPU tensors."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "metadata": plain(dict(meta)),
        "state_dict": {k: v.detach().cpu().clone() for k, v in detector.state_dict().items()},
    }


def to_bytes(detector: Detector) -> bytes:
    """``detector`` as checkpoint bytes (the file format of :func:`save`, in memory): what
    is sent to other processes, e.g. the Dask workers that score a pool
    (:mod:`napari_al.core.workflow.distributed`). :func:`from_bytes` rebuilds it."""
    meta = {"arch": detector.arch, "classes": list(detector.classes)}
    meta["config"] = detector.config.to_dict()
    buf = io.BytesIO()
    torch.save(_payload(detector, meta), buf)
    return buf.getvalue()


def from_bytes(data: bytes, device: str | torch.device | None = None, amp: bool = True) -> Detector:
    """The detector :func:`to_bytes` wrote, on ``device`` (default: the best one here);
    weights-only load, no pickled code. Raises ValueError for a torch file that is not a
    napari-al detector (torch's own error for bytes that are no torch file)."""
    return _build(_read(io.BytesIO(data), "detector bytes"), device, amp)[0]


def _read(path: str | Path | io.BytesIO, name: str | None = None) -> dict[str, Any]:
    source = path if isinstance(path, io.BytesIO) else str(path)
    path = name or path
    payload = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a napari-al checkpoint")
    if int(payload.get("version", 0)) > VERSION:
        raise ValueError(f"{path}: checkpoint version {payload['version']} is newer than {VERSION}")
    return payload


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint (weights_only load)."""
    return dict(_read(path)["metadata"])


def load(
    path: str | Path, device: str | torch.device | None = None, amp: bool = True
) -> tuple[Detector, dict[str, Any]]:
    """A detector rebuilt from a checkpoint (no pretrained weights are read), and its metadata."""
    return _build(_read(path), device, amp)


def _build(
    payload: dict[str, Any], device: str | torch.device | None, amp: bool
) -> tuple[Detector, dict[str, Any]]:
    meta = dict(payload["metadata"])
    config = DetectorConfig.from_dict(meta["config"])
    detector = Detector.from_config(config, device=device, amp=amp)
    detector.load_state_dict(payload["state_dict"])
    return detector, meta


def load_into(detector: Detector, path: str | Path) -> dict[str, Any]:
    """Load a checkpoint's weights into an existing detector of the same arch and classes."""
    payload = _read(path)
    meta = dict(payload["metadata"])
    if meta.get("arch") != detector.arch or list(meta.get("classes", [])) != detector.classes:
        raise ValueError(
            f"{path}: checkpoint is {meta.get('arch')} {meta.get('classes')}, detector is "
            f"{detector.arch} {detector.classes}"
        )
    detector.load_state_dict(payload["state_dict"])
    return meta


def metrics_equal(a: Any, b: Any) -> bool:
    """Plain-data equality treating NaN == NaN (handy for metadata round trips)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(metrics_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(metrics_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b
