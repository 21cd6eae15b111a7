"""The .idf container: header, payload sections, and their bounded, validated parsing.

Layout (all integers little-endian)::

    magic    4  b"IDFZ"
    version  1  FORMAT_VERSION
    mode     1  index into MODES (the Pillow mode given back on decoding)
    method   1  METHOD_FLOW, METHOD_PNG or METHOD_RAW
    flags    1  FLAG_ICC | FLAG_ALPHA
    width    2
    height   2
    crc32    4  CRC-32 of the decoded image's pixel bytes, palette (mode P) and ICC profile
    [icc]       u32 length + ICC profile bytes                       if FLAG_ICC
    METHOD_FLOW:
      name      u8 length + UTF-8 model name
      model id  8   first 8 bytes of the sha256 of the integer model's weights
      tile      2   tile side; tiles run row by row over the image
      lengths   4 per tile: byte length of each tile's rANS stream
      streams   the tile streams, in tile order (32-bit words, little-endian)
      [alpha]   u32 length + PNG of the alpha plane                   if FLAG_ALPHA
    METHOD_PNG / METHOD_RAW:
      payload   u32 length + PNG file, or the raw pixel bytes of the mode
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .entropy import CodingError

MAGIC = b"IDFZ"
FORMAT_VERSION = 1
MODES = ("RGB", "L", "RGBA", "LA", "P", "1", "I;16")
METHOD_FLOW, METHOD_PNG, METHOD_RAW = 0, 1, 2
METHOD_NAMES = {METHOD_FLOW: "flow", METHOD_PNG: "png", METHOD_RAW: "raw"}
FLAG_ICC, FLAG_ALPHA = 1, 2
MAX_SIDE = 65535
MAX_PIXELS = 1 << 28  # 268 megapixels: refuse headers that would need more memory
MAX_TILE = 2048  # bounds the memory one tile's networks need, for hostile headers too
MODEL_ID_BYTES = 8  # 64 bits of the weight hash tell models apart; the file stays small
_FIXED = struct.Struct("<4sBBBBHHI")


@dataclass
class Container:
    mode: str
    method: int
    width: int
    height: int
    crc32: int
    icc: bytes | None = None
    model_name: str = ""
    model_id: bytes = b""  # MODEL_ID_BYTES of the model's weight sha256
    tile: int = 0
    streams: list[bytes] = field(default_factory=list)
    alpha_png: bytes | None = None
    payload: bytes = b""

    def to_bytes(self) -> bytes:
        flags = (FLAG_ICC if self.icc else 0) | (FLAG_ALPHA if self.alpha_png is not None else 0)
        out = [_FIXED.pack(MAGIC, FORMAT_VERSION, MODES.index(self.mode), self.method, flags,
                           self.width, self.height, self.crc32)]
        if self.icc:
            out.append(_section(self.icc))
        if self.method == METHOD_FLOW:
            name = self.model_name.encode()[:255]
            out += [bytes([len(name)]), name, self.model_id[:MODEL_ID_BYTES],
                    struct.pack("<H", self.tile),
                    struct.pack(f"<{len(self.streams)}I", *map(len, self.streams)), *self.streams]
            if self.alpha_png is not None:
                out.append(_section(self.alpha_png))
        else:
            out.append(_section(self.payload))
        return b"".join(out)


def _section(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


class _Reader:
    """Bounds-checked reads: running past the end is a 'truncated' error, never an IndexError."""

    def __init__(self, data: bytes):
        self.data, self.pos = memoryview(data), 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CodingError("truncated .idf file")
        chunk = self.data[self.pos: self.pos + n].tobytes()
        self.pos += n
        return chunk

    def unpack(self, fmt: str):
        s = struct.Struct("<" + fmt)
        return s.unpack(self.take(s.size))

    def section(self) -> bytes:
        (n,) = self.unpack("I")
        return self.take(n)


def parse(data: bytes) -> Container:
    """Parse and validate a whole .idf file (the payload is checked for size, not decoded)."""
    if len(data) < _FIXED.size or data[:4] != MAGIC:
        raise CodingError("not an .idf file (bad magic bytes)")
    r = _Reader(data)
    _, version, mode, method, flags, width, height, crc = r.unpack("4sBBBBHHI")
    if version != FORMAT_VERSION:
        raise CodingError(f"unsupported .idf format version {version} (this idfzip reads "
                          f"version {FORMAT_VERSION})")
    if mode >= len(MODES) or method not in METHOD_NAMES or flags & ~(FLAG_ICC | FLAG_ALPHA):
        raise CodingError("corrupted .idf header")
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE) or width * height > MAX_PIXELS:
        raise CodingError(f"corrupted .idf header (image size {width}x{height})")
    c = Container(MODES[mode], method, width, height, crc)
    if flags & FLAG_ICC:
        c.icc = r.section()
    if method == METHOD_FLOW:
        (n,) = r.unpack("B")
        try:
            c.model_name = r.take(n).decode()
        except UnicodeDecodeError:
            raise CodingError("corrupted .idf header (model name)") from None
        c.model_id = r.take(MODEL_ID_BYTES)
        (c.tile,) = r.unpack("H")
        if not 1 <= c.tile <= MAX_TILE:
            raise CodingError(f"corrupted .idf header (tile size {c.tile})")
        tiles = -(-width // c.tile) * -(-height // c.tile)
        if 4 * tiles > len(data):
            raise CodingError("truncated .idf file")
        lengths = r.unpack(f"{tiles}I")
        c.streams = [r.take(n) for n in lengths]
        if flags & FLAG_ALPHA:
            c.alpha_png = r.section()
    else:
        c.payload = r.section()
    if r.pos != len(data):
        raise CodingError("corrupted .idf file (trailing bytes)")
    return c
