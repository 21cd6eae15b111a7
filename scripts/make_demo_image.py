#!/usr/bin/env python3
"""Write data/demo.png: a 256x192 synthetic image with the 1/f spectrum of natural photos
(made here, so the project owns it), used by the README's first command.

    python scripts/make_demo_image.py [OUT]
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def demo_image(height: int = 192, width: int = 256, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :]
    f = np.sqrt(fy**2 + fx**2)
    f[0, 0] = 1.0
    field = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(height, width))) / f**1.2))
    field = (field - field.mean()) / field.std()
    channels = [128 + 45 * field + 8 * tint * field**2 for tint in (1, 0, -1)]
    return np.dstack(channels).clip(0, 255).astype(np.uint8)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[1] / "data" / "demo.png")
    Image.fromarray(demo_image()).save(out)
    print(out)
