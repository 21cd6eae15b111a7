"""Training data: CIFAR-10 mosaics, .npz arrays and folders of images, sampled as random crops.

Sampling is a pure function of ``(seed, step)``, so a resumed run sees exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .imageio import ImageReadError, image_files, read_image

CIFAR_TILE = 32
CIFAR_COLUMNS = 200
CIFAR_FILES = {"train": ["train_0.webp", "train_1.webp"], "test": ["test.webp"]}


class DataError(ValueError):
    """Training or evaluation data is missing or unreadable."""


def is_cifar10_dir(path: Path) -> bool:
    return path.is_dir() and (path / "train_0.webp").is_file()


def load_cifar10(folder: str | Path, split: str = "train") -> np.ndarray:
    """CIFAR-10 stored as lossless WebP mosaics of 32x32 tiles -> (N, 3, 32, 32) uint8."""
    parts = []
    for name in CIFAR_FILES[split]:
        path = Path(folder) / name
        try:
            with Image.open(path) as im:
                mosaic = np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: cannot read CIFAR-10 mosaic ({err})") from None
        rows = mosaic.shape[0] // CIFAR_TILE
        tiles = mosaic.reshape(rows, CIFAR_TILE, CIFAR_COLUMNS, CIFAR_TILE, 3)
        parts.append(tiles.transpose(0, 2, 4, 1, 3).reshape(-1, 3, CIFAR_TILE, CIFAR_TILE))
    return np.ascontiguousarray(np.concatenate(parts))


def load_images(source: str | Path, channels: int = 3) -> list[np.ndarray]:
    """Every image of a source as (C, H, W) uint8 arrays.

    A source is a CIFAR-10 mosaic folder (its training split), an ``.npz`` file with an
    ``x`` array of (N, H, W, C) images, a folder of image files, or one image file.
    """
    path = Path(source)
    if not path.exists():
        raise DataError(f"{source}: no such file or folder")
    if is_cifar10_dir(path):
        images = list(load_cifar10(path, "train"))
    elif path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                arr = npz["x"]
        except (OSError, ValueError, KeyError) as err:
            raise DataError(f"{source}: not an .npz with an 'x' image array ({err})") from None
        if arr.dtype != np.uint8 or arr.ndim != 4:
            raise DataError(f"{source}: 'x' must be uint8 (N, H, W, C), got {arr.dtype} {arr.shape}")
        images = list(arr.transpose(0, 3, 1, 2))
    else:
        files = image_files(path) if path.is_dir() else [path]
        if not files:
            raise DataError(f"{source}: no image files found")
        try:
            images = [read_image(f, channels) for f in files]
        except ImageReadError as err:
            raise DataError(str(err)) from None
    return [_to_channels(im, channels) for im in images]


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    if image.shape[0] == channels:
        return image
    if channels == 1 and image.shape[0] == 3:  # ITU-R 601 luma, as Pillow's convert("L")
        r, g, b = image.astype(np.uint32)
        return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)[None]
    raise DataError(f"cannot convert {image.shape[0]}-channel images to {channels} channels")


def split_holdout(images: list[np.ndarray], fraction: float, seed: int):
    """Split images into (train, held-out) by a seeded permutation; at least one held out."""
    if len(images) < 2:
        raise DataError("need at least 2 images to hold some out for evaluation")
    order = np.random.default_rng(seed).permutation(len(images))
    n_eval = max(1, int(round(len(images) * fraction)))
    return [images[i] for i in order[n_eval:]], [images[i] for i in order[:n_eval]]


@dataclass
class CropSampler:
    """Random ``crop`` x ``crop`` patches with random flips; batch ``step`` depends only on
    ``(seed, step)``. Images are drawn in proportion to the number of crops they offer."""

    images: list[np.ndarray]
    crop: int
    seed: int = 0

    def __post_init__(self):
        self.images = [im for im in self.images if min(im.shape[1:]) >= self.crop]
        if not self.images:
            raise DataError(f"no training image is at least {self.crop}x{self.crop}")
        area = np.array([(im.shape[1] - self.crop + 1) * (im.shape[2] - self.crop + 1)
                         for im in self.images], dtype=np.float64)
        self.weights = area / area.sum()

    def batch(self, step: int, batch_size: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step])
        picks = rng.choice(len(self.images), size=batch_size, p=self.weights)
        out = np.empty((batch_size, self.images[0].shape[0], self.crop, self.crop), np.uint8)
        for k, i in enumerate(picks):
            im = self.images[i]
            y = rng.integers(0, im.shape[1] - self.crop + 1)
            x = rng.integers(0, im.shape[2] - self.crop + 1)
            patch = im[:, y: y + self.crop, x: x + self.crop]
            if rng.random() < 0.5:
                patch = patch[:, :, ::-1]
            out[k] = patch
        return out


def center_crops(images: list[np.ndarray], size: int) -> list[np.ndarray]:
    """Deterministic evaluation patches: the central ``size`` x ``size`` of each image (or all
    of it when smaller)."""
    out = []
    for im in images:
        h, w = im.shape[1:]
        y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
        out.append(np.ascontiguousarray(im[:, y: y + size, x: x + size]))
    return out
