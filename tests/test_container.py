"""The .idf container: parsing, ``describe``, and damaged or hostile files, which must always
end in a CodingError/ModelError and never in wrong pixels or another exception."""

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from click.testing import CliRunner
from hypothesis import strategies as st
from PIL import Image

from idfzip.api import CodingModel, compress, decompress, describe, tiles_of
from idfzip.cli import main, run
from idfzip.container import (FLAG_ALPHA, FLAG_ICC, FORMAT_VERSION, MAGIC, MAX_PIXELS,
                              METHOD_FLOW, METHOD_PNG, METHOD_RAW, MODES, Container, parse)
from idfzip.entropy import CodingError
from idfzip.imageio import PixelLimitError
from idfzip.weights import ModelError

from .conftest import mid_grey, sharp_model

MODEL = CodingModel(sharp_model(), "tiny")
EXPECTED = (CodingError, ModelError)
ICC = b"fake-icc-profile" * 3
DATA = Path(__file__).parent / "data"


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


def expected_crc(image: Image.Image, data: bytes) -> int:
    """The crc32 field of a version-2 file, computed from the format's definition: pixels,
    palette, then the header (every byte before the streams or payload) with the field as 0."""
    crc = zlib.crc32(image.tobytes())
    if image.mode == "P":
        crc = zlib.crc32(bytes(image.getpalette()), crc)
    c = parse(data)
    if c.method == METHOD_FLOW:
        body = sum(map(len, c.streams)) + (4 + len(c.alpha_png) if c.alpha_png else 0)
    else:
        body = len(c.payload)
    header = bytearray(data[: len(data) - body])
    header[12:16] = bytes(4)
    return zlib.crc32(bytes(header), crc)


# -- valid files ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(FILES))
def test_valid_files_parse_and_describe(kind):
    image, data = FILES[kind]
    info = describe(data)
    assert info["format_version"] == FORMAT_VERSION == data[4]
    assert (info["width"], info["height"], info["mode"]) == (image.width, image.height,
                                                              image.mode)
    assert info["file_bytes"] == len(data)
    assert info["crc32"] == f"{expected_crc(image, data):08x}"
    assert parse(data).to_bytes() == data  # one way to write a file: parsing loses nothing
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
        (patched(4, 3), "unsupported .idf format version 3"),
        (patched(4, 0), "unsupported .idf format version 0"),
        (patched(5, len(MODES)), "corrupted"),
        (patched(6, 3), "corrupted"),
        (patched(7, 4), "corrupted"),
        (patched(7, FLAG_ALPHA), "mode RGB with method raw"),  # alpha flag on a raw file
        (patched(5, MODES.index("P")), "mode P with method raw"),  # palettes go as PNG
        (patched(5, MODES.index("L")), "raw payload size"),
        (patched(8, 0, "H"), "image size 0x2"),
        (patched(10, 0, "H"), "image size 2x0"),
        (patched(8, 3, "H"), "raw payload size"),
        (patched(7, FLAG_ICC)[:16] + bytes(4) + good[16:], "empty ICC profile"),
        (good + b"\x00", "trailing"),
        (good[:-1], "truncated"),
        (b"", "not an .idf"),
    ]
    for data, message in cases:
        with pytest.raises(CodingError, match=message):
            parse(data)
        with pytest.raises(CodingError):
            decompress(data, MODEL)


def test_flow_header_with_a_bad_tile_mode_or_name_is_refused():
    c = Container("RGB", METHOD_FLOW, 8, 8, 0, None, "tiny", MODEL.sha256, 8, [b"\0" * 4])
    data = bytearray(c.to_bytes())
    name_at = 16
    tile_at = name_at + 1 + 4 + 8
    for tile in (0, 7, 2049):
        bad_tile = bytearray(data)
        struct.pack_into("<H", bad_tile, tile_at, tile)
        with pytest.raises(CodingError, match=f"tile size {tile}"):
            parse(bytes(bad_tile))
    for mode, flags in (("P", 0), ("I;16", 0), ("1", 0), ("RGBA", 0), ("RGB", FLAG_ALPHA)):
        bad_mode = bytearray(data)
        bad_mode[5], bad_mode[7] = MODES.index(mode), flags
        with pytest.raises(CodingError, match=f"mode {mode} with method flow"):
            parse(bytes(bad_mode))
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
    header = 16 + (4 + len(ICC) if image.info.get("icc_profile") else 0)
    if kind.startswith("flow"):
        header += 1 + 4 + 8 + 2 + 4 * 4  # name, model id, tile, four tile lengths
    else:
        header += 4  # payload length
    samples = 40 if kind.startswith("flow") else 120
    unnoticed = []
    positions = flip_positions(data, header, samples, seed=len(data))
    for i, pos in enumerate(positions):
        damaged = bytearray(data)
        damaged[pos] ^= 1 << (i % 8) if i % 3 else 0xFF
        if not assert_refused_or_exact(bytes(damaged), image):
            unnoticed.append(pos)
    # flips that decode to the exact pixels touch bytes that carry no information (PNG chunk
    # CRCs Pillow skips, the IEND chunk); none may be in the header, which the checksum covers
    # byte for byte (the model name too, although the model is given explicitly here)
    assert not set(unnoticed) & set(range(header)), unnoticed
    assert len(unnoticed) <= 0.1 * len(positions), unnoticed


def test_flipped_icc_profile_bytes_are_detected():
    """The CRC covers the ICC profile too: a damaged profile is an error, not a silent change."""
    _, data = FILES["raw"]
    damaged = bytearray(data)
    damaged[16 + 4] ^= 0x20
    with pytest.raises(CodingError, match="checksum"):
        decompress(bytes(damaged), MODEL)


def test_a_changed_model_name_or_id_is_refused():
    _, data = FILES["flow"]
    damaged = bytearray(data)
    name_at = 16 + 4 + len(ICC)
    damaged[name_at + 1] ^= 0x01  # "tiny" -> "uiny"
    assert describe(bytes(damaged))["model"] == "uiny"
    with pytest.raises(CodingError, match="checksum"):  # the header is in the checksum
        decompress(bytes(damaged), MODEL)
    with pytest.raises(ModelError, match="'uiny'.*does not ship.*--model"):
        decompress(bytes(damaged))  # no model given: the file's name is not a shipped model
    hash_flip = bytearray(data)
    hash_flip[name_at + 1 + 4] ^= 0x80
    with pytest.raises(ModelError, match="made with model 'tiny'"):
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


# -- format versions ------------------------------------------------------------------------

def v1_file(name: str) -> bytes:
    """A file written by idfzip before version 2 (tests/data/format-v1-*.idf)."""
    return (DATA / f"format-v1-{name}.idf").read_bytes()


@pytest.mark.parametrize("kind", sorted(FILES))
def test_version_1_files_still_decode(kind):
    """The files of FILES as the last version-1 idfzip wrote them: they decode to the same
    image, and version 2 changed only the version byte and what the CRC covers."""
    image, data = FILES[kind]
    old = v1_file(kind)
    assert describe(old)["format_version"] == 1 and data[4] == FORMAT_VERSION == 2
    assert decompress(old, MODEL).tobytes() == image.tobytes()
    assert len(old) == len(data) and old[:4] + old[5:12] + old[16:] == data[:4] + data[5:12] \
        + data[16:]
    assert parse(old).to_bytes() == old
    damaged = bytearray(old)
    damaged[len(damaged) // 2] ^= 0x10
    assert_refused_or_exact(bytes(damaged), image)


def test_version_1_file_of_the_pinned_bitstream_still_decodes():
    """test_codec.test_bitstream_is_stable pinned this file's digest under version 1."""
    import hashlib
    from .conftest import mid_grey as grey
    old = v1_file("pinned")
    assert hashlib.sha256(old).hexdigest()[:16] == "040e0c42c4706422"
    rng = np.random.default_rng(7)
    expected = np.concatenate([grey(rng, 20, 37), grey(rng, 20, 37)])
    np.testing.assert_array_equal(np.asarray(decompress(old, MODEL)), expected)


@pytest.mark.parametrize("name, mode", [("photo", "RGB"), ("photo-grey", "L")])
def test_version_1_files_of_shipped_models_decode_without_naming_the_model(name, mode):
    old = v1_file(name)
    info = describe(old)
    assert (info["format_version"], info["model"], info["method"]) == (1, name, "flow")
    with Image.open(Path(__file__).parents[1] / "data" / "demo.png") as demo:
        expected = demo.convert(mode).crop((0, 0, 96, 64))
    assert decompress(old).tobytes() == expected.tobytes()


# -- header fields the checksum covers ------------------------------------------------------

def raw_file(mode: str, width: int, height: int) -> bytes:
    rng = np.random.default_rng(width * height)
    pixels = rng.integers(0, 256, width * height * (2 if mode in ("LA", "I;16") else
                                                    len(mode)), dtype=np.uint8).tobytes()
    data = compress(Image.frombytes(mode, (width, height), pixels), MODEL)
    assert describe(data)["method"] == "raw", mode
    return data


def with_header(data: bytes, mode: str | None = None, width: int | None = None,
                height: int | None = None) -> bytes:
    out = bytearray(data)
    if mode is not None:
        out[5] = MODES.index(mode)
    struct.pack_into("<HH", out, 8, width or data[8] + 256 * data[9],
                     height or data[10] + 256 * data[11])
    return bytes(out)


HEADER_CORRUPTIONS = {
    # each decodes, without a header checksum, to another image of the same byte count
    "width <-> height": lambda: with_header(raw_file("RGB", 8, 6), width=6, height=8),
    "LA -> I;16": lambda: with_header(raw_file("LA", 5, 7), mode="I;16"),
    "I;16 -> LA": lambda: with_header(raw_file("I;16", 5, 7), mode="LA"),
    "L -> P": lambda: with_header(raw_file("L", 8, 6), mode="P"),
    "RGB 8x6 -> L 24x6": lambda: with_header(raw_file("RGB", 8, 6), mode="L", width=24),
    "RGB 8x6 -> LA 12x6": lambda: with_header(raw_file("RGB", 8, 6), mode="LA", width=12),
}


@pytest.mark.parametrize("name", sorted(HEADER_CORRUPTIONS))
def test_changed_header_fields_are_refused_by_api_and_cli(name, tmp_path, capsys):
    data = HEADER_CORRUPTIONS[name]()
    with pytest.raises(CodingError) as err:
        decompress(data, MODEL)
    assert "\n" not in str(err.value)
    src, out = tmp_path / "bad.idf", tmp_path / "bad.png"
    src.write_bytes(data)
    result = CliRunner().invoke(main, ["decompress", str(src), "-o", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    with pytest.raises(SystemExit) as exit_info:
        run(["decompress", str(src), "-o", str(out)])
    message = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert message.startswith("idfzip: ") and message.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.idf"]  # no output, no .part


def test_changed_header_fields_of_flow_files_are_refused():
    image, data = FILES["flow"]
    c = parse(data)
    icc_end = 16 + 4 + len(ICC)
    tile_at = icc_end + 1 + 4 + 8
    cases = {
        "size": with_header(data, width=image.height + 8, height=image.width - 8),
        "mode": with_header(data, mode="L"),
        "tile": data[:tile_at] + struct.pack("<H", 24) + data[tile_at + 2:],
        "icc": data[:icc_end - 1] + b"?" + data[icc_end:],
    }
    lengths_at = tile_at + 2  # move 4 bytes from the first stream to the second
    first, second = len(c.streams[0]), len(c.streams[1])
    cases["lengths"] = (data[:lengths_at] + struct.pack("<II", first - 4, second + 4)
                        + data[lengths_at + 8:])
    for name, damaged in cases.items():
        with pytest.raises(EXPECTED):
            decompress(damaged, MODEL)


# -- streams --------------------------------------------------------------------------------

def with_streams(data: bytes, streams: list[bytes]) -> bytes:
    c = parse(data)
    c.streams = streams
    return c.to_bytes()  # the old crc32: the damage must be caught before the checksum


@pytest.mark.parametrize("where", ["end", "start"])
def test_a_stream_with_words_left_over_is_refused(where):
    _, data = FILES["flow"]
    streams = list(parse(data).streams)
    extra = b"\x01\x02\x03\x04"
    streams[1] = streams[1] + extra if where == "end" else extra + streams[1]
    with pytest.raises(CodingError, match="left over"):
        decompress(with_streams(data, streams), MODEL)


def test_a_stream_with_words_left_over_is_refused_by_the_codec_itself():
    """Without the checksum: decoding a tile checks that its stream was fully consumed."""
    from idfzip.codec import decode_image
    _, data = FILES["flow"]
    c = parse(data)
    streams = list(c.streams)
    streams[2] = b"\x07\x00\x00\x00" + streams[2]  # a word the decoder never reaches
    with pytest.raises(CodingError, match="left over"):
        decode_image(MODEL.codec, streams, 3, c.height, c.width, c.tile)


def test_empty_and_short_streams_are_refused_before_any_network_runs(monkeypatch):
    from idfzip import codec
    _, data = FILES["flow"]
    streams = list(parse(data).streams)
    streams[3] = b""
    # one 2048x2048 tile holds 12.6M symbols: at least ~16 KB however well they code
    short = Container("RGB", METHOD_FLOW, 2048, 2048, 0, None, "tiny", MODEL.sha256, 2048,
                      [b"\x01\x00\x00\x00" * 3000])

    def no_networks(*args):
        raise AssertionError("a network ran")
    monkeypatch.setattr(codec.FlowCodec, "decode", no_networks)
    for damaged in (with_streams(data, streams), short.to_bytes()):
        with pytest.raises(CodingError, match="too short"):
            decompress(damaged, MODEL)


def test_the_encoder_never_writes_a_stream_the_decoder_would_refuse(monkeypatch):
    """An image coded below the decoder's bound on bits per symbol is stored instead."""
    from idfzip import codec, limits
    image, data = FILES["flow"]
    assert describe(data)["method"] == "flow"
    monkeypatch.setattr(limits, "MIN_SYMBOL_BITS", 64.0)  # no flow stream reaches this
    monkeypatch.setattr(codec, "min_stream_words", limits.min_stream_words)
    stored = compress(image, MODEL, tile=16)
    assert describe(stored)["method"] in ("png", "raw")
    assert decompress(stored, MODEL).tobytes() == image.tobytes()
