"""Reading images into the (C, H, W) uint8 arrays the model works on, with one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".png", ".bmp", ".ppm", ".pgm", ".pnm", ".tif", ".tiff", ".webp", ".jpg",
                  ".jpeg", ".gif", ".tga"}


class ImageReadError(ValueError):
    """An input could not be read as an image; the message names the file and the problem."""


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
