"""Pictures of latents for people: every channel of every level as a grey tile."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .imageio import image_grid
from .model import Latents


def _normalise(z: np.ndarray) -> np.ndarray:
    """Map a channel's values to 0..255 with its 1st..99th percentile range."""
    lo, hi = np.percentile(z, [1, 99])
    scale = 255.0 / max(hi - lo, 1.0)
    return np.clip((z - lo) * scale, 0, 255).astype(np.uint8)


def render_latents(latents: Latents, index: int = 0, height: int = 256) -> np.ndarray:
    """One (1, H, W) grey picture: for each level (left to right) a grid of its channels,
    each resized to the same height so the levels line up."""
    panels = []
    for z in latents.levels:
        channels = z[index].cpu().numpy()
        tiles = np.stack([_normalise(c)[None] for c in channels])
        grid = image_grid(tiles, gap=1)[0]
        w = max(1, round(grid.shape[1] * height / grid.shape[0]))
        panels.append(np.asarray(Image.fromarray(grid).resize((w, height), Image.NEAREST)))
        panels.append(np.full((height, 4), 255, np.uint8))
    return np.concatenate(panels[:-1], axis=1)[None]
