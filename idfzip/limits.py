"""What coding may cost whatever a file's header says, in one place: the memory budget of
coding a batch of tiles, and the checks a file's streams pass before any network runs.
(The header's own fields, the image size included, are validated when it is parsed, in
:mod:`idfzip.container`; the output image's size is the pixel limit's business.)

Memory. Coding works on one batch of tiles at a time (two at once when decoding overlaps
batches on a GPU); a batch holds at most ``batch_size`` tiles and at most ``BATCH_PIXELS``
tile pixels, so the largest tile (``MAX_TILE``, 2048) is coded alone. The networks run on
strips of rows of at most ``NET_CHUNK_ELEMENTS`` activation elements, both limbs
(:class:`idfzip.intnet.IntegerConvNet`), so their memory does not grow with the tile either.
What remains grows with the batch's pixels (float64 latents, the entropy coder's arrays):
the measured peak resident memory of coding one 2048x2048 RGB tile, the most a batch holds,
is in the README (1.3 GB decoding, 3.1 GB before these bounds). Beyond it only the output
image (its decoded planes, then the PIL image) and the file's bytes are held.

Streams. Every symbol costs at least ``MIN_SYMBOL_BITS`` bits (see the note below), so a
tile's stream must be at least :func:`min_stream_words` long: an empty or short stream is
refused before any network runs (:func:`idfzip.codec.decode_image`), and the encoder checks
its own streams against the same bound (an image whose streams would fail it is stored as
PNG or raw instead, :func:`idfzip.api.compress`).
"""

from __future__ import annotations

import math

MAX_TILE = 2048  # largest tile side a file may name
BATCH_PIXELS = 1 << 22  # tile pixels per batch: one 2048x2048 tile, or 16 of 512x512
NET_CHUNK_ELEMENTS = 1 << 24  # a network's widest activation per pass, both limbs (64 MiB)

# The most probable symbol of any coding table has probability at most 0.9867: each latent's
# logistic has scale >= 0.1 (distributions.LOG_SCALE_MIN), whose most likely integer holds
# 2 sigmoid(0.5 / 0.1) - 1 = 0.98661 of its mass (a mixture of such logistics no more), and
# the coder's 24-bit quantisation adds at most a few 2^-24; so a symbol carries at least
# -log2(0.9867) = 0.0193 bits. rANS stores that information in its 64-bit state, whose
# rounding can lose up to log2(256/255) = 0.0056 bits per symbol (state >= 2^32, frequencies
# <= 2^24), and its first symbols, from an empty state, can cost less: 0.01 bits per symbol
# beyond a 64-bit start is a bound with margin (measured: 0.0204 bits per symbol for a
# million copies of the most probable symbol of the most peaked table).
MIN_SYMBOL_BITS = 0.01
START_BITS = 64


def min_stream_words(symbols: int) -> int:
    """The fewest 32-bit words a stream holding ``symbols`` coded symbols can have (at least
    one: every stream the encoder writes has a nonzero final state)."""
    return max(1, math.ceil((symbols * MIN_SYMBOL_BITS - START_BITS) / 32))


def tiles_per_batch(tile_pixels: int, batch_size: int) -> int:
    """Tiles of ``tile_pixels`` pixels coded in one batch: ``batch_size``, fewer where that
    would exceed ``BATCH_PIXELS`` (batching never changes a file or its pixels)."""
    return max(1, min(batch_size, BATCH_PIXELS // max(1, tile_pixels)))
