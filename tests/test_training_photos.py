"""scripts/training_photos.py: the processing of one photo (no network, no apt)."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from idfzip.data import load_images

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "training_photos.py"
_spec = importlib.util.spec_from_file_location("training_photos", SCRIPT)
tp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tp)


def _photo(width: int = 301, height: int = 203, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = 128 + 60 * np.sin(x / 17.0) * np.cos(y / 23.0)
    rgb = np.dstack([base, base[::-1], base[:, ::-1]]) + rng.normal(0, 4, (height, width, 3))
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).convert(mode)


def test_scale_factor_is_deterministic_in_range_and_per_file():
    factors = [tp.scale_factor(0, f"pkg/img{i}.jpg") for i in range(200)]
    assert factors == [tp.scale_factor(0, f"pkg/img{i}.jpg") for i in range(200)]
    assert all(2.0 <= f < 4.0 for f in factors)
    assert len(set(factors)) == 200 and min(factors) < 2.2 and max(factors) > 3.8
    assert tp.scale_factor(1, "pkg/img0.jpg") != factors[0]
    # a pure function of (seed, key): pinned, so a changed recipe cannot go unnoticed
    digest = hashlib.sha256(b"0\0pkg/img0.jpg").digest()
    assert factors[0] == 2.0 + 2.0 * int.from_bytes(digest[:8], "big") / 2**64


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_downscale_gives_rgb_of_the_rounded_size(mode):
    small = tp.downscale(_photo(mode=mode), 2.5)
    assert small.mode == "RGB" and small.size == (round(301 / 2.5), round(203 / 2.5))
    assert tp.downscale(_photo(), 3.0, max_side=50).size == (50, round(203 * 50 / 301))


def test_downscale_refuses_transparency():
    im = _photo(mode="RGBA")
    im.putpixel((0, 0), (1, 2, 3, 0))
    with pytest.raises(ValueError):
        tp.downscale(im, 2.0)


def test_process_image_writes_a_lossless_webp_and_its_manifest_entry(tmp_path):
    src = tmp_path / "src.jpg"
    _photo().save(src, quality=90)
    out = tmp_path / "out"
    out.mkdir()
    entry = tp.process_image(src, out / "pkg_src.webp", seed=0, key="pkg/src.jpg")

    factor = tp.scale_factor(0, "pkg/src.jpg")
    size = [round(301 / factor), round(203 / factor)]
    assert entry["scale"] == factor and entry["size"] == size
    assert entry["source_size"] == [301, 203] and entry["source_format"] == "JPEG"
    assert entry["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    written = (out / "pkg_src.webp").read_bytes()
    assert entry["sha256"] == hashlib.sha256(written).hexdigest()
    assert entry["bytes"] == len(written) and entry["pixels"] == size[0] * size[1]
    with Image.open(out / "pkg_src.webp") as im:
        assert im.format == "WEBP" and im.mode == "RGB" and list(im.size) == size
        pixels = np.asarray(im)
    with Image.open(src) as im:
        expected = np.asarray(im.convert("RGB").resize(tuple(size), Image.Resampling.LANCZOS,
                                                       reducing_gap=None))
    assert np.array_equal(pixels, expected)  # lossless, and exactly the Lanczos result
    assert entry["pixels_sha256"] == hashlib.sha256(pixels.tobytes()).hexdigest()
    assert [f.name for f in out.iterdir()] == ["pkg_src.webp"]  # no temporary left behind

    again = tp.process_image(src, out / "pkg_src.webp", seed=0, key="pkg/src.jpg")
    assert again == entry  # deterministic
    [loaded] = load_images(out)  # the training loader reads the folder as it is
    assert loaded.shape == (3, size[1], size[0]) and np.array_equal(loaded.transpose(1, 2, 0), pixels)


def test_review_tables():
    assert tp.review("mate-backgrounds", "usr/share/backgrounds/mate/nature/Aqua.jpg")[0] == "photo"
    assert tp.review("mate-backgrounds", "usr/share/backgrounds/mate/abstract/Flow.png")[0] == "rejected"
    assert tp.review("plasma-workspace-wallpapers",
                     "usr/share/wallpapers/Path/contents/screenshot.jpg")[0] == "rejected"
    assert tp.review("gnome-backgrounds", "usr/share/backgrounds/gnome/wood-d.webp")[0] == "rejected"
    assert tp.review("some-package", "a.jpg")[0] == "not reviewed"
    names = [tp.output_name(pkg, path) for pkg, photos in tp.PHOTOS.items() for path in photos]
    assert len(set(names)) == len(names)
    assert tp.output_name("plasma-workspace-wallpapers",
                          "usr/share/wallpapers/Path/contents/images/2560x1600.jpg"
                          ) == "plasma-workspace-wallpapers_Path.webp"
