"""Reading images into the (C, H, W) uint8 arrays the model works on, with one-line errors."""

from __future__ import annotations

import contextlib
import io
import re
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# What a folder of images is, for compress -r and for training data alike.
IMAGE_SUFFIXES = (".png", ".bmp", ".ppm", ".pgm", ".pnm", ".pbm", ".tif", ".tiff", ".webp",
                  ".gif", ".tga", ".jpg", ".jpeg")


class ImageReadError(ValueError):
    """An input could not be read as an image; the message names the file and the problem."""


class PixelLimitError(ValueError):
    """An image has more pixels than the limit (``PIL.Image.MAX_IMAGE_PIXELS``)."""


def read_image(path: str | Path, channels: int = 3) -> np.ndarray:
    """Load an image file as a (channels, H, W) uint8 array (RGB for 3, grey for 1)."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if channels == 3 else "L")
            arr = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a directory") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageReadError(f"{path}: not a readable image ({err})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy()


def to_pil(image: np.ndarray) -> Image.Image:
    """(C, H, W) uint8 -> PIL image (RGB or L)."""
    image = np.asarray(image, dtype=np.uint8)
    if image.shape[0] == 1:
        return Image.fromarray(image[0], "L")
    return Image.fromarray(image.transpose(1, 2, 0), "RGB")


def image_files(folder: str | Path) -> list[Path]:
    """Image files directly or recursively below ``folder``, in a stable order."""
    return sorted(p for p in Path(folder).rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def image_grid(images: np.ndarray, columns: int | None = None, gap: int = 2) -> np.ndarray:
    """Tile (N, C, H, W) uint8 images into one (C, H', W') image with white gaps."""
    n, c, h, w = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    grid = np.full((c, rows * (h + gap) - gap, columns * (w + gap) - gap), 255, np.uint8)
    for i, im in enumerate(images):
        r, col = divmod(i, columns)
        grid[:, r * (h + gap): r * (h + gap) + h, col * (w + gap): col * (w + gap) + w] = im
    return grid


# -- the pixel limit ---------------------------------------------------------------------------
#
# One limit for every image idfzip codes, whatever the method: Pillow's
# ``PIL.Image.MAX_IMAGE_PIXELS`` (89,478,485 pixels by default; None lifts it, up to the
# format's 2**28). compress() refuses larger images and decompress() refuses larger headers
# before decoding anything (see api.decompress); the command line sets it with --max-pixels.

def check_pixels(width: int, height: int) -> None:
    """Refuse an image of more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise PixelLimitError(f"image too large: {width}x{height} is {width * height:,} pixels, "
                              f"over the limit of {int(limit):,} (raise it with --max-pixels "
                              "or PIL.Image.MAX_IMAGE_PIXELS)")


@contextlib.contextmanager
def pixel_limit(limit: int | None):
    """Run with ``PIL.Image.MAX_IMAGE_PIXELS`` set to ``limit`` (0: no limit; None: as it is)."""
    if limit is None:
        yield
        return
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit or None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


# -- what goes in: the source's real bit depth, lossy sources ----------------------------------

# Modes that hold 8 bits per channel: a source with more bits opened in one of them has been cut.
EIGHT_BIT_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK",
                   "YCbCr", "LAB", "HSV"}
_RAWMODE_BITS = re.compile(r"^([A-Za-z]+);(\d+)([BLN]?)")


def open_image(data: bytes, name: str) -> Image.Image:
    """Open and load image bytes for coding: refuse (one line, before decoding the pixels)
    images over the pixel limit and sources with more bits per channel than their Pillow mode
    holds (a 16-bit RGB PNG or TIFF opens as 8-bit RGB)."""
    with warnings.catch_warnings():  # the pixel limit is checked here, in one line
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise PixelLimitError(f"{name}: image too large: more than twice the limit of "
                                  f"{int(Image.MAX_IMAGE_PIXELS):,} pixels (raise it with "
                                  "--max-pixels or PIL.Image.MAX_IMAGE_PIXELS)") from None
        except Exception as err:  # Pillow raises many types for what is not an image
            raise ImageReadError(f"{name}: not a readable image ({type(err).__name__})") from None
        try:
            check_pixels(image.width, image.height)
            check_depth(image, data)
        except ValueError as err:
            raise type(err)(f"{name}: {err}") from None
        scale_grey_key(image)
        try:
            image.load()
        except Exception as err:
            raise ImageReadError(f"{name}: not a readable image ({type(err).__name__})") from None
    return image


def check_depth(image: Image.Image, data: bytes | None = None) -> None:
    """Refuse an image whose source has more bits per channel than its mode holds (only
    8 bits per channel, or 16 for grey as mode I;16, are stored exactly)."""
    if image.mode not in EIGHT_BIT_MODES:
        return
    bits, what = source_bits(image, data)
    if bits > 8:
        raise ImageReadError(f"{bits} bits per channel ({what}): idfzip stores more than 8 "
                             "bits only for grey images without alpha (mode I;16), and will "
                             "not cut the image to 8 bits")


def source_bits(image: Image.Image, data: bytes | None = None) -> tuple[int, str]:
    """The most bits per channel of an image's source as far as it can be read, and what it
    is: Pillow's raw modes (before loading), TIFF BitsPerSample, PNM maxval, the JPEG 2000
    SIZ marker and the AVIF pixi box (the last two need the file's bytes)."""
    fmt = image.format or "image"
    best, what = 8, fmt
    for decoder, args, rawmode in _tiles(image):
        bits = _rawmode_bits(rawmode)
        if decoder in ("ppm", "ppm_plain") and isinstance(args, tuple) and len(args) > 1 \
                and isinstance(args[1], int):
            bits = max(bits, int(args[1]).bit_length())  # maxval 65535: 16 bits
        if bits > best:
            best, what = bits, f"{bits}-bit {rawmode.split(';')[0]} {fmt}"
    tags = getattr(image, "tag_v2", None)
    if tags is not None:  # TIFF: kept after loading too
        per_sample = tags.get(258)
        per_sample = per_sample if isinstance(per_sample, tuple) else (per_sample or 8,)
        if max(per_sample) > best:
            best, what = max(per_sample), f"{max(per_sample)}-bit TIFF"
    if data is not None:
        bits = {"JPEG2000": _jpeg2000_bits, "AVIF": _avif_bits}.get(image.format,
                                                                    lambda _: 0)(data)
        if bits > best:
            best, what = bits, f"{bits}-bit {fmt}"
    return best, what


def _tiles(image: Image.Image) -> list[tuple[str, object, str]]:
    """(decoder, decoder arguments, raw mode) of each of an image's tiles, known only until
    it is loaded; the raw mode is "" where the arguments name none."""
    out = []
    for tile in getattr(image, "tile", None) or []:
        args = tile.args if hasattr(tile, "args") else tile[3]
        rawmode = args if isinstance(args, str) else \
            args[0] if isinstance(args, tuple) and args and isinstance(args[0], str) else ""
        out.append((tile[0], args, rawmode))
    return out


def scale_grey_key(image: Image.Image) -> None:
    """Give a 2- or 4-bit grey PNG's colour key the 8-bit scale of its pixels (call before
    loading). Pillow opens such a PNG as mode L with the samples scaled to 0..255 (2-bit 3
    reads as 255) but keeps the tRNS value unscaled (3), so written back as an 8-bit PNG the
    key would mark other pixels than in the source (here none: the white ones turn opaque)."""
    key = image.info.get("transparency")
    if image.format != "PNG" or image.mode != "L" or not isinstance(key, int):
        return
    for _, _, rawmode in _tiles(image):
        m = re.fullmatch(r"L;([124])", rawmode)
        if m:
            image.info["transparency"] = key * (255 // ((1 << int(m.group(1))) - 1))
            return


def _rawmode_bits(rawmode: str) -> int:
    """Bits per sample of a Pillow raw mode: 'RGB;16B', 'LA;16B', 'L;16' are 16; 'BGR;16' and
    'RGB;16' (5-6-5) or 'BGR;24' (8-bit samples, 24 bits per pixel) are 8."""
    m = _RAWMODE_BITS.match(rawmode)
    if not m:
        return 8
    base, bits, order = m.group(1), int(m.group(2)), m.group(3)
    return bits if bits > 8 and (order or base in ("L", "LA", "I", "F")) else 8


def _jpeg2000_bits(data: bytes) -> int:
    """Bits per component from the SIZ marker (SOC FF4F, then SIZ FF51) of a codestream."""
    at = data.find(b"\xff\x4f\xff\x51")
    if at < 0 or len(data) < at + 42:
        return 0
    (components,) = struct.unpack_from(">H", data, at + 40)
    ssiz = data[at + 42: at + 42 + 3 * components: 3]
    return max(((s & 0x7F) + 1 for s in ssiz), default=0)


def _avif_bits(data: bytes) -> int:
    """Bits per channel from the first 'pixi' box (ISO/IEC 23008-12) of an AVIF file."""
    at = data.find(b"pixi")
    if at < 0 or len(data) < at + 9:
        return 0
    channels = data[at + 8]
    return max(data[at + 9: at + 9 + channels], default=0)


def lossy_source(image: Image.Image, data: bytes) -> str | None:
    """'JPEG', 'WebP' or 'AVIF' when the input was coded lossily (its pixels then carry the
    coder's noise, which costs a lossless coder many bits), else None."""
    if image.format in ("JPEG", "MPO"):
        return "JPEG"
    if image.format == "AVIF":
        return "AVIF"
    if image.format == "WEBP" and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        pos = 12
        while pos + 8 <= len(data):  # the chunks: VP8 (lossy) or VP8L (lossless) holds the image
            fourcc, size = data[pos: pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
            if fourcc in (b"VP8 ", b"VP8L"):
                return "WebP" if fourcc == b"VP8 " else None
            pos += 8 + size + (size & 1)
    return None


def exif_orientation(image: Image.Image) -> int:
    """An image's EXIF orientation (1: as stored; 2-8: viewers turn or flip it when they show
    it), which idfzip does not store; 1 when there is none or it cannot be read."""
    try:
        value = int(image.getexif().get(0x0112, 1))
    except Exception:  # Pillow raises many types for damaged EXIF data
        return 1
    return value if 2 <= value <= 8 else 1


# -- what comes out: writing a decoded image in any format, exactly or not at all ---------------

# Formats that cannot hold the pixels exactly, whatever the options.
LOSSY_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG (MPO)", "AVIF": "AVIF"}
# Options that make a format lossless (the others are written with Pillow's defaults, which
# are lossless for them); whatever is written is read back and compared before it is kept.
LOSSLESS_OPTIONS = {"WEBP": {"lossless": True, "exact": True},  # exact: RGB under alpha 0 too
                    "GIF": {"optimize": False},  # optimize renumbers the palette
                    "JPEG2000": {"irreversible": False}}


def output_format(path: str) -> str:
    """The Pillow format for an output file's extension; refuses (OSError, before anything is
    decoded) extensions Pillow does not know, cannot write or read back, and lossy formats."""
    ext = Path(path).suffix.lower()
    Image.init()
    fmt = Image.EXTENSION.get(ext)
    if fmt is None:
        raise OSError(f"{path}: unknown image format {ext!r} (use .png, .tiff, .webp, ...)")
    if fmt in LOSSY_FORMATS:
        raise OSError(f"{path}: {LOSSY_FORMATS[fmt]} is lossy and would change the pixels; "
                      "use a lossless format (.png, .tiff, .webp, ...)")
    if fmt not in Image.SAVE:
        raise OSError(f"{path}: Pillow cannot write {fmt} files; use .png, .tiff, .webp, ...")
    if fmt not in Image.OPEN:
        raise OSError(f"{path}: Pillow cannot read {fmt} files back to check that they hold "
                      "the image exactly; use .png, .tiff, .webp, ...")
    return fmt


def encode_exact(image: Image.Image, fmt: str, path: str = "-") -> bytes:
    """``image`` as a ``fmt`` file, losslessly: written with lossless options, read back and
    compared (pixels, mode, palette, transparency, ICC profile); OSError naming what the
    format would change instead of a file that does not hold the image."""
    params = dict(LOSSLESS_OPTIONS.get(fmt, {}))
    if image.info.get("icc_profile"):
        params["icc_profile"] = image.info["icc_profile"]
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.save(buf, format=fmt, **params)
            with Image.open(io.BytesIO(buf.getvalue())) as back:
                back.load()
                problem = difference(image, back)
    except Exception as err:  # Pillow raises many types for modes a format does not take
        problem = f"cannot write or read it back: {type(err).__name__}: {err}"
    if problem:
        raise OSError(f"{path}: {fmt} cannot hold this {image.mode} image exactly ({problem}); "
                      "use .png")
    return buf.getvalue()


def difference(image: Image.Image, back: Image.Image) -> str | None:
    """What differs between an image and the same image read back from a file, or None."""
    if back.mode != image.mode:
        return f"it would come back as mode {back.mode}"
    if back.size != image.size or back.tobytes() != image.tobytes():
        return "the pixel values would change"
    if getattr(back, "n_frames", 1) != 1:
        return f"it would come back with {back.n_frames} frames"
    if image.mode == "P":
        palette = image.getpalette() or []
        if (back.getpalette() or [])[: len(palette)] != palette:
            return "the palette would change"
    entries = len(image.getpalette() or []) // 3 if image.mode == "P" else None
    if transparency(back, entries) != transparency(image):  # (a palette may come back padded)
        return ("it would drop the transparency" if transparency(back, entries) is None
                else "the transparency would change")
    if (back.info.get("icc_profile") or None) != (image.info.get("icc_profile") or None):
        return "the ICC profile would be dropped"
    return None


def transparency(image: Image.Image, entries: int | None = None):
    """An image's colour-key or palette transparency in one form, or None: the grey value
    (modes 1, L, I;16, I), the (R, G, B) colour, or for P the alpha of every palette entry
    (of the first ``entries`` if given; None when all are opaque). Modes with an alpha channel
    have none."""
    value = image.info.get("transparency")
    if value is None or image.mode in ("LA", "RGBA", "PA", "La", "RGBa"):
        return None
    if image.mode == "P":
        entries = len(image.getpalette() or []) // 3 if entries is None else entries
        alpha = bytearray(b"\xff" * entries)
        if isinstance(value, int):
            if value < entries:
                alpha[value] = 0
        else:
            alpha[: len(value)] = bytes(value)[:entries]
        return bytes(alpha) if alpha.count(255) != entries else None
    if isinstance(value, (tuple, list)):
        return tuple(int(v) for v in value)
    return int(value) if not isinstance(value, (bytes, bytearray)) else bytes(value)
