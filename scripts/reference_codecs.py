"""The classic lossless codecs the benchmarks compare idfzip with, each as an (encode, decode)
pair of functions on (H, W, 3) uint8 arrays, and a timed, round-trip-checked runner."""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image


def pil_codec(fmt, **params):
    def encode(arr):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt, **params)
        return buf.getvalue()

    def decode(data):
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return encode, decode


def imagecodecs_codecs(threads: int = 1):
    """JPEG-XL (efforts 7 and 9, ``threads`` threads), JPEG 2000 and JPEG-LS where the optional
    imagecodecs package has them; returns (codecs, a note on what is missing)."""
    try:
        import imagecodecs as ic
    except ImportError:
        return {}, ("imagecodecs not installed (pip install -e '.[bench]'): JPEG-XL, JPEG 2000, "
                    "JPEG-LS skipped")
    codecs = {}
    if ic.JPEGXL.available:
        for effort in (7, 9):
            codecs[f"JPEG-XL e{effort}"] = (
                lambda a, e=effort: ic.jpegxl_encode(a, lossless=True, effort=e,
                                                     numthreads=threads),
                lambda d: ic.jpegxl_decode(d, numthreads=threads))
    if ic.JPEG2K.available:
        codecs["JPEG 2000"] = (lambda a: ic.jpeg2k_encode(a, level=0, reversible=True),
                               ic.jpeg2k_decode)
    if ic.JPEGLS.available:
        codecs["JPEG-LS"] = (lambda a: ic.jpegls_encode(a, level=0), ic.jpegls_decode)
    return codecs, ""


def run_codec(images, encode, decode):
    """Total bits, encode seconds and decode seconds over ``images``; fails on any mismatch."""
    bits, t_enc, t_dec = 0.0, 0.0, 0.0
    for arr in images:
        t = time.perf_counter()
        data = encode(arr)
        t_enc += time.perf_counter() - t
        t = time.perf_counter()
        back = decode(data)
        t_dec += time.perf_counter() - t
        if not np.array_equal(np.asarray(back), arr):
            raise SystemExit("round trip FAILED")
        bits += 8 * len(data)
    return bits, t_enc, t_dec
