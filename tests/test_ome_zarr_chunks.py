"""Every chunk file of an OME-Zarr image is checked, by its codec's headers, no pixels decoded
(:func:`~napari_al.core.ome_zarr.check_ome_zarr_chunks`, :mod:`napari_al.core.zarr_chunks`).
Every input is generated here.

``napari-al info`` checked an OME-Zarr image by its metadata only, and the import decoded its
first chunk: a store whose later chunk file was truncated or garbage was "found and readable",
and prediction then skipped it. Now a truncated or corrupt chunk file of any level is named,
by info and by the import, for each codec zarr writes by default (v2 blosc, v3 zstd) and the
others (gzip, none, blosc with crc32c, sharding; zlib decoded chunk by chunk).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from napari_al.cli import main
from napari_al.core.data import Dataset, ImageRecord
from napari_al.core.images import ImageReadError, check_pixels
from napari_al.core.ome_zarr import check_ome_zarr_chunks
from napari_al.core.store import ProjectStore

PIXELS = np.random.default_rng(0).integers(0, 4000, (100, 130), dtype=np.uint16)


def _codecs(kind: str) -> dict[str, Any]:
    import numcodecs
    from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec

    return {
        "v2-default": {},
        "v2-zstd": {"compressors": numcodecs.Zstd()},
        "v2-gzip": {"compressors": numcodecs.GZip()},
        "v2-none": {"compressors": None},
        "v2-zlib": {"compressors": numcodecs.Zlib()},
        "v3-default": {},
        "v3-blosc-crc32c": {"compressors": [BloscCodec(), Crc32cCodec()]},
        "v3-gzip": {"compressors": [GzipCodec()]},
        "v3-none": {"compressors": None},
        "v3-sharded": {"shards": (64, 64)},
    }[kind]


KINDS = [
    "v2-default",
    "v2-zstd",
    "v2-gzip",
    "v2-none",
    "v2-zlib",
    "v3-default",
    "v3-blosc-crc32c",
    "v3-gzip",
    "v3-none",
    "v3-sharded",
]


def _write(path: Path, kind: str) -> None:
    """A 130 x 100 px uint16 OME-Zarr image, two levels, chunks of 32 x 32 px (level 0: a grid
    of 4 x 5 chunk files; sharded: 2 x 3 shards of 2 x 2 chunks)."""
    fmt = int(kind[1])
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    datasets = []
    for k in range(2):
        data = PIXELS[:: 2**k, :: 2**k]
        z = group.create_array(
            str(k), shape=data.shape, chunks=(32, 32), dtype=data.dtype, **_codecs(kind)
        )
        z[...] = data
        datasets.append({"path": str(k)})
    entry = {"axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]}
    entry["datasets"] = datasets
    if fmt == 2:
        group.attrs["multiscales"] = [{"version": "0.4", **entry}]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [entry]}


def _chunk(path: Path, kind: str, level: int = 0) -> Path:
    """A chunk file of ``level`` that is not the first: the last one."""
    sep = "." if kind.startswith("v2") else "/"
    last = "1/2" if kind == "v3-sharded" else ("3/4" if level == 0 else "1/2")
    key = last.replace("/", sep)
    return path / str(level) / (key if kind.startswith("v2") else f"c/{key}")


@pytest.mark.parametrize("kind", KINDS)
def test_a_later_chunk_truncated_or_garbage_is_found(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "img.ome.zarr"
    _write(path, kind)
    check_pixels(path)
    check_ome_zarr_chunks(path)
    chunk = _chunk(path, kind)
    good = chunk.read_bytes()
    chunk.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageReadError, match="truncated or corrupt") as err:
        check_ome_zarr_chunks(path)
    assert str(err.value).startswith(f"{path}: the OME-Zarr chunk ")
    assert chunk.relative_to(path).as_posix() in str(err.value)
    with pytest.raises(ImageReadError, match=chunk.name):
        check_pixels(path)  # the import's check too
    chunk.write_bytes(b"")
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        check_ome_zarr_chunks(path)
    if kind.endswith("none"):
        return  # uncompressed bytes of the right length are pixels, whatever they hold
    garbage = np.random.default_rng(1).integers(0, 256, len(good), dtype=np.uint8)
    chunk.write_bytes(garbage.tobytes())
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        check_ome_zarr_chunks(path)
    chunk.write_bytes(good)
    check_ome_zarr_chunks(path)
    chunk.unlink()  # a chunk never written reads as the fill value (zarr's rule)
    check_ome_zarr_chunks(path)


@pytest.mark.parametrize("kind", ["v2-default", "v3-default"])
def test_a_corrupt_chunk_of_a_lower_level_is_found(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "img.ome.zarr"
    _write(path, kind)
    chunk = _chunk(path, kind, level=1)
    chunk.write_bytes(chunk.read_bytes()[:-3])
    with pytest.raises(ImageReadError, match=f"chunk 1/{chunk.relative_to(path / '1')}"):
        check_ome_zarr_chunks(path)


def test_other_paths_pass(tmp_path: Path) -> None:
    check_ome_zarr_chunks(tmp_path / "a.png")  # not an OME-Zarr: nothing to check here


def test_info_names_an_ome_zarr_whose_later_chunk_is_truncated(tmp_path: Path, capsys) -> None:
    """``info`` said "all found and readable" of a store whose later chunk file was cut short;
    prediction then skipped it."""
    root = tmp_path / "p"
    root.mkdir()
    path = root / "img.ome.zarr"
    _write(path, "v3-default")
    with ProjectStore.create(root) as store:
        summary = store.import_dataset(Dataset(["cell"], [ImageRecord(path, 130, 100, [])]))
    assert summary["images_added"] == 1
    assert main(["info", str(root)]) == 0
    assert "image files: all 1 found and readable" in capsys.readouterr().out
    chunk = _chunk(path, "v3-default")
    chunk.write_bytes(chunk.read_bytes()[:-10])
    main(["info", str(root)])
    out, err = capsys.readouterr()
    assert "found and readable" not in out
    line = next(ln for ln in (out + err).splitlines() if "img.ome.zarr" in ln)
    assert "0/c/3/4 is truncated or corrupt" in line, line
    with ProjectStore.create(tmp_path / "q") as store:  # an import leaves it out, named
        summary = store.import_dataset(Dataset(["cell"], [ImageRecord(path, 130, 100, [])]))
    assert summary["images_added"] == 0
    assert "0/c/3/4 is truncated or corrupt" in summary["left_out"][0]["detail"]
