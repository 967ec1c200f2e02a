"""The chunk files of a zarr array (v2 or v3, as the ``zarr`` package 3 opens it) checked
without decoding pixels, as :func:`~napari_al.core.images.check_tiff_extent` checks a TIFF's
strips: :func:`chunk_problem` says which chunk file is truncated or corrupt.

Every chunk of the array's grid whose file exists is checked (one that does not exist was never
written and reads as the fill value, zarr's rule), by the headers of its codecs (a few bytes
read per chunk, no data decompressed):

- no compression: the file holds exactly the chunk's bytes;
- ``blosc``: its 16-byte header's compressed size is the file's, its decompressed size the
  chunk's;
- ``zstd``: the frames' block headers are walked (3 bytes every up to 128 KiB) and must end
  exactly at the file's end; a frame's declared content size must be the chunk's;
- ``gzip``: the gzip magic, and the trailer's length (the last 4 bytes) is the chunk's;
- ``crc32c`` (zarr v3): the 4 bytes of checksum are set aside (not verified: that would read
  all the data), the codec inside it is checked;
- sharding (zarr v3, ``sharding_indexed``): the shard's index (its ``crc32c`` verified when
  ``google_crc32c`` is installed, as zarr has it) must lie in the file, every inner chunk it
  lists must lie inside the file and is checked as above.

A chunk no header says enough about (another codec: ``zlib``, ``lz4``...; v2 filters that
change the size) is decoded through zarr, that chunk alone, so the check stays complete.
"""

from __future__ import annotations

import itertools
import math
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_MAX_BLOCK = 128 << 10
_EMPTY = 2**64 - 1  # a shard index entry of a chunk never written
_INCONCLUSIVE = "?"  # a segment's check that headers cannot settle: decode the chunk


def chunk_problem(z: Any, where: Path) -> str | None:
    """The first truncated or corrupt chunk file of the zarr array ``z`` stored in the folder
    ``where``, as one line naming the file (relative to ``where``'s parent) and what is wrong;
    None when every chunk file present passes (see the module)."""
    meta = z.metadata.to_dict()
    itemsize = int(np.dtype(z.dtype).itemsize)
    if int(meta.get("zarr_format", 3)) == 2:
        grid_chunk = tuple(int(v) for v in meta["chunks"])
        spec = _v2_spec(meta, math.prod(grid_chunk) * itemsize)
    else:
        grid = meta.get("chunk_grid") or {}
        grid_chunk = tuple(int(v) for v in (grid.get("configuration") or {})["chunk_shape"])
        spec = _v3_spec(list(meta["codecs"]), grid_chunk, itemsize)
    shape = tuple(int(v) for v in z.shape)
    counts = [max(1, math.ceil(s / c)) for s, c in zip(shape, grid_chunk, strict=True)]
    for coords in itertools.product(*(range(n) for n in counts)):
        file = where / z.metadata.encode_chunk_key(coords)
        try:
            with open(file, "rb", buffering=0) as fh:
                length = fh.seek(0, 2)
                problem = _check(fh, 0, length, spec)
        except FileNotFoundError:
            continue  # never written: the fill value
        except OSError as exc:
            problem = f"cannot be read ({exc.strerror or exc})"
        if problem == _INCONCLUSIVE:
            problem = _decode(z, coords, grid_chunk, shape)
        if problem is not None:
            name = file.relative_to(where.parent).as_posix()
            return f"the OME-Zarr chunk {name} is truncated or corrupt: {problem}"
    return None


def _v2_spec(meta: dict[str, Any], raw: int) -> dict[str, Any]:
    """A zarr v2 array's chunk encoding: the compressor's id (none: raw bytes); filters that
    may change the size make the decompressed size unknown."""
    compressor = meta.get("compressor")
    chain = [str(compressor.get("id"))] if isinstance(compressor, dict) else []
    return {"chain": chain, "raw": None if meta.get("filters") else raw, "shard": None}


def _v3_spec(codecs: list[Any], chunk: tuple[int, ...], itemsize: int) -> dict[str, Any]:
    """A zarr v3 codec list as ``{"chain": bytes-to-bytes codec names, encoding order,
    "raw": the serialised chunk's size or None, "shard": the sharding spec or None}``."""
    names = [str(c.get("name")) if isinstance(c, dict) else str(c) for c in codecs]
    raw: int | None = math.prod(chunk) * itemsize
    for i, name in enumerate(names):
        if name == "bytes":
            return {"chain": names[i + 1 :], "raw": raw, "shard": None}
        if name == "sharding_indexed":
            conf = codecs[i].get("configuration") or {}
            inner = tuple(int(v) for v in conf["chunk_shape"])
            index = [str(c.get("name")) for c in conf.get("index_codecs", [])]
            shard = {
                "inner": _v3_spec(list(conf.get("codecs", [])), inner, itemsize),
                "n": math.prod(s // c for s, c in zip(chunk, inner, strict=True)),
                "crc": index[1:] == ["crc32c"],
                "plain": index[:1] == ["bytes"] and index[1:] in ([], ["crc32c"]),
                "at_end": conf.get("index_location", "end") != "start",
            }
            return {"chain": names[i + 1 :], "raw": None, "shard": shard}
        if name != "transpose":
            raw = None  # an array-to-array codec that may change the size
    return {"chain": [_INCONCLUSIVE], "raw": None, "shard": None}


def _check(fh: BinaryIO, offset: int, length: int, spec: dict[str, Any]) -> str | None:
    """What is wrong with the encoded chunk in ``length`` bytes at ``offset`` of ``fh``
    (None: nothing; :data:`_INCONCLUSIVE`: headers cannot say)."""
    chain, raw, shard = list(spec["chain"]), spec["raw"], spec["shard"]
    while chain and chain[-1] == "crc32c":
        if length < 4:
            return f"{length} bytes, shorter than its 4-byte checksum"
        chain.pop()
        length -= 4
    if shard is not None:
        if chain:
            return _INCONCLUSIVE  # a compressed shard: its index is not readable as is
        return _check_shard(fh, offset, length, shard)
    if not chain:
        if raw is None:
            return _INCONCLUSIVE
        return None if length == raw else f"{length} bytes, {raw} expected"
    inner = raw if len(chain) == 1 else None  # the size the outermost codec decompresses to
    codec = chain[-1]
    if codec == "blosc":
        return _check_blosc(fh, offset, length, inner)
    if codec == "zstd":
        return _check_zstd(fh, offset, length, inner)
    if codec == "gzip" and inner is not None:
        return _check_gzip(fh, offset, length, inner)
    return _INCONCLUSIVE


def _read(fh: BinaryIO, offset: int, n: int) -> bytes:
    fh.seek(offset)
    return fh.read(n) or b""


def _check_blosc(fh: BinaryIO, offset: int, length: int, raw: int | None) -> str | None:
    head = _read(fh, offset, 16) if length >= 16 else b""
    if len(head) < 16:
        return f"{length} bytes, shorter than a blosc header"
    nbytes, _blocksize, cbytes = struct.unpack("<III", head[4:16])
    if cbytes != length:
        return f"its blosc header says {cbytes} bytes, the chunk holds {length}"
    if raw is not None and nbytes != raw:
        return f"its blosc header says {nbytes} bytes decompressed, {raw} expected"
    return None


def _check_gzip(fh: BinaryIO, offset: int, length: int, raw: int) -> str | None:
    if length < 18 or _read(fh, offset, 3) != b"\x1f\x8b\x08":
        return "not gzip data"
    (size,) = struct.unpack("<I", _read(fh, offset + length - 4, 4))
    if size != raw % 2**32:
        return f"its gzip trailer says {size} bytes decompressed, {raw} expected (truncated?)"
    return None


def _check_zstd(fh: BinaryIO, offset: int, length: int, raw: int | None) -> str | None:
    """Walk the zstd frames' headers and block headers to the end of the chunk."""
    if length < 8:  # magic, frame header, one block header
        return f"{length} bytes, shorter than any zstd data"
    pos, end, content = offset, offset + length, 0
    while pos < end:
        head = _read(fh, pos, 18)
        if len(head) < 4:
            return f"zstd data cut short at byte {pos - offset}"
        (magic,) = struct.unpack("<I", head[:4])
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # a skippable frame
            if len(head) < 8:
                return f"zstd data cut short at byte {pos - offset}"
            pos += 8 + struct.unpack("<I", head[4:8])[0]
            continue
        if magic != _ZSTD_MAGIC or len(head) < 5:
            return f"not zstd data at byte {pos - offset}"
        fhd = head[4]
        single, checksum = fhd >> 5 & 1, fhd >> 2 & 1
        fcs_size = (1 if single else 0, 2, 4, 8)[fhd >> 6]
        at = 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3]
        if fhd & 0x08 or len(head) < at + fcs_size:
            return f"a corrupt zstd frame header at byte {pos - offset}"
        if content is not None and fcs_size:
            size = int.from_bytes(head[at : at + fcs_size], "little")
            content += size + (256 if fcs_size == 2 else 0)
        else:
            content = None
        pos += at + fcs_size
        while True:
            block = _read(fh, pos, 3)
            if len(block) < 3 or pos + 3 > end:
                return f"zstd data cut short at byte {pos - offset} of {length}"
            (header,) = struct.unpack("<I", block + b"\0")
            last, kind, size = header & 1, header >> 1 & 3, header >> 3
            if kind == 3 or (kind != 1 and size > _ZSTD_MAX_BLOCK):
                return f"a corrupt zstd block header at byte {pos - offset}"
            pos += 3 + (1 if kind == 1 else size)
            if last:
                break
        pos += 4 * checksum
    if pos != end:
        return f"zstd data cut short: its frames end at byte {pos - offset}, not {length}"
    if raw is not None and content is not None and content != raw:
        return f"its zstd frames hold {content} bytes decompressed, {raw} expected"
    return None


def _check_shard(fh: BinaryIO, offset: int, length: int, shard: dict[str, Any]) -> str | None:
    """The shard's index lies in it (checksum verified) and every inner chunk it lists lies
    inside the shard and passes its own check."""
    if not shard["plain"]:
        return _INCONCLUSIVE
    size = 16 * shard["n"] + 4 * shard["crc"]
    if length < size:
        return f"{length} bytes, shorter than its shard index of {size}"
    start = offset + length - size if shard["at_end"] else offset
    index = _read(fh, start, size)
    if shard["crc"] and not _crc_ok(index[:-4], index[-4:]):
        return "its shard index fails its crc32c checksum"
    entries = np.frombuffer(index[: 16 * shard["n"]], dtype="<u8").reshape(-1, 2)
    lo, hi = (0, length - size) if shard["at_end"] else (size, length)
    inconclusive = False
    for k, (where, n) in enumerate(entries.tolist()):
        if where == _EMPTY and n == _EMPTY:
            continue
        if where < lo or where + n > hi:
            return f"its shard index puts inner chunk {k} at bytes {where}-{where + n}, outside it"
        problem = _check(fh, offset + where, n, shard["inner"])
        if problem == _INCONCLUSIVE:
            inconclusive = True
        elif problem is not None:
            return f"inner chunk {k}: {problem}"
    return _INCONCLUSIVE if inconclusive else None


def _crc_ok(data: bytes, stored: bytes) -> bool:
    try:
        import google_crc32c
    except ImportError:
        return True  # zarr's own dependency; without it the checksum goes unchecked
    return int(google_crc32c.value(data)) == int.from_bytes(stored, "little")


def _decode(
    z: Any, coords: tuple[int, ...], chunk: tuple[int, ...], shape: tuple[int, ...]
) -> str | None:
    """Decode one chunk (or shard) through zarr; the problem, or None."""
    region = tuple(
        slice(c * n, min((c + 1) * n, s)) for c, n, s in zip(coords, chunk, shape, strict=True)
    )
    try:
        z[region]
    except Exception as exc:
        return f"cannot be decoded ({type(exc).__name__}: {exc})"
    return None
