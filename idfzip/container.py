"""The .idf container: header, payload sections, and their bounded, validated parsing.

Layout (all integers little-endian)::

    magic    4  b"IDFZ"
    version  1  FORMAT_VERSION (2; version 1 files are still read)
    mode     1  index into MODES (the Pillow mode given back on decoding)
    method   1  METHOD_FLOW, METHOD_PNG or METHOD_RAW
    flags    1  FLAG_ICC | FLAG_ALPHA
    width    2
    height   2
    crc32    4  see below
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

The *header* is everything before the streams (flow) or the payload bytes (PNG, raw), so it
includes the ICC profile, the model, the tile size, the stream lengths and the payload length.
``crc32`` is the CRC-32 of the decoded image's pixel bytes, then its palette (mode P), then,
in version 2, the header with the crc32 field read as zero: every field that shapes the
decoded image is covered (version 1 covered the ICC profile instead of the header, so a
changed size or mode could decode, without error, to a different image).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from .entropy import CodingError
from .limits import MAX_TILE

MAGIC = b"IDFZ"
FORMAT_VERSION = 2  # what is written
READ_VERSIONS = (1, 2)  # what is read
MODES = ("RGB", "L", "RGBA", "LA", "P", "1", "I;16")
METHOD_FLOW, METHOD_PNG, METHOD_RAW = 0, 1, 2
METHOD_NAMES = {METHOD_FLOW: "flow", METHOD_PNG: "png", METHOD_RAW: "raw"}
FLAG_ICC, FLAG_ALPHA = 1, 2
MAX_SIDE = 65535
MAX_PIXELS = 1 << 28  # 268 megapixels: refuse headers that would need more memory
MIN_TILE = 8
FLOW_CHANNELS = {"RGB": 3, "RGBA": 3, "L": 1, "LA": 1}  # the modes the flow codes
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
    version: int = FORMAT_VERSION

    def header(self, crc32: int | None = None) -> bytes:
        """The header's bytes (see the module docstring), with ``crc32`` in its field (by
        default the container's own)."""
        flags = (FLAG_ICC if self.icc else 0) | (FLAG_ALPHA if self.alpha_png is not None else 0)
        out = [_FIXED.pack(MAGIC, self.version, MODES.index(self.mode), self.method, flags,
                           self.width, self.height, self.crc32 if crc32 is None else crc32)]
        if self.icc:
            out.append(_section(self.icc))
        if self.method == METHOD_FLOW:
            name = self.model_name.encode()
            out += [bytes([len(name)]), name, self.model_id[:MODEL_ID_BYTES],
                    struct.pack("<H", self.tile),
                    struct.pack(f"<{len(self.streams)}I", *map(len, self.streams))]
        else:
            out.append(struct.pack("<I", len(self.payload)))
        return b"".join(out)

    def to_bytes(self) -> bytes:
        if len(self.model_name.encode()) > 255:
            raise ValueError("model name longer than 255 bytes")
        body = ([*self.streams] + ([_section(self.alpha_png)] if self.alpha_png is not None
                                   else [])
                if self.method == METHOD_FLOW else [self.payload])
        return b"".join([self.header(), *body])

    def checksum(self, pixel_crc: int) -> int:
        """The crc32 field's value for an image whose pixel bytes and palette have CRC-32
        ``pixel_crc``: continued over the header (version 2) or the ICC profile (version 1)."""
        if self.version == 1:
            return zlib.crc32(self.icc or b"", pixel_crc)
        return zlib.crc32(self.header(crc32=0), pixel_crc)


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


def raw_size(mode: str, width: int, height: int) -> int:
    """Length of ``Image.tobytes()`` for an image of this mode and size."""
    if mode == "1":
        return (width + 7) // 8 * height
    return width * height * {"L": 1, "P": 1, "LA": 2, "I;16": 2, "RGB": 3, "RGBA": 4}[mode]


def parse(data: bytes) -> Container:
    """Parse and validate a whole .idf file (the payload is checked for size, not decoded).

    Everything a valid encoder never writes is refused here, before any decoding: unknown
    versions, modes, methods or flags, sizes out of range, a method the mode cannot have, an
    alpha flag that does not fit the mode, an empty ICC profile, a tile side out of range, a
    raw payload of the wrong size, missing or trailing bytes."""
    if len(data) < _FIXED.size or data[:4] != MAGIC:
        raise CodingError("not an .idf file (bad magic bytes)")
    r = _Reader(data)
    _, version, mode, method, flags, width, height, crc = r.unpack("4sBBBBHHI")
    if version not in READ_VERSIONS:
        raise CodingError(f"unsupported .idf format version {version} (this idfzip reads "
                          f"versions {', '.join(map(str, READ_VERSIONS))})")
    if mode >= len(MODES) or method not in METHOD_NAMES or flags & ~(FLAG_ICC | FLAG_ALPHA):
        raise CodingError("corrupted .idf header")
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE) or width * height > MAX_PIXELS:
        raise CodingError(f"corrupted .idf header (image size {width}x{height})")
    c = Container(MODES[mode], method, width, height, crc, version=version)
    flow_mode = c.mode in FLOW_CHANNELS
    has_alpha = c.mode in ("RGBA", "LA")
    if ((method == METHOD_FLOW and not flow_mode) or (method == METHOD_RAW and c.mode == "P")
            or bool(flags & FLAG_ALPHA) != (method == METHOD_FLOW and has_alpha)):
        raise CodingError(f"corrupted .idf header (mode {c.mode} with method "
                          f"{METHOD_NAMES[method]} and flags {flags})")
    if flags & FLAG_ICC:
        c.icc = r.section()
        if not c.icc:
            raise CodingError("corrupted .idf header (empty ICC profile)")
    if method == METHOD_FLOW:
        (n,) = r.unpack("B")
        try:
            c.model_name = r.take(n).decode()
        except UnicodeDecodeError:
            raise CodingError("corrupted .idf header (model name)") from None
        c.model_id = r.take(MODEL_ID_BYTES)
        (c.tile,) = r.unpack("H")
        if not MIN_TILE <= c.tile <= MAX_TILE:
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
        if method == METHOD_RAW and len(c.payload) != raw_size(c.mode, width, height):
            raise CodingError("corrupted .idf file (raw payload size does not match the "
                              "header)")
    if r.pos != len(data):
        raise CodingError("corrupted .idf file (trailing bytes)")
    return c
