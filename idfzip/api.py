"""``compress(image) -> bytes`` and ``decompress(data) -> PIL.Image``.

RGB and L images go through a flow model (RGBA and LA: the colour or grey part through the
flow, alpha as PNG); every mode can also be stored as PNG or as raw bytes, and the smallest of
these is written. So no image grows by more than the header, and every mode comes back exactly
as it went in: pixels, mode, palette, colour-key or palette transparency (images with a
colour key are stored as PNG, which keeps it) and ICC profile. What cannot come back exactly is
refused: sources with more bits per channel than their mode holds (16-bit RGB PNG or TIFF),
modes other than ``MODES``, and images over the pixel limit (``PIL.Image.MAX_IMAGE_PIXELS``).
"""

from __future__ import annotations

import io
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from .codec import Progress, decode_image, encode_image, short_streams, tile_grid
from .container import (FLOW_CHANNELS, MAX_PIXELS, MAX_SIDE, MAX_TILE, METHOD_FLOW,
                        METHOD_NAMES, METHOD_PNG, METHOD_RAW, MIN_TILE, MODEL_ID_BYTES, MODES,
                        Container, parse)
from .entropy import CodingError
from .imageio import check_depth, check_pixels, open_image, transparency
from .model import IntegerDiscreteFlow
from .weights import ModelError
from .zoo import DEFAULT_MODELS, SHIPPED, CodingModel, coding_model

DEFAULT_TILE = 512
DEFAULT_BATCH = 2
FLOW_MODES = FLOW_CHANNELS


def _resolve(model, device: str = "cpu", model_id: bytes | None = None) -> CodingModel:
    if isinstance(model, CodingModel):
        return model
    if isinstance(model, IntegerDiscreteFlow):
        return CodingModel(model, getattr(model, "name", "custom"))
    return coding_model(str(model), device, model_id)


def _flow_model(mode: str, model, device: str) -> CodingModel | None:
    """The model for an image of this mode: the one asked for if its channels fit, else the
    shipped default for grey or colour; None when no model fits (the image is then stored)."""
    channels = FLOW_MODES[mode]
    if model is not None:
        coder = _resolve(model, device)
        if coder.channels == channels:
            return coder
    default = DEFAULT_MODELS[channels]
    return coding_model(default, device) if default in SHIPPED else None


CHECKSUM_BYTES = 1 << 24  # pixel bytes per slice: no whole copy of a large image


def pixel_checksum(image: Image.Image) -> int:
    """CRC-32 of the pixels (the bytes of ``image.tobytes()``) and the palette; a file's crc32
    field continues it over the header (:meth:`idfzip.container.Container.checksum`)."""
    row_bytes = max(1, len(image.crop((0, 0, image.width, 1)).tobytes()))
    rows = max(1, CHECKSUM_BYTES // row_bytes)
    crc = 0
    for top in range(0, image.height, rows):
        box = (0, top, image.width, min(image.height, top + rows))
        crc = zlib.crc32(image.tobytes() if rows >= image.height else image.crop(box).tobytes(),
                         crc)
    if image.mode == "P":
        crc = zlib.crc32(bytes(image.getpalette() or []), crc)
    return crc


def _sealed(c: Container, pixel_crc: int) -> bytes:
    """The file of ``c`` with its crc32 field set."""
    c.crc32 = c.checksum(pixel_crc)
    return c.to_bytes()


def _png(image: Image.Image, level: int = 9) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=level, icc_profile=None)  # ICC: in the header
    return buf.getvalue()


# PNG at zlib level 9 is within ~10% of level 1 on photos (either may be smaller); when a fast
# PNG is larger than another candidate by more than this factor, the slow one is not made.
PNG_LEVEL_GAIN = 0.85


def _as_image(image) -> Image.Image:
    if isinstance(image, Image.Image):
        check_depth(image)  # what it can see: the raw modes until it is loaded, TIFF tags
        return _single_frame(image)
    if isinstance(image, (str, Path)):
        return _single_frame(open_image(Path(image).read_bytes(), str(image)))
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
        raise ValueError("arrays must be uint8 (H, W) or (H, W, C)")
    return Image.fromarray(arr)


def _single_frame(image: Image.Image) -> Image.Image:
    """An .idf holds one image: coding an animation's first frame would lose the others."""
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        raise ValueError(f"image has {frames} frames (animation or multi-page file); only "
                         "single-frame images are supported")
    sizes = image.info.get("sizes") if image.format in ("ICO", "ICNS") else None
    if sizes and len(sizes) > 1:  # Pillow opens the largest and shows no frames for the rest
        raise ValueError(f"{image.format} file holds {len(sizes)} images (sizes or "
                         "resolutions); only single-image files are supported")
    return image


def _fallback(image: Image.Image, crc: int, icc: bytes | None,
              to_beat: int | None = None) -> bytes:
    """The smaller of PNG and raw pixel bytes (a sealed file; ``crc`` is the image's
    :func:`pixel_checksum`). Given ``to_beat``, the size another candidate reaches, a fast PNG
    is made first, and the slow level-9 one only if the fast one comes close to ``to_beat``."""
    key = transparency(image)
    # a palette, or a colour key (tRNS of 1, L, I;16 and RGB images), needs PNG
    raw = b"" if image.mode == "P" or key is not None else image.tobytes()
    if to_beat is None:
        png = _png(image)
    else:
        png = _png(image, level=1)
        if PNG_LEVEL_GAIN * len(png) < to_beat:
            png = min(png, _png(image), key=len)
    if not raw:
        back = _open_png(png, image.mode, image.size)
        if pixel_checksum(back) != crc:
            raise ValueError("cannot store this palette image losslessly (PNG changes its "
                             "pixels or palette: empty palette, or pixel values beyond the "
                             "palette)")
        if transparency(back) != key:
            raise ValueError(f"cannot store this {image.mode} image's transparency "
                             f"{image.info.get('transparency')!r} losslessly (PNG changes it)")
    method, payload = (METHOD_RAW, raw) if raw and len(raw) <= len(png) else (METHOD_PNG, png)
    return _sealed(Container(image.mode, method, image.width, image.height, 0, icc,
                             payload=payload), crc)


def compress(image, model=None, tile: int = DEFAULT_TILE, batch_size: int = DEFAULT_BATCH,
             progress: Progress | None = None, device: str = "cpu") -> bytes:
    """Losslessly compress a PIL image, image path or uint8 array into .idf bytes.

    ``model`` (a name, path or model) is used for images whose channels it fits; other RGB and
    grey images use the shipped default for their kind."""
    image = _as_image(image)
    if image.mode not in MODES:
        raise ValueError(f"unsupported image mode {image.mode!r} (supported: {', '.join(MODES)})")
    if image.width > MAX_SIDE or image.height > MAX_SIDE or image.width * image.height > MAX_PIXELS:
        raise ValueError(f"image too large ({image.width}x{image.height})")
    check_pixels(image.width, image.height)
    if not MIN_TILE <= tile <= MAX_TILE:
        raise ValueError(f"tile size must be between {MIN_TILE} and {MAX_TILE}")
    icc = image.info.get("icc_profile") or None
    crc = pixel_checksum(image)
    keyed = image.mode != "P" and transparency(image) is not None  # the flow has no colour key
    coder = _flow_model(image.mode, model, device) \
        if image.mode in FLOW_MODES and not keyed else None
    if coder is None:
        return _fallback(image, crc, icc)
    pixels = np.asarray(image.convert("RGB" if coder.channels == 3 else "L"))
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    streams = encode_image(coder.codec, np.ascontiguousarray(pixels), tile, batch_size, progress)
    grid = tile_grid(image.height, image.width, tile)
    if short_streams(streams, grid, coder.channels, coder.model.config.block):
        # the decoder would refuse a stream this short as damaged (see idfzip.limits); no
        # image of any use codes this well, but one that does is stored instead
        return _fallback(image, crc, icc)
    alpha = _png(image.getchannel("A")) if image.mode in ("RGBA", "LA") else None
    flow = _sealed(Container(image.mode, METHOD_FLOW, image.width, image.height, 0, icc,
                             coder.name, coder.sha256[:MODEL_ID_BYTES], tile, streams, alpha),
                   crc)
    stored_bytes = _fallback(image, crc, icc, to_beat=len(flow))
    return flow if len(flow) <= len(stored_bytes) else stored_bytes


def decompress(data: bytes, model=None, batch_size: int = DEFAULT_BATCH,
               progress: Progress | None = None, device: str = "cpu") -> Image.Image:
    """Decode .idf bytes to the exact original PIL image (same mode, ICC profile kept).

    A flow-coded file is decoded by the shipped model it names (the release with its weight
    id). ``model`` (a name, a path of a model file or a model) overrides that; either way its
    weight hash must match the one the file records. A file never makes idfzip open a path:
    a model that is not shipped must be given here.
    """
    c = parse(data)
    check_pixels(c.width, c.height)  # the one pixel limit, from the header, before decoding
    if c.method == METHOD_RAW:
        image = Image.frombytes(c.mode, (c.width, c.height), c.payload)
    elif c.method == METHOD_PNG:
        image = _open_png(c.payload, c.mode, (c.width, c.height))
    else:
        image = _decode_flow(c, model, batch_size, progress, device)
    if c.checksum(pixel_checksum(image)) != c.crc32:
        raise CodingError("checksum mismatch: the .idf file is damaged")
    if c.icc:
        image.info["icc_profile"] = c.icc
    return image


def _open_png(payload: bytes, mode: str, size) -> Image.Image:
    """A PNG payload, checked against the header before its pixels are decoded."""
    with warnings.catch_warnings():  # the header is within the pixel limit; a PNG must match it
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(payload), formats=["PNG"])
        except Exception as err:  # Pillow raises many types for damaged PNG data
            raise CodingError(f"damaged .idf payload ({type(err).__name__})") from None
    with im:
        if im.mode != mode or im.size != size:
            raise CodingError("damaged .idf payload (image does not match the header)")
        try:
            im.load()
        except Exception as err:
            raise CodingError(f"damaged .idf payload ({type(err).__name__})") from None
    return im


def _file_model(c: Container, model, device: str) -> CodingModel:
    """The model that decodes ``c``: ``model`` if given, else the shipped model the file
    names; a name in a file is looked up among the shipped models only, never as a path."""
    needs = f"model {c.model_name!r} (weights {c.model_id.hex()})"
    if model is None:
        if c.model_name not in SHIPPED:
            raise ModelError(f"this file was made with {needs}, which idfzip does not ship; "
                             "decode it with --model PATH, the model file that made it")
        return coding_model(c.model_name, device, c.model_id)
    given = model if isinstance(model, str) else getattr(model, "name", "custom")
    try:
        return _resolve(model, device, c.model_id)
    except ModelError as err:
        problem = str(err).removeprefix(f"{given}: ")
        raise ModelError(f"cannot use --model {given!r} ({problem}); this file needs "
                         f"{needs}") from None


def _decode_flow(c: Container, model, batch_size: int, progress, device) -> Image.Image:
    coder = _file_model(c, model, device)
    if coder.sha256[:MODEL_ID_BYTES] != c.model_id:
        given = f"--model {model!r}" if isinstance(model, str) else repr(coder.name)
        hint = ("; it comes from a release of that model this version does not ship: "
                "decode it with the idfzip version that made it, or pass --model with those "
                "weights" if model is None or model == c.model_name else "")
        raise ModelError(f"this file was made with model {c.model_name!r} "
                         f"(weights {c.model_id.hex()}), not with "
                         f"{given} (weights {coder.sha256[:MODEL_ID_BYTES].hex()}){hint}")
    channels = FLOW_MODES[c.mode]
    if channels != coder.channels:
        raise CodingError("corrupted .idf header (mode does not match the model)")
    try:
        pixels = decode_image(coder.codec, c.streams, channels, c.height, c.width, c.tile,
                              batch_size, progress)
    except CodingError:
        raise
    except BaseException as err:  # constriction signals bad streams with a Rust panic
        if isinstance(err, (KeyboardInterrupt, SystemExit, MemoryError)):
            raise
        raise CodingError(f"damaged .idf payload ({type(err).__name__})") from None
    base = Image.fromarray(pixels[0] if channels == 1 else pixels.transpose(1, 2, 0))
    if c.alpha_png is None:
        return base
    alpha = _open_png(c.alpha_png, "L", (c.width, c.height))
    base.putalpha(alpha)
    return base


def tiles_of(data: bytes) -> int:
    """Number of flow tiles in a file (for progress bars)."""
    c = parse(data)
    return len(tile_grid(c.height, c.width, c.tile)) if c.method == METHOD_FLOW else 0


def describe(data: bytes) -> dict:
    """The header of an .idf file as a dict, for ``idfzip info``."""
    c = parse(data)
    info = {"format_version": c.version, "mode": c.mode, "width": c.width, "height": c.height,
            "method": METHOD_NAMES[c.method], "crc32": f"{c.crc32:08x}",
            "icc_profile_bytes": len(c.icc or b""), "file_bytes": len(data),
            "bpd": 8 * len(data) / (c.width * c.height * len(Image.new(c.mode, (1, 1)).getbands()))}
    if c.method == METHOD_FLOW:
        info.update(model=c.model_name, model_id=c.model_id.hex(), tile=c.tile,
                    tiles=len(c.streams), alpha_bytes=len(c.alpha_png or b""))
    return info

