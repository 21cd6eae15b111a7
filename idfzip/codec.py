"""Coding images with a flow: tiles -> integer latents -> one rANS stream per tile, and back.

Each tile is coded independently (its own stream), so memory is bounded by the tile size and
tiles can be decoded in any grouping. Within a tile the stream holds, from the front: the
unconditioned top latent, then the factored-out latents from the deepest level to the first
(each as its prior lays it out, :mod:`idfzip.priors`); the decoder pops them in that order,
running each prior on what it has already decoded and inverting one level of the flow at a
time.

The model must be an integer export (:func:`idfzip.intnet.to_integer`): then every prior
parameter and translation is exact, and encoder and decoder agree bit for bit whatever the
batch size, thread count or machine.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable

import constriction
import numpy as np
import torch

from .allocator import reuse_freed_memory
from .intnet import exact_arithmetic
from .entropy import CodingError, SymbolCoder
from .limits import min_stream_words, tiles_per_batch
from .model import IntegerDiscreteFlow
from .priors import Prior

Progress = Callable[[int], None]


def _flat_batch(t: torch.Tensor, dtype=None) -> np.ndarray:
    """(B, ...) tensor -> (B, n) NumPy array on the CPU."""
    arr = t.detach().cpu().numpy().reshape(t.shape[0], -1)
    return arr.astype(dtype) if dtype is not None else arr


class FlowCodec:
    """Encodes and decodes batches of same-sized tiles with one integer flow model. Which
    priors the model has and how each is coded is theirs to say (:mod:`idfzip.priors`): the
    codec keeps one adapter per prior and the streams' bookkeeping."""

    def __init__(self, model: IntegerDiscreteFlow):
        if not model.is_integer:
            raise ValueError("coding needs an integer-exported model (idfzip.intnet.to_integer)")
        self.model = model.eval()
        reuse_freed_memory()
        self._adapters: dict[Prior, SymbolCoder] = {}

    def adapter(self, prior: Prior) -> SymbolCoder:
        """``prior``'s entropy-coding adapter, built once (a mixture's tables take a while)."""
        if prior not in self._adapters:
            self._adapters[prior] = prior.make_coder()
        return self._adapters[prior]

    @torch.no_grad()
    def analyse(self, tiles: np.ndarray) -> list[list[tuple]]:
        """(B, C, h, w) uint8 tiles -> per tile, what its stream codes: ``(prior, latent,
        params)`` units in decoding order, flat NumPy arrays on the CPU. This is the network's
        work."""
        with exact_arithmetic(self.model.device):
            units = self.model.coding_units(*self.model.analyse(torch.from_numpy(tiles)))
        flat = [(prior, _flat_batch(z, np.int64), [_flat_batch(p) for p in params])
                for prior, z, params in units]
        return [[(prior, z[i], [p[i] for p in params]) for prior, z, params in flat]
                for i in range(tiles.shape[0])]

    def code(self, analysis: list[list[tuple]]) -> list[bytes]:
        """Entropy coding of :meth:`analyse`'s output: one stream per tile (CPU only). A stream
        is a stack, so the units go in last to first."""
        streams = []
        for units in analysis:
            coder = constriction.stream.stack.AnsCoder()
            for prior, z, params in reversed(units):
                self.adapter(prior).encode(coder, z, *params)
            streams.append(coder.get_compressed().tobytes())
        return streams

    @torch.no_grad()
    def decode(self, streams: list[bytes], height: int, width: int) -> np.ndarray:
        """Streams of ``height`` x ``width`` tiles -> (B, C, height, width) uint8 tiles: the
        model's generative walk, each latent read from the streams as its turn comes."""
        coders = [constriction.stream.stack.AnsCoder(_words(s)) for s in streams]
        config = self.model.config
        left = symbols_per_tile(config.channels, height, width, config.block)

        def read(prior: Prior, params: tuple, out: torch.Tensor) -> None:
            nonlocal left
            flat = [_flat_batch(p) for p in params]
            adapter = self.adapter(prior)
            for i, coder in enumerate(coders):  # exact in float64: latents lie below 2^31
                values = adapter.decode(coder, *(p[i] for p in flat))
                out[i].copy_(torch.from_numpy(values).view(out.shape[1:]))
            left -= out[0].numel()
            if not left and not all(c.is_empty() for c in coders):  # before the last level
                raise CodingError("damaged .idf payload (a tile's stream has data left over "
                                  "after its last symbol)")

        def draw(prior: Prior, cond, out: torch.Tensor) -> None:
            prior.decode(read, cond, out)
        with exact_arithmetic(self.model.device):
            x = self.model.synthesize(draw, len(streams), height, width)
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
    """Indices of tiles grouped into batches of equal tile shape, at most batch_size each and
    at most :data:`idfzip.limits.BATCH_PIXELS` pixels."""
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, (_, _, h, w) in enumerate(grid):
        by_shape.setdefault((h, w), []).append(i)
    for (h, w), indices in by_shape.items():
        size = tiles_per_batch(h * w, batch_size)
        for k in range(0, len(indices), size):
            yield indices[k: k + size]


def symbols_per_tile(channels: int, height: int, width: int, block: int) -> int:
    """Symbols a tile's stream codes at least: one per latent, i.e. per padded dimension."""
    return channels * (height + -height % block) * (width + -width % block)


def short_streams(streams: list[bytes], grid, channels: int, block: int) -> list[int]:
    """Indices of the tiles whose stream is shorter than the fewest bytes that can hold the
    tile's symbols (:func:`idfzip.limits.min_stream_words`)."""
    return [i for i, (stream, (_, _, h, w)) in enumerate(zip(streams, grid))
            if len(stream) < 4 * min_stream_words(symbols_per_tile(channels, h, w, block))]


class _Inline:
    """The executor interface, running everything at once in the calling thread."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    map = staticmethod(map)


def _workers(codec: FlowCodec, overlap: bool | None, threads: int):
    """Worker threads when overlapping, by default when the networks run on a GPU: then the
    CPU's entropy coding of one batch and the GPU's network work on another proceed at the
    same time. On a CPU both would compete for the same cores, so all runs in this thread."""
    if codec.model.device.type == "cuda" if overlap is None else overlap:
        return ThreadPoolExecutor(threads)
    return contextlib.nullcontext(_Inline())


def encode_image(codec: FlowCodec, image: np.ndarray, tile: int, batch_size: int = 4,
                 progress: Progress | None = None, overlap: bool | None = None) -> list[bytes]:
    """(C, H, W) uint8 -> one stream per tile of :func:`tile_grid`. With ``overlap``, a worker
    thread entropy-codes each batch while the network analyses the next."""
    grid = tile_grid(image.shape[1], image.shape[2], tile)
    streams: list[bytes] = [b""] * len(grid)
    pending: list = []

    def finish(batch, job):
        for i, stream in zip(batch, job.result()):
            streams[i] = stream
        if progress:
            progress(len(batch))
    with exact_arithmetic(codec.model.device), _workers(codec, overlap, 1) as coder:
        for batch in _batches(grid, batch_size):
            tiles = np.stack([image[:, t: t + h, l: l + w]
                              for t, l, h, w in (grid[i] for i in batch)])
            pending.append((batch, coder.submit(codec.code, codec.analyse(tiles))))
            while pending and (pending[0][1].done() or len(pending) > 2):  # bounded queue
                finish(*pending.pop(0))
        for batch, job in pending:
            finish(batch, job)
    return streams


def decode_image(codec: FlowCodec, streams: list[bytes], channels: int, height: int, width: int,
                 tile: int, batch_size: int = 4, progress: Progress | None = None,
                 overlap: bool | None = None) -> np.ndarray:
    """Inverse of :func:`encode_image`. With ``overlap``, two batches are decoded at once, so
    one's entropy decoding runs while the other's networks do."""
    grid = tile_grid(height, width, tile)
    if len(streams) != len(grid):
        raise CodingError(f"expected {len(grid)} tile streams, found {len(streams)}")
    config = codec.model.config
    short = short_streams(streams, grid, config.channels, config.block)
    if short:  # before any network runs: an empty or short stream cannot hold its tile
        i = short[0]
        raise CodingError(f"damaged .idf payload (tile {i}: {len(streams[i])}-byte stream "
                          f"is too short for a {grid[i][3]}x{grid[i][2]} tile)")
    image = np.empty((channels, height, width), np.uint8)

    def decode_batch(batch):
        _, _, h, w = grid[batch[0]]
        return batch, codec.decode([streams[i] for i in batch], h, w)
    with exact_arithmetic(codec.model.device), _workers(codec, overlap, 2) as pool:
        for batch, tiles in pool.map(decode_batch, _batches(grid, batch_size)):
            for i, tile_pixels in zip(batch, tiles):
                t, l, h, w = grid[i]
                image[:, t: t + h, l: l + w] = tile_pixels
            if progress:
                progress(len(batch))
    return image
