"""Lossless means lossless, at the edges: every image that goes in either comes back exactly
(pixels, mode, palette, transparency, ICC profile) through every output format the command
line accepts, or is refused with one line and a non-zero exit, never silently changed."""

import io
import struct
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import idfzip  # noqa: F401  (registers the Pillow plugin)
from idfzip.api import CodingModel, compress, decompress, describe
from idfzip.cli import main
from idfzip.container import METHOD_FLOW, METHOD_PNG, Container
from idfzip.entropy import CodingError
from idfzip.imageio import PixelLimitError
from idfzip.intnet import to_integer
from idfzip.weights import save_model

from .conftest import mid_grey, sharp_model

# -- sources: every mode and bit depth Pillow can produce ---------------------------------------


def png16(pixels: np.ndarray) -> bytes:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA) written by hand: Pillow cannot write one."""
    height, width, channels = pixels.shape
    rows = b"".join(b"\0" + pixels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I",
                                                                       zlib.crc32(kind + data))
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16,
                                                                colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def tiff16(pixels: np.ndarray) -> bytes:
    """A 16-bit RGB or RGBA baseline TIFF (one uncompressed strip) written by hand."""
    height, width, channels = pixels.shape
    data = pixels.astype("<u2").tobytes()
    tags = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, channels, None),
            (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, None), (277, 3, 1, channels),
            (278, 4, 1, height), (279, 4, 1, len(data)), (284, 3, 1, 1)]
    if channels == 4:
        tags.append((338, 3, 1, 2))  # unassociated alpha
    ifd_size = 2 + 12 * len(tags) + 4
    bits_at = 8 + ifd_size
    data_at = bits_at + 2 * channels
    out = [b"II*\0", struct.pack("<I", 8), struct.pack("<H", len(tags))]
    for tag, kind, count, value in tags:
        if tag == 258:
            value = bits_at
        elif tag == 273:
            value = data_at
        packed = struct.pack("<HI", value, 0)[:4] if kind == 3 and tag != 258 else \
            struct.pack("<I", value)
        out.append(struct.pack("<HHI", tag, kind, count) + packed)
    out += [struct.pack("<I", 0), struct.pack(f"<{channels}H", *[16] * channels), data]
    return b"".join(out)


KINDS = ["1", "L", "LA", "P", "P+key", "P+alpha", "RGB", "RGBA", "I;16", "I", "F", "CMYK",
         "L+key", "RGB+key", "I;16+key", "RGB16.png", "RGBA16.png", "LA16.png", "RGB16.tiff",
         "RGBA16.tiff"]
REFUSED = {"I", "F", "CMYK", "RGB16.png", "RGBA16.png", "LA16.png", "RGB16.tiff",
           "RGBA16.tiff"}  # modes idfzip does not store; more than 8 bits per colour channel
GREY = {"1", "L", "LA", "L+key", "I;16", "I;16+key", "I", "F"}


def make_source(kind: str, rng, height: int, width: int, content: str, icc: bytes | None):
    """(file bytes, file extension) of a source image of this kind."""
    if content == "smooth":  # near mid-grey: the tiny models code it with the flow
        rgb = mid_grey(rng, height, width)
    elif content == "blocky":  # PNG's strength
        rgb = np.repeat(rng.integers(0, 256, (height, 1, 3), np.uint8), width, 1)
    else:
        rgb = rng.integers(0, 256, (height, width, 3), np.uint8)
    wide = rgb.astype(np.uint16) * 257 + rng.integers(0, 257, rgb.shape).astype(np.uint16)
    if kind.endswith("16.png"):
        channels = {"RGB16.png": 3, "RGBA16.png": 4, "LA16.png": 2}[kind]
        planes = np.concatenate([wide, wide[..., :1]], -1)[..., :channels] if channels != 2 \
            else wide[..., :2]
        return png16(np.ascontiguousarray(planes)), ".png"
    if kind.endswith("16.tiff"):
        planes = wide if kind == "RGB16.tiff" else np.concatenate([wide, wide[..., :1]], -1)
        return tiff16(np.ascontiguousarray(planes)), ".tiff"
    base, _, key = kind.partition("+")
    if base == "1":
        image = Image.fromarray(rgb[..., 0] > 127)
    elif base == "I;16":
        image = Image.fromarray(wide[..., 0])
    elif base == "I":
        image = Image.fromarray(wide[..., 0].astype(np.int32) * 1000 - 7)
    elif base == "F":
        image = Image.fromarray(wide[..., 0].astype(np.float32) / 3)
    else:
        image = Image.fromarray(rgb).convert(base)
    params = {}
    if key == "key":  # colour key (tRNS): a value the image holds
        params["transparency"] = (tuple(int(v) for v in rgb[0, 0]) if base == "RGB"
                                  else image.getpixel((0, 0)))
    elif key == "alpha":
        params["transparency"] = bytes(rng.integers(0, 256, 5, np.uint8))
    if icc:
        params["icc_profile"] = icc
    buf = io.BytesIO()
    ext = ".tiff" if base in ("I", "F", "CMYK") else ".png"
    image.save(buf, format=ext[1:].upper(), **params)
    return buf.getvalue(), ext


def test_sources_are_what_they_claim_to_be():
    rng = np.random.default_rng(0)
    for kind in KINDS:
        data, _ = make_source(kind, rng, 5, 6, "noise", None)
        with Image.open(io.BytesIO(data)) as im:
            tile = im.tile[0]
            expected = {"RGB16.png": ("RGB", "RGB;16B"), "RGBA16.png": ("RGBA", "RGBA;16B"),
                        "LA16.png": ("RGBA", "LA;16B"), "RGB16.tiff": ("RGB", "RGB;16L"),
                        "RGBA16.tiff": ("RGBA", "RGBA;16L")}.get(kind)
            if expected:  # Pillow opens these as 8-bit modes: the cut the CLI must refuse
                args = tile.args if isinstance(tile.args, str) else tile.args[0]
                assert (im.mode, args) == expected
            else:
                assert im.mode == kind.partition("+")[0]
            if "+" in kind:
                assert "transparency" in im.info


# -- what the test checks, independently of idfzip.imageio --------------------------------------

def opaque(image: Image.Image, n: int | None = None):
    """Transparency in one form: the colour key, or the alpha of each of the first ``n``
    palette entries (a file may pad the palette)."""
    value = image.info.get("transparency")
    if value is None:
        return None
    if image.mode == "P":
        n = len(image.getpalette()) // 3 if n is None else n
        table = [255] * n
        if isinstance(value, int):
            if value < n:
                table[value] = 0
        else:
            table[: len(value)] = list(value)[:n]
        return None if all(a == 255 for a in table) else table
    return tuple(value) if isinstance(value, (tuple, list)) else value


def assert_same(back: Image.Image, truth: Image.Image, icc_kept: bool = True):
    assert back.mode == truth.mode and back.size == truth.size
    assert np.array_equal(np.asarray(back), np.asarray(truth))
    if truth.mode == "P":
        assert back.getpalette()[: len(truth.getpalette())] == truth.getpalette()
        assert back.convert("RGBA").tobytes() == truth.convert("RGBA").tobytes()
    entries = len(truth.getpalette()) // 3 if truth.mode == "P" else None
    assert opaque(back, entries) == opaque(truth)
    if icc_kept:
        assert back.info.get("icc_profile") == truth.info.get("icc_profile")


# -- the property ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    rgb, grey = folder / "tiny.pt", folder / "tiny-grey.pt"
    save_model(to_integer(sharp_model()), rgb)
    save_model(to_integer(sharp_model(channels=1)), grey)
    return {3: str(rgb), 1: str(grey)}


Image.init()
EXTENSIONS = sorted(Image.EXTENSION) + [".unknownext"]  # every one the command line takes
invoke = CliRunner().invoke


def one_line_refusal(result, path):
    """Exit 1 and one line on stderr (``main`` says 'Error: ', the entry point 'idfzip: ')."""
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert str(path) in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=5, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(height=st.integers(1, 28), width=st.integers(1, 28),
       content=st.sampled_from(["smooth", "noise", "blocky"]), seed=st.integers(0, 2**16),
       icc=st.sampled_from([None, b"fake icc profile \x00\xff" * 3]))
def test_every_mode_and_depth_comes_back_exactly_in_every_format_or_is_refused(
        models, tmp_path, kind, height, width, content, seed, icc):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # one per example
    data, ext = make_source(kind, np.random.default_rng(seed), height, width, content, icc)
    source = folder / f"in{ext}"
    source.write_bytes(data)
    with Image.open(source) as truth:
        truth.load()
    model = models[1 if kind in GREY else 3]

    idf = folder / "in.idf"
    result = invoke(main, ["compress", str(source), "-o", str(idf), "--model", model, "-q"])
    if kind in REFUSED:
        one_line_refusal(result, source)
        assert not idf.exists()
        return
    assert result.exit_code == 0, result.output
    assert_same(decompress(idf.read_bytes(), CodingModel(
        sharp_model(channels=1 if kind in GREY else 3), "x")), truth)

    written = 0
    for out_ext in EXTENSIONS:
        out = folder / f"out{out_ext}"
        result = invoke(main, ["decompress", str(idf), "-o", str(out), "--model", model])
        if result.exit_code == 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(out) as back:
                    back.load()
                    assert_same(back, truth)
            written += 1
        else:
            one_line_refusal(result, out)
            assert not out.exists()
        assert sorted(p.name for p in folder.iterdir() if ".part" in p.name) == []
        assert out_ext != ".png" or result.exit_code == 0  # PNG holds every image
        if out_ext in (".jpg", ".jpeg", ".avif", ".unknownext"):
            assert result.exit_code == 1
    assert written >= 1


def test_lossless_formats_are_written_losslessly(models, tmp_path):
    """Regression: .webp was written lossy (pixels off by up to 27), .gif quantised."""
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (16, 20, 4), np.uint8))
    rgba.putpixel((0, 0), (12, 34, 56, 0))  # colour under alpha 0 is kept too
    palette = Image.fromarray(rng.integers(0, 256, (16, 20, 3), np.uint8)).convert("P")
    for image, exts in ((rgba, [".webp", ".tiff", ".png", ".tga"]),
                        (palette, [".gif", ".tiff", ".bmp", ".png"])):
        idf = tmp_path / f"{image.mode}.idf"
        idf.write_bytes(compress(image, models[3]))
        for ext in exts:
            out = tmp_path / f"{image.mode}{ext}"
            result = invoke(main, ["decompress", str(idf), "-o", str(out)])
            assert result.exit_code == 0, (ext, result.output)
            with Image.open(out) as back:
                assert_same(back, image)


@pytest.mark.parametrize("ext, message", [
    (".jpg", "JPEG is lossy"), (".avif", "AVIF is lossy"), (".pdf", "cannot read PDF"),
    (".psd", "cannot write PSD")])
def test_formats_that_cannot_be_exact_are_refused_before_decoding(tmp_path, ext, message):
    """No model can decode this file, so the refusal comes before any decoding."""
    idf = tmp_path / "x.idf"
    idf.write_bytes(compress(Image.fromarray(mid_grey(np.random.default_rng(0), 24, 24)),
                             CodingModel(sharp_model(), "not-a-shipped-model"), tile=16))
    assert describe(idf.read_bytes())["method"] == "flow"
    result = invoke(main, ["decompress", str(idf), "-o", str(tmp_path / f"out{ext}")])
    one_line_refusal(result, tmp_path / f"out{ext}")
    assert message in result.stderr and not (tmp_path / f"out{ext}").exists()


@pytest.mark.parametrize("ext", [".bmp", ".ppm", ".tga", ".gif"])
def test_formats_without_an_icc_profile_refuse_images_that_have_one(models, tmp_path, ext):
    image = Image.new("L", (5, 4), 9)
    image.info["icc_profile"] = b"fake icc"
    idf = tmp_path / "x.idf"
    idf.write_bytes(compress(image, models[1]))
    result = invoke(main, ["decompress", str(idf), "-o", str(tmp_path / f"out{ext}")])
    one_line_refusal(result, tmp_path / f"out{ext}")
    assert "ICC profile" in result.stderr
    del image.info["icc_profile"]
    idf.write_bytes(compress(image, models[1]))
    assert invoke(main, ["decompress", str(idf), "-o", str(tmp_path / f"out{ext}")]) \
        .exit_code == 0


# -- colour keys -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["L", "RGB", "I;16", "1"])
def test_a_colour_key_is_kept_even_where_the_flow_or_raw_bytes_would_be_smaller(mode):
    """Regression: tRNS of L and RGB images was dropped when the flow or raw bytes won."""
    rng = np.random.default_rng(1)
    if mode in ("L", "RGB"):
        image = Image.fromarray(mid_grey(rng, 24, 24, 3 if mode == "RGB" else 1)
                                .squeeze()).convert(mode)
    elif mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (9, 7)).astype(np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 2, (9, 7)).astype(bool))
    key = image.getpixel((3, 3))
    image.info["transparency"] = key
    model = CodingModel(sharp_model(channels=3 if mode == "RGB" else 1), "tiny")
    data = compress(image, model, tile=16)
    assert describe(data)["method"] == "png"
    back = decompress(data, model)
    assert_same(back, image)
    assert back.info["transparency"] == key
    del image.info["transparency"]
    assert describe(compress(image, model, tile=16))["method"] != "png" or mode == "1"


# -- bit depth ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["RGB16.png", "RGBA16.png", "LA16.png", "RGB16.tiff",
                                  "RGBA16.tiff"])
def test_sixteen_bit_colour_is_refused_not_cut_to_eight_bits(tmp_path, kind):
    """Regression: these opened as RGB/RGBA in Pillow and were stored as ``original >> 8``."""
    data, ext = make_source(kind, np.random.default_rng(0), 6, 5, "noise", None)
    path = tmp_path / f"x{ext}"
    path.write_bytes(data)
    model = CodingModel(sharp_model(), "tiny")
    for image in (path, str(path), Image.open(path)):  # unloaded: its raw mode says 16 bits
        with pytest.raises(ValueError, match="16 bits per channel"):
            compress(image, model)
    if ext == ".tiff":  # a TIFF's BitsPerSample stays readable after loading
        with Image.open(path) as loaded:
            loaded.load()
            with pytest.raises(ValueError, match="16 bits per channel"):
                compress(loaded, model)


def test_sixteen_bit_grey_is_kept(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 65536, (6, 5)).astype(np.uint16)
    path = tmp_path / "g.png"
    path.write_bytes(png16(pixels[..., None]))
    back = decompress(compress(path, CodingModel(sharp_model(), "tiny")))
    assert back.mode == "I;16" and np.array_equal(np.asarray(back), pixels)


def test_raw_modes_are_read_for_bits_per_sample_not_per_pixel():
    from idfzip.imageio import _rawmode_bits
    wide = ["RGB;16B", "RGB;16L", "RGB;16N", "RGBA;16B", "LA;16B", "L;16", "L;16B",
            "CMYK;16L", "RGBX;16B"]
    narrow = ["RGB", "BGR;15", "BGR;16", "RGB;16", "BGR;24", "BGR;32", "L;2", "P;4", "1;I",
              "RGB;4B", "BGRA;15", "L;8S", ""]
    assert [_rawmode_bits(m) for m in wide] == [16] * len(wide)
    assert [_rawmode_bits(m) for m in narrow] == [8] * len(narrow)


@pytest.mark.parametrize("fmt, mode, params", [
    ("PNG", "P", {"bits": 4}), ("PNG", "P", {"bits": 2}), ("PNG", "1", {}), ("BMP", "RGB", {}),
    ("BMP", "P", {}), ("TGA", "RGBA", {}), ("TIFF", "1", {}), ("TIFF", "RGB", {}),
    ("TIFF", "P", {}), ("PPM", "RGB", {}), ("GIF", "P", {}), ("WEBP", "RGB", {"lossless": True}),
    ("JPEG2000", "RGB", {"irreversible": False})])
def test_eight_bit_and_narrower_sources_are_not_mistaken_for_wide_ones(tmp_path, fmt, mode,
                                                                        params):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (9, 8, 3), np.uint8))
    image = image.quantize(4) if mode == "P" else image.convert(mode)
    path = tmp_path / f"x.{fmt.lower()}"
    image.save(path, fmt, **params)
    with Image.open(path) as src:
        src.load()
        back = decompress(compress(path, CodingModel(sharp_model(), "tiny")))
        assert back.mode == src.mode and back.tobytes() == src.tobytes()


def grey_png(samples: np.ndarray, bits: int, key: int) -> bytes:
    """A grey PNG of 1, 2, 4 or 8 bits per sample with colour key ``key`` (tRNS), by hand."""
    height, width = samples.shape
    per = 8 // bits
    padded = np.zeros((height, -(-width // per) * per), np.uint8)
    padded[:, :width] = samples
    packed = sum(padded[:, i::per].astype(np.uint8) << (8 - bits * (i + 1)) for i in range(per))
    rows = b"".join(b"\0" + packed[y].astype(np.uint8).tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I",
                                                                       zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits,
                                                                0, 0, 0, 0))
            + chunk(b"tRNS", struct.pack(">H", key)) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_the_colour_key_of_a_low_bit_grey_png_marks_the_same_pixels_after_a_round_trip(
        models, tmp_path, bits):
    """Regression: Pillow reads a 2- or 4-bit grey PNG's samples scaled to 8 bits but its tRNS
    key unscaled (3 for 2-bit white); stored as it was, the 8-bit PNG written back had the key
    3, so the source's transparent pixels came back opaque."""
    top = (1 << bits) - 1
    samples = np.arange(5 * 7).reshape(5, 7) % (top + 1)
    source = tmp_path / "grey.png"
    source.write_bytes(grey_png(samples, bits, top))
    idf, out = tmp_path / "grey.idf", tmp_path / "out.png"
    for args in (["compress", str(source), "-o", str(idf)], ["decompress", str(idf), "-o",
                                                              str(out)]):
        result = invoke(main, [*args, "--model", models[1]])
        assert result.exit_code == 0, result.output
    with Image.open(out) as back:  # an 8-bit grey PNG: its key is read at the pixels' scale
        assert back.mode == ("1" if bits == 1 else "L")
        if bits > 1:
            assert np.array_equal(np.asarray(back), samples * (255 // top))
            transparent = np.asarray(back) == back.info["transparency"]
        else:
            transparent = np.asarray(back) == bool(back.info["transparency"])
    assert np.array_equal(transparent, samples == top)  # the PNG spec's reading of the source


def test_icons_with_several_images_are_refused_not_cut_to_the_largest(models, tmp_path):
    """Regression: Pillow opens the largest image of an ICO or ICNS file and shows no frames
    for the others, so the other sizes were dropped without a word."""
    rng = np.random.default_rng(0)
    large = Image.fromarray(rng.integers(0, 256, (32, 32, 4), np.uint8), "RGBA")
    small = Image.fromarray(rng.integers(0, 256, (16, 16, 4), np.uint8), "RGBA")
    several, one = tmp_path / "several.ico", tmp_path / "one.ico"
    large.save(several, sizes=[(16, 16), (32, 32)], append_images=[small])
    large.save(one, sizes=[(32, 32)])
    result = invoke(main, ["compress", str(several), "--model", models[3]])
    one_line_refusal(result, several)
    assert "holds 2 images" in result.stderr and not several.with_suffix(".idf").exists()
    with Image.open(tmp_path / "several.ico") as icon:
        with pytest.raises(ValueError, match="holds 2 images"):
            compress(icon, models[3])
    icns = tmp_path / "x.icns"
    large.save(icns, sizes=[(16, 16), (32, 32)])
    with pytest.raises(ValueError, match="ICNS file holds"):
        compress(icns, models[3])
    result = invoke(main, ["compress", str(one), "--model", models[3]])
    assert result.exit_code == 0, result.output
    with Image.open(one) as truth:
        truth.load()
        assert_same(decompress(one.with_suffix(".idf").read_bytes(),
                               CodingModel(sharp_model(), "x")), truth)


@pytest.mark.parametrize("maxval, refused", [(255, False), (1023, True), (65535, True)])
def test_ppm_maxval_above_255_is_refused(tmp_path, maxval, refused):
    pixels = np.random.default_rng(0).integers(0, maxval + 1, (4, 3, 3))
    body = pixels.astype(">u2" if maxval > 255 else np.uint8).tobytes()
    path = tmp_path / "x.ppm"
    path.write_bytes(f"P6 3 4 {maxval}\n".encode() + body)
    result = invoke(main, ["compress", str(path), "--model", "x.pt"])  # refused before a model
    if refused:
        one_line_refusal(result, path)
        assert f"{maxval.bit_length()} bits per channel" in result.stderr
    else:
        assert "bits per channel" not in result.output


# -- lossy inputs ------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, params, noted", [
    ("JPEG", {"quality": 90}, True), ("WEBP", {"quality": 80}, True),
    ("WEBP", {"lossless": True}, False), ("PNG", {}, False)])
def test_lossy_inputs_get_a_one_line_note(models, tmp_path, fmt, params, noted):
    rng = np.random.default_rng(0)
    path = tmp_path / f"x.{fmt.lower()}"
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), np.uint8)).save(path, fmt, **params)
    result = invoke(main, ["compress", str(path), "--model", models[3]])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "note:" in line]
    assert len(notes) == (1 if noted else 0)
    if noted:
        assert notes[0].startswith(f"idfzip: note: {path} is a lossy ") and "x its size" in notes[0]
    quiet = invoke(main, ["compress", str(path), "--model", models[3], "-f", "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


# -- the pixel limit ---------------------------------------------------------------------------

def big_files(tmp_path):
    """Headers of 16384x10922 images (178.9 megapixels) with payloads no decoder could use:
    the limit must refuse them from the header alone."""
    w, h = 16384, 10922
    png = Container("RGBA", METHOD_PNG, w, h, 0, payload=b"\x89PNG junk").to_bytes()
    tiles = -(-w // 2048) * -(-h // 2048)
    flow = Container("RGB", METHOD_FLOW, w, h, 0, model_name="no-such-model",
                     model_id=b"\0" * 8, tile=2048, streams=[b""] * tiles).to_bytes()
    paths = []
    for name, data in (("png.idf", png), ("flow.idf", flow)):
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    return paths


def test_one_pixel_limit_for_every_method_checked_from_the_header(tmp_path, capsys):
    for path in big_files(tmp_path):
        with pytest.raises(PixelLimitError, match="16384x10922 is 178,946,048 pixels"):
            decompress(path.read_bytes())
        result = invoke(main, ["decompress", str(path), "-o", str(tmp_path / "out.png")])
        one_line_refusal(result, path)
        assert "over the limit of 89,478,485" in result.stderr and "--max-pixels" in \
            result.stderr
        # a limit lifted: the header passes and the junk payload is found
        result = invoke(main, ["decompress", str(path), "-o", str(tmp_path / "out.png"),
                               "--max-pixels", "0"])
        assert result.exit_code == 1 and "image too large" not in result.stderr
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # Pillow's, on open
            with Image.open(path) as im:
                with pytest.raises(OSError, match="image too large") as raised:
                    im.load()
        assert isinstance(raised.value.__cause__, PixelLimitError)
    assert Image.MAX_IMAGE_PIXELS == 89478485  # --max-pixels leaves Pillow's setting alone


def test_the_pixel_limit_applies_to_compress_too_and_can_be_set(models, tmp_path):
    image = Image.fromarray(mid_grey(np.random.default_rng(0), 12, 12))
    path = tmp_path / "x.png"
    image.save(path)
    result = invoke(main, ["compress", str(path), "--model", models[3], "--max-pixels", "143"])
    one_line_refusal(result, path)
    assert "12x12 is 144 pixels, over the limit of 143" in result.stderr
    result = invoke(main, ["compress", str(path), "--model", models[3], "--max-pixels", "50"])
    one_line_refusal(result, path)  # twice the limit: Pillow's own error, in the same words
    assert "image too large: more than twice the limit of 50 pixels" in result.stderr
    result = invoke(main, ["compress", str(path), "--model", models[3], "--max-pixels", "144"])
    assert result.exit_code == 0, result.output
    idf = tmp_path / "x.idf"
    result = invoke(main, ["decompress", str(idf), "--model", models[3], "--max-pixels", "100",
                           "-o", str(tmp_path / "y.png")])
    one_line_refusal(result, idf)
    assert not (tmp_path / "y.png").exists()
    saved = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 100
        with pytest.raises(PixelLimitError):
            compress(image, models[3])
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def test_a_png_payload_larger_than_its_header_is_refused_before_it_is_decoded():
    """The header passes the limit; a payload claiming more pixels must not be decoded."""
    buf = io.BytesIO()
    Image.new("L", (20000, 5000)).save(buf, "PNG")  # 100 megapixels in ~100 KB
    data = Container("L", METHOD_PNG, 4, 4, 0, payload=buf.getvalue()).to_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's raw DecompressionBombWarning included
        with pytest.raises(CodingError, match="does not match the header"):
            decompress(data)


@pytest.mark.parametrize("fmt, orientation", [("PNG", 6), ("JPEG", 3), ("WEBP", 8),
                                              ("PNG", 1), ("PNG", None)])
def test_an_exif_orientation_that_is_not_stored_gets_a_one_line_note(models, tmp_path, fmt,
                                                                      orientation):
    """EXIF is not stored, so a viewer shows the decompressed image without the source's turn
    or flip: that is said (the pixels, as the file holds them, are kept exactly)."""
    rng = np.random.default_rng(0)
    path = tmp_path / f"x.{fmt.lower()}"
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(mid_grey(rng, 6, 10)).save(path, fmt, exif=exif.tobytes(),
                                               **({"lossless": True} if fmt == "WEBP" else {}))
    result = invoke(main, ["compress", str(path), "--model", models[3]])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "EXIF orientation" in line]
    assert len(notes) == (orientation not in (1, None))
    if notes:
        assert notes[0].startswith("idfzip: note: ") and f"orientation {orientation}," in notes[0]
    quiet = invoke(main, ["compress", str(path), "--model", models[3], "-f", "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""
