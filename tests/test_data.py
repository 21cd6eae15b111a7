import hashlib

import numpy as np
import pytest

from idfzip.data import DataError, center_crops, load_cifar10, load_images, split_holdout

from .conftest import shared_data


def test_cifar10_test_mosaic_decodes_to_the_published_array():
    folder = shared_data("cifar10")
    x = load_cifar10(folder, "test")
    assert x.shape == (10000, 3, 32, 32) and x.dtype == np.uint8
    hwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    assert hashlib.sha256(hwc.tobytes()).hexdigest() == (
        "f9b1e2130bab680db56eb06d886f7f1ad0f1183907ceff4659d1735c890f5b04")


def test_npz_and_folder_sources(tmp_path):
    from PIL import Image
    arr = np.random.default_rng(0).integers(0, 256, (4, 10, 12, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=arr)
    images = load_images(tmp_path / "a.npz")
    assert len(images) == 4 and np.array_equal(images[1], arr[1].transpose(2, 0, 1))
    (tmp_path / "f").mkdir()
    Image.fromarray(arr[0]).save(tmp_path / "f" / "0.png")
    assert np.array_equal(load_images(tmp_path / "f")[0], arr[0].transpose(2, 0, 1))
    grey = load_images(tmp_path / "f", channels=1)[0]
    assert grey.shape == (1, 10, 12)
    assert np.array_equal(grey[0], np.asarray(Image.fromarray(arr[0]).convert("L")))


def test_bad_sources(tmp_path):
    np.savez(tmp_path / "bad.npz", y=np.zeros(3))
    with pytest.raises(DataError, match="bad.npz"):
        load_images(tmp_path / "bad.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_images(tmp_path / "empty")


def test_holdout_and_center_crops():
    images = [np.full((3, 10 + i, 12, ), i, np.uint8) for i in range(10)]
    train, held = split_holdout(images, 0.2, seed=0)
    assert len(train) == 8 and len(held) == 2
    crops = center_crops(held, 8)
    assert all(c.shape == (3, 8, 8) for c in crops)
