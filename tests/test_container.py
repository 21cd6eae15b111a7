"""The .idf container: parsing, ``describe``, and damaged or hostile files, which must always
end in a CodingError/ModelError and never in wrong pixels or another exception."""

import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from idfzip.api import CodingModel, compress, decompress, describe, tiles_of
from idfzip.container import (FLAG_ALPHA, FLAG_ICC, FORMAT_VERSION, MAGIC, MAX_PIXELS,
                              METHOD_FLOW, METHOD_PNG, METHOD_RAW, MODES, Container, parse)
from idfzip.entropy import CodingError
from idfzip.imageio import PixelLimitError
from idfzip.weights import ModelError

from .conftest import mid_grey, sharp_model

MODEL = CodingModel(sharp_model(), "tiny")
EXPECTED = (CodingError, ModelError)
ICC = b"fake-icc-profile" * 3



def build(kind: str):
    """(image, .idf bytes) of each storage method, with the optional sections present."""
    rng = np.random.default_rng(0)
    if kind == "flow":
        image = Image.fromarray(mid_grey(rng, 24, 24))
        image.info["icc_profile"] = ICC
    elif kind == "flow-alpha":
        image = Image.fromarray(mid_grey(rng, 20, 20))
        mask = np.full((20, 20), 255, np.uint8)
        mask[5:9] = 0
        image.putalpha(Image.fromarray(mask))
    elif kind == "raw":
        image = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
        image.info["icc_profile"] = ICC
    elif kind == "png":
        image = Image.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)).convert("P")
    else:
        raise AssertionError(kind)
    data = compress(image, MODEL, tile=16)
    assert describe(data)["method"] == kind.split("-")[0]
    return image, data


FILES = {kind: build(kind) for kind in ("flow", "flow-alpha", "raw", "png")}


def assert_refused_or_exact(data: bytes, original: Image.Image) -> bool:
    """Decoding damaged ``data`` raises an expected error or gives the exact original pixels.
    Returns True when it raised."""
    try:
        image = decompress(data, MODEL)
    except EXPECTED:
        return True
    except BaseException as err:  # any other type is a bug
        pytest.fail(f"{type(err).__name__}: {err}")
    assert image.mode == original.mode and image.size == original.size
    assert image.tobytes() == original.tobytes(), "damaged file decoded to wrong pixels"
    if image.mode == "P":
        assert image.getpalette() == original.getpalette()
    return False


# -- valid files ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(FILES))
def test_valid_files_parse_and_describe(kind):
    image, data = FILES[kind]
    info = describe(data)
    assert info["format_version"] == FORMAT_VERSION == data[4]
    assert (info["width"], info["height"], info["mode"]) == (image.width, image.height,
                                                              image.mode)
    assert info["file_bytes"] == len(data)
    crc = zlib.crc32(image.tobytes())
    if image.mode == "P":
        crc = zlib.crc32(bytes(image.getpalette()), crc)
    crc = zlib.crc32(image.info.get("icc_profile", b""), crc)
    assert info["crc32"] == f"{crc:08x}"
    assert info["icc_profile_bytes"] == len(image.info.get("icc_profile", b""))
    dims = image.width * image.height * len(image.getbands())
    assert info["bpd"] == pytest.approx(8 * len(data) / dims)
    if kind.startswith("flow"):
        assert info["model"] == "tiny" and info["model_id"] == MODEL.sha256[:8].hex()
        assert info["tile"] == 16 and info["tiles"] == tiles_of(data) == 4
        assert (info["alpha_bytes"] > 0) == (kind == "flow-alpha")
    else:
        assert "model" not in info and tiles_of(data) == 0
    assert decompress(data, MODEL).tobytes() == image.tobytes()


def test_container_serialises_and_parses_every_field():
    c = Container("RGBA", METHOD_FLOW, 20, 8, 0xDEADBEEF, b"icc!", "näme", bytes(range(8)), 8,
                  [b"abcd", b"", b"12345678"], b"alpha")
    data = c.to_bytes()
    assert data[:4] == MAGIC and data[7] == FLAG_ICC | FLAG_ALPHA
    back = parse(data)
    assert back == c
    raw = Container("I;16", METHOD_RAW, 3, 2, 7, None, payload=b"x" * 12)
    assert parse(raw.to_bytes()) == raw and raw.to_bytes()[7] == 0


def test_parser_rejects_malformed_headers_with_clear_messages():
    good = Container("RGB", METHOD_RAW, 2, 2, 0, payload=b"x" * 12).to_bytes()

    def patched(offset, value, fmt="B"):
        b = bytearray(good)
        struct.pack_into("<" + fmt, b, offset, value)
        return bytes(b)

    cases = [
        (good[:10], "not an .idf"),
        (b"PNG!" + good[4:], "not an .idf"),
        (patched(4, 2), "unsupported .idf format version 2"),
        (patched(5, len(MODES)), "corrupted"),
        (patched(6, 3), "corrupted"),
        (patched(7, 4), "corrupted"),
        (patched(8, 0, "H"), "image size 0x2"),
        (patched(10, 0, "H"), "image size 2x0"),
        (good + b"\x00", "trailing"),
        (good[:-1], "truncated"),
        (b"", "not an .idf"),
    ]
    for data, message in cases:
        with pytest.raises(CodingError, match=message):
            parse(data)
        with pytest.raises(CodingError):
            decompress(data, MODEL)


def test_flow_header_with_tile_zero_or_bad_name_is_refused():
    c = Container("RGB", METHOD_FLOW, 8, 8, 0, None, "tiny", MODEL.sha256, 8, [b"\0" * 4])
    data = bytearray(c.to_bytes())
    name_at = 16
    tile_at = name_at + 1 + 4 + 8
    zero_tile = bytearray(data)
    zero_tile[tile_at: tile_at + 2] = b"\0\0"
    with pytest.raises(CodingError, match="tile size 0"):
        parse(bytes(zero_tile))
    bad_name = bytearray(data)
    bad_name[name_at + 1] = 0xFF  # not UTF-8
    with pytest.raises(CodingError, match="model name"):
        parse(bytes(bad_name))


# -- damage ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(FILES))
def test_every_truncation_is_refused(kind):
    image, data = FILES[kind]
    for n in range(len(data)):
        with pytest.raises(EXPECTED):
            decompress(data[:n], MODEL)


@pytest.mark.parametrize("kind", sorted(FILES))
def test_appended_bytes_are_refused(kind):
    _, data = FILES[kind]
    for extra in (b"\0", b"\0\0\0\0", data):
        with pytest.raises(CodingError):
            decompress(data + extra, MODEL)


def flip_positions(data: bytes, header: int, samples: int, seed: int):
    """Every position in the first ``header`` bytes, then ``samples`` positions spread over the
    rest (always including the last byte)."""
    rng = np.random.default_rng(seed)
    rest = np.arange(header, len(data))
    picked = rng.choice(rest, min(samples, rest.size), replace=False) if rest.size else []
    return sorted(set(range(min(header, len(data)))) | set(map(int, picked)) | {len(data) - 1})


@pytest.mark.parametrize("kind", sorted(FILES))
def test_single_bit_and_byte_flips_never_give_wrong_pixels(kind):
    image, data = FILES[kind]
    header = 20 + (4 + len(ICC) if image.info.get("icc_profile") else 0)
    if kind.startswith("flow"):
        header += 1 + 4 + 32 + 2 + 4 * 4  # name, hash, tile, four tile lengths
    samples = 40 if kind.startswith("flow") else 120
    # flips that may go unnoticed: the ICC profile (outside the pixel checksum) and the model
    # name (the model is given explicitly here, and its weight hash is what is checked)
    harmless = set()
    if image.info.get("icc_profile"):
        harmless |= set(range(20, 20 + len(ICC)))
    if kind.startswith("flow"):
        name_at = 20 + len(ICC) if image.info.get("icc_profile") else 16
        harmless |= set(range(name_at + 1, name_at + 5))
    unnoticed = []
    positions = flip_positions(data, header, samples, seed=len(data))
    for i, pos in enumerate(positions):
        damaged = bytearray(data)
        damaged[pos] ^= 1 << (i % 8) if i % 3 else 0xFF
        if not assert_refused_or_exact(bytes(damaged), image):
            unnoticed.append(pos)
    # other flips that decode to the exact pixels touch bytes that carry no information (PNG
    # chunk CRCs Pillow skips, the IEND chunk, the unused tail of an rANS stream); none may be
    # in the fixed header (except the flags byte, whose alpha bit raw/PNG files ignore)
    assert not (set(unnoticed) - harmless) & (set(range(16)) - {7}), unnoticed
    assert len(set(unnoticed) - harmless) <= 0.1 * len(positions), unnoticed


def test_flipped_icc_profile_bytes_are_detected():
    """The CRC covers the ICC profile too: a damaged profile is an error, not a silent change."""
    _, data = FILES["raw"]
    damaged = bytearray(data)
    damaged[16 + 4] ^= 0x20
    with pytest.raises(CodingError, match="checksum"):
        decompress(bytes(damaged), MODEL)


def test_model_name_flip_needs_the_right_weights_anyway():
    image, data = FILES["flow"]
    damaged = bytearray(data)
    name_at = 16 + 4 + len(ICC)
    damaged[name_at + 1] ^= 0x01  # "tiny" -> "uiny"
    assert describe(bytes(damaged))["model"] == "uiny"
    assert decompress(bytes(damaged), MODEL).tobytes() == image.tobytes()
    with pytest.raises(ModelError, match="uiny"):
        decompress(bytes(damaged))  # no model given: the file's name cannot be resolved
    hash_flip = bytearray(data)
    hash_flip[name_at + 1 + 4] ^= 0x80
    with pytest.raises(ModelError, match="tiny"):
        decompress(bytes(hash_flip), MODEL)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(FILES)), edits=st.lists(
    st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=2, max_size=6))
def test_multiple_random_byte_changes_never_give_wrong_pixels(kind, edits):
    image, data = FILES[kind]
    damaged = bytearray(data)
    for pos, xor in edits:
        damaged[pos % len(data)] ^= xor
    if bytes(damaged) != data:
        assert_refused_or_exact(bytes(damaged), image)


# -- foreign and hostile input --------------------------------------------------------------

def test_random_bytes_are_refused():
    rng = np.random.default_rng(1)
    for n in (0, 1, 3, 4, 19, 20, 21, 64, 500):
        junk = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        for data in (junk, MAGIC + junk, MAGIC + bytes([FORMAT_VERSION]) + junk):
            with pytest.raises(CodingError):
                decompress(data, MODEL)
            with pytest.raises(CodingError):
                describe(data)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(mode=st.integers(0, len(MODES) - 1), method=st.sampled_from([0, 1, 2]),
       flags=st.integers(0, 3), width=st.integers(1, 300), height=st.integers(1, 300),
       body=st.binary(max_size=200))
def test_plausible_headers_with_random_bodies_are_refused(mode, method, flags, width, height,
                                                          body):
    data = struct.pack("<4sBBBBIII", MAGIC, FORMAT_VERSION, mode, method, flags, width, height,
                       0) + body
    with pytest.raises(EXPECTED):
        decompress(data, MODEL)


@pytest.mark.parametrize("make", [
    lambda: Container("RGB", METHOD_RAW, 65535, 65535, 0, payload=b"x" * 12),
    lambda: Container("RGB", METHOD_RAW, 16384, MAX_PIXELS // 16384, 0, payload=b"x" * 12),
    lambda: Container("RGBA", METHOD_PNG, 16384, 16384, 0,
                      payload=FILES["png"][1][20:]),
    lambda: Container("RGB", METHOD_FLOW, 16384, 16384, 0, None, "tiny", MODEL.sha256, 8,
                      [b"\0\0\0\1"]),
    lambda: Container("RGB", METHOD_FLOW, 65535, 4096, 0, None, "tiny", MODEL.sha256, 8,
                      [b"\0\0\0\1"]),
], ids=["65535x65535", "max-pixels-raw", "max-pixels-png", "many-tiles", "many-tiles-wide"])
def test_hostile_sizes_fail_fast(make):
    start = time.perf_counter()
    data = make().to_bytes()
    with pytest.raises((CodingError, PixelLimitError)):  # over the pixel limit: refused first
        decompress(data, MODEL)
    assert time.perf_counter() - start < 2.0
