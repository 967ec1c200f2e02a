"""How many bytes a PNG's pixel data inflates to, against what its header promises.

Pillow's ``verify`` checks a PNG's chunk CRCs without inflating the pixel data, so a file
whose chunks are intact but whose ``IDAT`` stream holds less than the header's width x height
(a forged header, a writer that stopped early and closed the file properly) passed an import
and failed every later read. :func:`png_data_shortfall` inflates the ``IDAT`` stream with
:mod:`zlib` (streamed, a megabyte at a time: nothing image-sized is allocated, no row is
unfiltered) and compares its length with the size the PNG specification (ISO/IEC 15948,
sections 7.2 and 8.2: one filter byte per scanline, Adam7 passes when interlaced) gives.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

#: Samples per pixel of each PNG colour type (PNG specification, table 6.1).
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7 passes: (x0, y0, dx, dy) (PNG specification, section 8.2).
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
_STEP = 1 << 20


def expected_png_bytes(
    width: int, height: int, bit_depth: int, colour_type: int, interlaced: bool
) -> int:
    """Bytes the inflated ``IDAT`` stream of a ``width`` x ``height`` px PNG holds: per
    scanline one filter byte plus ``ceil(width * channels * bit_depth / 8)``; when
    ``interlaced``, summed over the seven Adam7 sub-images. Raises KeyError for an unknown
    colour type."""
    bits = _CHANNELS[colour_type] * bit_depth
    if not interlaced:
        return height * (1 + math.ceil(width * bits / 8))
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        w = max(0, math.ceil((width - x0) / dx))
        h = max(0, math.ceil((height - y0) / dy))
        if w and h:
            total += h * (1 + math.ceil(w * bits / 8))
    return total


def png_data_shortfall(path: str | Path) -> str | None:
    """``None`` when the PNG at ``path`` inflates to at least the bytes its ``IHDR`` promises;
    otherwise why not, in a few words (``"pixel data ends after 8 of 1,083,019,000 bytes"``,
    ``"pixel data is not a valid deflate stream (...)"``). Reads the file once; stops
    inflating as soon as the promised length is reached. The chunk structure itself is
    assumed sound (Pillow's ``verify`` checks it first)."""
    with open(path, "rb") as f:
        f.seek(8)  # the signature
        head = f.read(8)
        if len(head) < 8 or head[4:] != b"IHDR":
            return "no IHDR chunk first"
        ihdr = f.read(struct.unpack(">I", head[:4])[0])
        f.seek(4, 1)  # CRC
        width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", ihdr[:13])
        try:
            want = expected_png_bytes(width, height, depth, colour, interlace == 1)
        except KeyError:
            return f"unknown colour type {colour}"
        inflater = zlib.decompressobj()
        got = 0
        while got < want:
            head = f.read(8)
            if len(head) < 8 or head[4:] == b"IEND":
                break
            length = struct.unpack(">I", head[:4])[0]
            if head[4:] != b"IDAT":
                f.seek(length + 4, 1)
                continue
            data = f.read(length)
            f.seek(4, 1)
            try:
                while data and got < want:
                    got += len(inflater.decompress(data, _STEP))
                    data = inflater.unconsumed_tail
            except zlib.error as e:
                return f"pixel data is not a valid deflate stream ({e})"
    if got < want:
        return f"pixel data ends after {got:,} of {want:,} bytes"
    return None
