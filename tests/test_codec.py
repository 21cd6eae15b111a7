"""Lossless coding of images: the tiled flow codec and the ``compress``/``decompress`` API."""

import io

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from idfzip.api import CodingModel, compress, decompress, describe
from idfzip.codec import decode_image, encode_image, tile_grid
from idfzip.container import MODES
from idfzip.entropy import CodingError
from idfzip.layers import unsqueeze2x2
from idfzip.weights import ModelError

from .conftest import mid_grey, sharp_model, tiny_model

RGB_MODEL = CodingModel(sharp_model(), "tiny")
OTHER_MODEL = CodingModel(sharp_model(seed=1), "other")
GREY_MODEL = CodingModel(sharp_model(channels=1), "grey")
FLOW = ("RGB", "RGBA", "L", "LA")
HEADER_SLACK = 40  # the most any image may grow over its raw pixel bytes

FAST = settings(max_examples=20, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])



def noise(rng, shape):
    return rng.integers(0, 256, shape, dtype=np.uint8)


def smooth(rng, height, width, channels=3):
    """An image the test models code with the flow (see conftest.mid_grey)."""
    return mid_grey(rng, height, width, channels)


def same_image(a: Image.Image, b: Image.Image) -> None:
    assert a.mode == b.mode and a.size == b.size
    assert a.tobytes() == b.tobytes()
    if a.mode == "P":
        assert a.getpalette() == b.getpalette()


def round_trip(image, model=RGB_MODEL, **kwargs) -> bytes:
    data = compress(image, model, **kwargs)
    same_image(decompress(data, model), image)
    return data


def chw(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.transpose(2, 0, 1))


# -- the tiled codec ---------------------------------------------------------------------------

@FAST
@given(height=st.integers(1, 40), width=st.integers(1, 40), tile=st.sampled_from([8, 16]),
       content=st.sampled_from(["noise", "smooth", "constant"]), seed=st.integers(0, 2**16),
       encode_batch=st.integers(1, 2), decode_batch=st.integers(3, 5))
def test_codec_round_trips_any_size_and_batching(height, width, tile, content, seed,
                                                 encode_batch, decode_batch):
    rng = np.random.default_rng(seed)
    if content == "noise":
        pixels = noise(rng, (height, width, 3))
    elif content == "smooth":
        pixels = smooth(rng, height, width)
    else:
        pixels = np.full((height, width, 3), rng.integers(0, 256), np.uint8)
    x = chw(pixels)
    streams = encode_image(RGB_MODEL.codec, x, tile, batch_size=encode_batch)
    assert len(streams) == len(tile_grid(height, width, tile))
    assert all(len(s) % 4 == 0 and len(s) > 0 for s in streams)
    back = decode_image(RGB_MODEL.codec, streams, 3, height, width, tile,
                        batch_size=decode_batch)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, x)
    # the batch a tile is coded in changes nothing
    assert encode_image(RGB_MODEL.codec, x, tile, batch_size=decode_batch) == streams


@FAST
@given(height=st.integers(1, 33), width=st.integers(1, 33), tile=st.sampled_from([8, 16]),
       flat=st.booleans(), seed=st.integers(0, 2**16))
def test_api_round_trips_rgb_and_never_grows_past_the_header(height, width, tile, flat, seed):
    rng = np.random.default_rng(seed)
    pixels = smooth(rng, height, width) if flat else noise(rng, (height, width, 3))
    image = Image.fromarray(pixels)
    data = round_trip(image, tile=tile, batch_size=2)
    assert len(data) <= pixels.size + HEADER_SLACK


@pytest.mark.parametrize("encode_threads, decode_threads", [(1, 2), (2, 1)])
def test_thread_count_and_batch_size_change_neither_pixels_nor_bytes(encode_threads,
                                                                     decode_threads):
    rng = np.random.default_rng(3)
    methods = []
    for pixels in (smooth(rng, 42, 60), noise(rng, (9, 10, 3))):
        image = Image.fromarray(pixels)
        torch.set_num_threads(encode_threads)
        data = compress(image, RGB_MODEL, tile=16, batch_size=1)
        torch.set_num_threads(decode_threads)
        same_image(decompress(data, RGB_MODEL, batch_size=3), image)
        assert compress(image, RGB_MODEL, tile=16, batch_size=3) == data
        methods.append((describe(data)["method"], describe(data).get("tiles")))
    assert methods == [("flow", 12), ("raw", None)]


def test_memory_bounds_change_neither_pixels_nor_bytes(monkeypatch):
    """Batches capped by pixels and networks run in strips (idfzip.limits) code the same."""
    import idfzip.intnet
    from idfzip import limits
    rng = np.random.default_rng(6)
    x = chw(smooth(rng, 40, 56))
    streams = encode_image(RGB_MODEL.codec, x, 32, batch_size=4)
    monkeypatch.setattr(limits, "BATCH_PIXELS", 32 * 32)  # one 32x32 tile per batch
    monkeypatch.setattr(idfzip.intnet, "NET_CHUNK_ELEMENTS", 3000)  # strips of a few rows
    assert limits.tiles_per_batch(32 * 32, 4) == 1 and limits.tiles_per_batch(8 * 8, 4) == 4
    assert encode_image(RGB_MODEL.codec, x, 32, batch_size=4) == streams
    np.testing.assert_array_equal(decode_image(RGB_MODEL.codec, streams, 3, 40, 56, 32,
                                               batch_size=4), x)


@pytest.mark.parametrize("mode", MODES)
def test_the_checksum_of_a_large_image_is_taken_in_slices_with_the_same_value(mode,
                                                                             monkeypatch):
    import zlib

    from idfzip import api
    rng = np.random.default_rng(9)
    image = Image.frombytes(mode, (37, 23), rng.integers(0, 256, 37 * 23 * 4,
                                                         dtype=np.uint8).tobytes())
    whole = api.pixel_checksum(image)
    assert whole == zlib.crc32(image.tobytes(), 0) or mode == "P"
    monkeypatch.setattr(api, "CHECKSUM_BYTES", 50)  # slices of a row or a few
    assert api.pixel_checksum(image) == whole


def test_inverting_a_level_in_place_gives_the_same_values():
    model = RGB_MODEL.model
    rng = np.random.default_rng(8)
    latents, _ = model.analyse(torch.from_numpy(chw(smooth(rng, 16, 24)))[None])
    for index in reversed(range(len(model.levels))):  # the decoder's order
        y, z = latents[index + 1], latents[index]
        in_place = model.invert_level(index, torch.cat([y, z], dim=1))
        h = torch.cat([y, z], dim=1)
        with torch.no_grad():  # the step-by-step path: each FlowStep's own inverse
            for step in reversed(model.levels[index]):
                h = step.inverse(h)
        step_by_step = unsqueeze2x2(h)
        assert torch.equal(in_place, step_by_step)
        latents[index] = in_place


def test_decoding_is_independent_of_other_tiles_in_the_batch():
    """Tiles of one batch are coded independently: decoding them one by one agrees."""
    rng = np.random.default_rng(4)
    x = chw(smooth(rng, 16, 24))
    streams = encode_image(RGB_MODEL.codec, x, 8, batch_size=3)
    one_by_one = decode_image(RGB_MODEL.codec, streams, 3, 16, 24, 8, batch_size=1)
    np.testing.assert_array_equal(one_by_one, x)


def test_overlapped_coding_gives_the_same_streams_and_pixels():
    """The GPU pipeline (entropy coding in worker threads beside the networks) must not change
    a bit; here it runs on the CPU, with progress reported for every tile either way."""
    rng = np.random.default_rng(5)
    x = chw(smooth(rng, 40, 56))
    counts = {True: [], False: []}
    streams = {overlap: encode_image(RGB_MODEL.codec, x, 16, batch_size=2, overlap=overlap,
                                     progress=counts[overlap].append)
               for overlap in (False, True)}
    assert streams[True] == streams[False] and sum(counts[True]) == sum(counts[False]) == 12
    for overlap in (False, True):
        back = decode_image(RGB_MODEL.codec, streams[True], 3, 40, 56, 16, batch_size=2,
                            overlap=overlap)
        np.testing.assert_array_equal(back, x)


# -- modes --------------------------------------------------------------------------------------

def make_image(mode: str, rng, height=20, width=23, flat=True) -> Image.Image:
    """An image of ``mode``; ``flat`` ones (smooth, with a hard-edged alpha mask) are what the
    tiny model can code below raw size, the others are noise."""
    rgb = smooth(rng, height, width) if flat else noise(rng, (height, width, 3))
    if flat:
        mask = np.full((height, width), 255, np.uint8)
        mask[height // 3: height // 2, width // 4:] = rng.integers(0, 255)
        alpha = Image.fromarray(mask)
    else:
        alpha = Image.fromarray(noise(rng, (height, width)))
    if mode == "RGB":
        return Image.fromarray(rgb)
    if mode == "RGBA":
        image = Image.fromarray(rgb)
        image.putalpha(alpha)
        return image
    if mode == "L":
        return Image.fromarray(rgb[..., 0])
    if mode == "LA":
        image = Image.fromarray(rgb[..., 0])
        image.putalpha(alpha)
        return image
    if mode == "P":
        return Image.fromarray(rgb).convert("P")
    if mode == "1":
        bits = rng.integers(0, 2, (height, width)) if not flat else \
            (np.arange(height)[:, None] // 5 + np.arange(width)[None, :] // 7) % 2
        return Image.fromarray(bits.astype(bool))
    if mode == "I;16":
        values = rng.integers(0, 65536, (height, width)) if not flat else \
            rgb[..., 0].astype(np.int64) * 257
        return Image.fromarray(values.astype(np.uint16))
    raise AssertionError(mode)


def test_test_images_have_the_modes_they_claim():
    rng = np.random.default_rng(0)
    for mode in MODES:
        assert make_image(mode, rng).mode == mode


def test_animations_and_multi_page_files_are_refused_not_cut_to_one_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), (i, 0, 0)) for i in range(3)]
    for name in ("a.gif", "a.tiff"):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:])
        with pytest.raises(ValueError, match="image has 3 frames"):
            compress(tmp_path / name, RGB_MODEL)
        with Image.open(tmp_path / name) as opened:
            with pytest.raises(ValueError, match="image has 3 frames"):
                compress(opened, RGB_MODEL)


def test_unsupported_modes_are_refused_clearly():
    for image in (Image.new("P", (4, 4)).convert("PA"), Image.new("CMYK", (4, 4))):
        with pytest.raises(ValueError, match="unsupported image mode"):
            compress(image, RGB_MODEL)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flat", [True, False], ids=["smooth", "noise"])
def test_every_mode_comes_back_in_the_same_mode(mode, flat):
    rng = np.random.default_rng(MODES.index(mode))
    image = make_image(mode, rng, flat=flat)
    model = GREY_MODEL if mode in ("L", "LA") else RGB_MODEL
    data = round_trip(image, model, tile=16)
    assert describe(data)["mode"] == mode
    if flat and mode != "1":  # the flow where a model fits, else PNG beats raw bytes
        assert describe(data)["method"] == ("flow" if mode in FLOW else "png")
    elif mode != "P":  # noise: raw bytes
        assert describe(data)["method"] == "raw"


@pytest.mark.parametrize("mode", ["1", "I;16", "L", "LA", "RGBA", "P"])
def test_png_fallback_round_trips(mode):
    """Blocky images (PNG's strength, and no flow for them here) are stored as PNG."""
    blocks = ((np.arange(64)[:, None] // 16 + np.arange(48)[None, :] // 12) % 3).astype(np.uint8)
    if mode == "1":
        image = Image.fromarray(blocks > 0)
    elif mode == "I;16":
        image = Image.fromarray(blocks.astype(np.uint16) * 20000)
    else:
        image = Image.fromarray(blocks * 100).convert(mode)
    assert image.mode == mode
    data = round_trip(image, RGB_MODEL)
    assert describe(data)["method"] == "png"


def test_an_rgb_image_that_png_codes_best_gets_the_best_png_not_the_fast_one():
    from idfzip.api import _png
    stripes = np.zeros((64, 96, 3), np.uint8)
    stripes[:, :, 0] = (np.arange(96) * 7 % 256)[None, :]
    stripes[::2, :, 2] = 200
    image = Image.fromarray(stripes)
    data = round_trip(image, RGB_MODEL)
    best, fast = _png(image), _png(image, level=1)
    assert describe(data)["method"] == "png" and len(best) < len(fast)
    assert best in data and fast not in data


def test_grey_images_fall_back_when_the_model_is_rgb_and_vice_versa():
    rng = np.random.default_rng(2)
    grey = make_image("L", rng)
    assert describe(round_trip(grey, RGB_MODEL))["method"] in ("png", "raw")
    colour = make_image("RGB", rng)
    assert describe(round_trip(colour, GREY_MODEL))["method"] in ("png", "raw")


def test_rgba_alpha_is_kept_exactly_with_the_flow():
    rng = np.random.default_rng(8)
    image = make_image("RGBA", rng, 24, 24)
    image.putalpha(Image.fromarray(noise(rng, (24, 24))))
    data = round_trip(image, tile=16)
    info = describe(data)
    assert info["method"] == "flow" and info["alpha_bytes"] > 0
    assert decompress(data, RGB_MODEL).getchannel("A").tobytes() == \
        image.getchannel("A").tobytes()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "1", "I;16", "P"])
def test_noise_never_grows_by_more_than_the_header(mode):
    rng = np.random.default_rng(5)
    for height, width in ((1, 1), (7, 33), (24, 24)):
        image = make_image(mode, rng, height, width, flat=False)
        model = GREY_MODEL if mode in ("L", "LA") else RGB_MODEL
        data = round_trip(image, model, tile=8)
        allowance = len(image.tobytes()) + HEADER_SLACK
        if mode == "P":  # stored as PNG: palette plus PNG's own chunk and row overhead
            allowance += len(image.getpalette()) + 80 + height
        assert len(data) <= allowance, (mode, height, width, len(data))


def test_flow_files_never_exceed_raw_storage():
    """Regression: the flow was kept whenever its *streams* were below the raw size, even when
    its header (model hash, one length per tile) made the file larger than raw storage."""
    rng = np.random.default_rng(0)
    base = np.full((40, 40, 3), 128, np.uint8).reshape(-1, 3)
    speckle = noise(rng, (1600, 3))
    order = rng.permutation(1600)

    def image(k):
        pixels = base.copy()
        pixels[order[:k]] = speckle[order[:k]]
        return pixels.reshape(40, 40, 3)

    def stream_bytes(k):
        return sum(map(len, encode_image(RGB_MODEL.codec, chw(image(k)), 8, 8)))

    lo, hi = 0, 1600  # find the noisiest image whose streams still fit in the raw size
    assert stream_bytes(lo) < 4800 <= stream_bytes(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if stream_bytes(mid) < 4800 else (lo, mid)
    assert 4800 - 100 < stream_bytes(lo) < 4800  # flow header + 25 tile lengths exceed 100
    data = round_trip(Image.fromarray(image(lo)), tile=8)
    assert len(data) <= 4800 + HEADER_SLACK


def test_smooth_image_is_flow_coded_below_its_raw_size():
    rng = np.random.default_rng(1)
    pixels = smooth(rng, 24, 24)
    data = round_trip(Image.fromarray(pixels), tile=16)
    info = describe(data)
    assert info["method"] == "flow" and info["model"] == "tiny"
    assert info["model_id"] == RGB_MODEL.sha256[:8].hex()
    assert len(data) < pixels.size
    assert info["bpd"] < 8


# -- metadata, models, inputs -------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["flow", "raw", "png"])
def test_icc_profile_is_preserved(kind):
    rng = np.random.default_rng(6)
    if kind == "flow":
        image = Image.fromarray(smooth(rng, 24, 24))
    elif kind == "raw":
        image = Image.fromarray(noise(rng, (16, 16, 3)))
    else:
        image = make_image("P", rng)
    icc = b"fake-icc-profile\x00\xff" * 5
    image.info["icc_profile"] = icc
    data = round_trip(image, tile=16)
    assert describe(data)["method"] == kind
    assert describe(data)["icc_profile_bytes"] == len(icc)
    assert decompress(data, RGB_MODEL).info["icc_profile"] == icc
    del image.info["icc_profile"]
    plain = compress(image, RGB_MODEL, tile=16)
    assert "icc_profile" not in decompress(plain, RGB_MODEL).info
    assert describe(plain)["icc_profile_bytes"] == 0
    if kind != "png":  # (a PNG payload carries its own copy of the profile too)
        assert len(plain) == len(data) - 4 - len(icc)


def test_decoding_with_another_model_is_refused():
    data = compress(Image.fromarray(smooth(np.random.default_rng(0), 24, 24)), RGB_MODEL,
                    tile=16)
    assert describe(data)["method"] == "flow"
    with pytest.raises(ModelError, match="'tiny'"):
        decompress(data, OTHER_MODEL)
    with pytest.raises(ModelError, match="'tiny'"):
        decompress(data)  # the name in the file resolves to no model


def test_model_can_be_given_as_an_unexported_float_model():
    image = Image.fromarray(smooth(np.random.default_rng(0), 24, 24))
    data = compress(image, sharp_model(), tile=16)
    same_image(decompress(data, sharp_model()), image)
    assert describe(data)["model_id"] == RGB_MODEL.sha256[:8].hex()


def test_arrays_and_paths_are_accepted(tmp_path):
    rng = np.random.default_rng(0)
    pixels = smooth(rng, 9, 12)
    from_array = compress(pixels, RGB_MODEL, tile=8)
    np.testing.assert_array_equal(np.asarray(decompress(from_array, RGB_MODEL)), pixels)
    path = tmp_path / "x.png"
    Image.fromarray(pixels).save(path)
    assert compress(path, RGB_MODEL, tile=8) == from_array
    assert compress(str(path), RGB_MODEL, tile=8) == from_array
    grey = pixels[..., 0]
    assert decompress(compress(grey, GREY_MODEL, tile=8), GREY_MODEL).mode == "L"


@pytest.mark.parametrize("bad", [
    lambda: np.zeros((4, 4, 3), np.float32),
    lambda: np.zeros((2, 4, 4, 3), np.uint8),
    lambda: Image.new("CMYK", (4, 4)),
    lambda: Image.new("F", (4, 4)),
    lambda: Image.new("I", (4, 4)),
])
def test_unsupported_inputs_raise_value_error(bad):
    with pytest.raises(ValueError):
        compress(bad(), RGB_MODEL)


@pytest.mark.parametrize("tile", [0, 7, 65536])
def test_tile_size_is_validated(tile):
    with pytest.raises(ValueError, match="tile"):
        compress(np.zeros((4, 4, 3), np.uint8), RGB_MODEL, tile=tile)


def test_progress_counts_every_tile_once():
    rng = np.random.default_rng(0)
    image = Image.fromarray(smooth(rng, 40, 34))
    seen = []
    data = compress(image, RGB_MODEL, tile=16, batch_size=2, progress=seen.append)
    assert describe(data)["method"] == "flow"
    assert sum(seen) == 9
    seen.clear()
    decompress(data, RGB_MODEL, batch_size=4, progress=seen.append)
    assert sum(seen) == 9


def test_decompressed_image_is_independent_of_the_input_buffer():
    image = Image.fromarray(smooth(np.random.default_rng(0), 8, 8))
    data = bytearray(compress(image, RGB_MODEL, tile=8))
    back = decompress(bytes(data), RGB_MODEL)
    data[:] = b"\x00" * len(data)
    same_image(back, image)
    buf = io.BytesIO()
    back.save(buf, format="PNG")
    same_image(Image.open(io.BytesIO(buf.getvalue())), image)


def test_a_corrupt_flow_file_is_refused_by_the_checksum():
    data = bytearray(compress(Image.fromarray(smooth(np.random.default_rng(0), 24, 24)),
                              RGB_MODEL, tile=16))
    assert describe(bytes(data))["method"] == "flow"
    data[12] ^= 1  # the stored CRC-32
    with pytest.raises(CodingError, match="checksum"):
        decompress(bytes(data), RGB_MODEL)


# -- palette images -----------------------------------------------------------------------------

@settings(max_examples=20, deadline=None, derandomize=True)
@given(colours=st.integers(0, 256), top=st.integers(0, 255), side=st.integers(1, 12),
       transparency=st.one_of(st.none(), st.integers(0, 255)), seed=st.integers(0, 2**16))
def test_palette_images_round_trip_or_are_refused_up_front(colours, top, side, transparency,
                                                          seed):
    """Never a file that cannot be decoded: PNG cannot keep an empty palette or pixel values
    beyond the palette, so such images must be refused by compress()."""
    rng = np.random.default_rng(seed)
    image = Image.frombytes("P", (side, side + 1),
                            rng.integers(0, top + 1, side * (side + 1), np.uint8).tobytes())
    image.putpalette(rng.integers(0, 256, 3 * colours, np.uint8).tobytes())
    if transparency is not None:
        image.info["transparency"] = transparency
    try:
        data = compress(image, RGB_MODEL)
    except ValueError as err:
        assert "palette" in str(err)
        assert colours == 0 or top >= colours  # a well-formed palette image is always stored
        return
    same_image(decompress(data, RGB_MODEL), image)
    assert describe(data)["method"] == "png"


def test_palette_regressions():
    """Regression: these compressed 'successfully' into files that failed their checksum."""
    empty = Image.new("P", (4, 4))
    short = Image.frombytes("P", (4, 4), bytes(range(16)))
    short.putpalette([10, 20, 30, 40, 50, 60])
    for image in (empty, short):
        with pytest.raises(ValueError, match="palette"):
            compress(image, RGB_MODEL)
    fine = Image.frombytes("P", (4, 4), bytes([0, 1] * 8))
    fine.putpalette([10, 20, 30, 40, 50, 60])
    round_trip(fine)


def test_bitstream_is_stable():
    """The bytes of a file are part of the format: a change to the coder, the tables or the
    integer networks that alters them breaks every file already written. If a change is meant,
    bump the format version and update the digest, and keep a file of the old version that
    must still decode (tests/data; version 1 of this file, digest 040e0c42c4706422, is
    test_container.test_version_1_file_of_the_pinned_bitstream_still_decodes)."""
    import hashlib
    rng = np.random.default_rng(7)
    data = compress(np.concatenate([smooth(rng, 20, 37), mid_grey(rng, 20, 37)]), RGB_MODEL,
                    tile=16)
    assert describe(data)["method"] == "flow"
    assert describe(data)["format_version"] == 2
    assert hashlib.sha256(data).hexdigest()[:16] == "ca09eb45ae542a02"


@pytest.fixture
def shipped_tiny(tmp_path, monkeypatch):
    """A shipped model 'tiny' with a current and an earlier release (weights in tmp_path)."""
    from idfzip import zoo
    from idfzip.intnet import to_integer
    from idfzip.weights import save_model
    earlier = to_integer(sharp_model(seed=0))
    earlier_sha = save_model(earlier, tmp_path / "tiny-earlier.pt")
    current_sha = save_model(to_integer(sharp_model(seed=1)), tmp_path / "tiny.pt")
    monkeypatch.setattr(zoo, "WEIGHTS", tmp_path)
    monkeypatch.setitem(zoo.SHIPPED, "tiny", zoo.ShippedModel("tiny", "tiny.pt", current_sha))
    zoo._coding_model.cache_clear()
    yield earlier, zoo.ShippedModel("tiny", "tiny-earlier.pt", earlier_sha), current_sha
    zoo._coding_model.cache_clear()


def test_files_of_an_earlier_release_of_a_shipped_model_still_decode(shipped_tiny, monkeypatch):
    from idfzip import zoo
    earlier, earlier_entry, current_sha = shipped_tiny
    image = Image.fromarray(mid_grey(np.random.default_rng(3), 20, 28))
    old_file = compress(image, CodingModel(earlier, "tiny"), tile=16)
    new_file = compress(image, "tiny", tile=16)
    assert describe(new_file)["model_id"] == current_sha[:16]
    assert describe(old_file)["model_id"] == earlier_entry.sha256[:16]
    with pytest.raises(ModelError, match="does not ship"):
        decompress(old_file)  # the earlier weights are not listed
    monkeypatch.setitem(zoo.EARLIER, "tiny", (earlier_entry,))
    for data in (old_file, new_file):
        same_image(decompress(data), image)
        same_image(decompress(data, "tiny"), image)  # naming the model picks the release too


def test_compress_leaves_the_callers_float_model_untouched():
    model = tiny_model(5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10, 3), np.uint8))
    data = compress(image, model)
    assert not model.is_integer
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert np.array_equal(np.asarray(decompress(data, model)), np.asarray(image))
