"""Coding images with a flow: tiles -> integer latents -> one rANS stream per tile, and back.

Each tile is coded independently (its own stream), so memory is bounded by the tile size and
tiles can be decoded in any grouping. Within a tile the stream holds, from the front: the
unconditioned top latent, then the factored-out latents from the deepest level to the first;
the decoder pops them in that order, running each prior on what it has already decoded and
inverting one level of the flow at a time.

The model must be an integer export (:func:`idfzip.intnet.to_integer`): then every prior
parameter and translation is exact, and encoder and decoder agree bit for bit whatever the
batch size, thread count or machine.
"""

from __future__ import annotations

from typing import Callable, Iterable

import constriction
import numpy as np
import torch

from .allocator import reuse_freed_memory
from .intnet import exact_arithmetic
from .entropy import CodingError, MixtureTables, decode_logistic, encode_logistic
from .model import PIXEL_OFFSET, IntegerDiscreteFlow

Progress = Callable[[int], None]


def _flat(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().reshape(-1)


class FlowCodec:
    """Encodes and decodes batches of same-sized tiles with one integer flow model."""

    def __init__(self, model: IntegerDiscreteFlow):
        if not model.is_integer:
            raise ValueError("coding needs an integer-exported model (idfzip.intnet.to_integer)")
        self.model = model.eval()
        reuse_freed_memory()
        logits, means, log_scales = (p.detach().cpu().numpy() for p in model.top_prior.params())
        self.top_tables = MixtureTables(logits, means, log_scales)

    def _channel_index(self, shape) -> np.ndarray:
        c, h, w = shape
        return np.repeat(np.arange(c, dtype=np.int64), h * w)

    @torch.no_grad()
    def encode(self, tiles: np.ndarray) -> list[bytes]:
        """(B, C, h, w) uint8 tiles -> one compressed stream per tile."""
        with exact_arithmetic(self.model.device):
            latents, params = self.model.analyse(torch.from_numpy(tiles))
        streams = []
        for i in range(tiles.shape[0]):
            coder = constriction.stream.stack.AnsCoder()
            for z, (mean, log_scale) in zip(latents[:-1], params):
                encode_logistic(coder, _flat(z[i]).astype(np.int64), _flat(mean[i]),
                                _flat(log_scale[i]))
            top = latents[-1][i]
            self.top_tables.encode(coder, _flat(top).astype(np.int64),
                                   self._channel_index(top.shape))
            streams.append(coder.get_compressed().tobytes())
        return streams

    @torch.no_grad()
    def decode(self, streams: list[bytes], height: int, width: int) -> np.ndarray:
        with exact_arithmetic(self.model.device):
            return self._decode(streams, height, width)

    def _decode(self, streams: list[bytes], height: int, width: int) -> np.ndarray:
        """Streams of ``height`` x ``width`` tiles -> (B, C, height, width) uint8 tiles."""
        model = self.model
        coders = [constriction.stream.stack.AnsCoder(_words(s)) for s in streams]
        block = model.config.block
        ph, pw = height + (-height % block), width + (-width % block)
        top_shape = (model.top_prior.channels, ph // block, pw // block)
        channel_of = self._channel_index(top_shape)
        y = torch.stack([torch.from_numpy(self.top_tables.decode(c, channel_of).reshape(top_shape))
                         for c in coders]).to(model.device, model.dtype)
        for index in reversed(range(len(model.levels))):
            mean, log_scale = model.priors[index].params(y)
            z = torch.stack([
                torch.from_numpy(decode_logistic(c, _flat(mean[i]), _flat(log_scale[i])))
                for i, c in enumerate(coders)]).reshape(mean.shape)
            y = model.inverse_level(index, y, z.to(model.device, model.dtype))
        x = (y + PIXEL_OFFSET)[..., :height, :width]
        if x.min() < 0 or x.max() > 255:
            raise CodingError("decoded pixels out of range: damaged data or wrong model")
        return x.to(torch.uint8).cpu().numpy()


def _words(stream: bytes) -> np.ndarray:
    if len(stream) % 4:
        raise CodingError("stream length is not a whole number of 32-bit words")
    return np.frombuffer(stream, dtype=np.uint32).copy()


def tile_grid(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """(top, left, h, w) of each tile, row by row."""
    return [(t, l, min(tile, height - t), min(tile, width - l))
            for t in range(0, height, tile) for l in range(0, width, tile)]


def _batches(grid, batch_size: int) -> Iterable[list[int]]:
    """Indices of tiles grouped into batches of equal tile shape, at most batch_size each."""
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, (_, _, h, w) in enumerate(grid):
        by_shape.setdefault((h, w), []).append(i)
    for indices in by_shape.values():
        for k in range(0, len(indices), batch_size):
            yield indices[k: k + batch_size]


def encode_image(codec: FlowCodec, image: np.ndarray, tile: int, batch_size: int = 4,
                 progress: Progress | None = None) -> list[bytes]:
    """(C, H, W) uint8 -> one stream per tile of :func:`tile_grid`."""
    grid = tile_grid(image.shape[1], image.shape[2], tile)
    streams: list[bytes] = [b""] * len(grid)
    for batch in _batches(grid, batch_size):
        tiles = np.stack([image[:, t: t + h, l: l + w] for t, l, h, w in (grid[i] for i in batch)])
        for i, stream in zip(batch, codec.encode(np.ascontiguousarray(tiles))):
            streams[i] = stream
        if progress:
            progress(len(batch))
    return streams


def decode_image(codec: FlowCodec, streams: list[bytes], channels: int, height: int, width: int,
                 tile: int, batch_size: int = 4, progress: Progress | None = None) -> np.ndarray:
    """Inverse of :func:`encode_image`."""
    grid = tile_grid(height, width, tile)
    if len(streams) != len(grid):
        raise CodingError(f"expected {len(grid)} tile streams, found {len(streams)}")
    image = np.empty((channels, height, width), np.uint8)
    for batch in _batches(grid, batch_size):
        _, _, h, w = grid[batch[0]]
        tiles = codec.decode([streams[i] for i in batch], h, w)
        for i, tile_pixels in zip(batch, tiles):
            t, l, _, _ = grid[i]
            image[:, t: t + h, l: l + w] = tile_pixels
        if progress:
            progress(len(batch))
    return image
