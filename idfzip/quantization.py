"""The integer grids of the exported networks, shared by the export (:mod:`idfzip.intnet`) and
by quantisation-aware training (fake quantisation in :class:`idfzip.nets.ConvNet`).

The export computes every convolution in float32, the fast path of every CPU and GPU, and
must still be exact, so every partial sum has to stay an integer of at most
``ACCUMULATOR_LIMIT = 2^23`` (float32 holds every integer up to 2^24; the spare bit keeps
the requantisation exact too). Two devices make that possible without coarse grids:

* Limbs: a layer's integer input ``x`` (|x| <= 2^14) is split into ``x = 2^7 x_hi + x_lo``
  with ``|x_hi|, x_lo <= 2^7``; both limbs go through the convolution (as one batch) and the
  two exact results are combined afterwards.
* Per-layer weight scales: ``W = round(w * 2^e)``, ``B = round(b * 2^(e + input_bits))`` with
  ``e`` chosen so that ``2^7 * sum_i |W_oi| + |B_o| <= 2^23`` for every output channel ``o``:
  a bound on the sum in any order, so the result is the same on every machine, thread count
  and batch shape.

Grids: activations are the bounded ReLU's output on a ``2^-ACTIVATION_BITS`` grid, integers
``0..ACTIVATION_TOP``; inputs are integer latents in units of ``INPUT_SCALE = 2^-INPUT_BITS``,
clipped to ``+-INPUT_LIMIT``. Rounding is half up, ``floor(x + 1/2)``, everywhere; all scales
are powers of two.
"""

from __future__ import annotations

import math

import torch

ACTIVATION_MAX = 6.0  # upper bound of the bounded ReLU
ACTIVATION_BITS = 10
ACTIVATION_TOP = int(ACTIVATION_MAX * 2**ACTIVATION_BITS)  # largest integer activation, 6144
INPUT_BITS = 7
LIMB_BITS = 7
INPUT_LIMIT = 2 ** (2 * LIMB_BITS)  # |latent| seen by a network; two limbs hold it
ACCUMULATOR_LIMIT = 2**23
MAX_SHIFT = 24  # requantisation divides by at most 2^24 (adding its half stays exact)


def layer_exponent(weight: torch.Tensor, bias: torch.Tensor, input_bits: int) -> int:
    """The weight exponent ``e`` of a layer: the largest (up to a cap that keeps the
    requantisation shift at most ``MAX_SHIFT``) with ``2^LIMB_BITS * sum_i |round(w_oi 2^e)|
    + |round(b_o 2^(e + input_bits))| <= ACCUMULATOR_LIMIT`` for every output channel ``o``."""
    w = weight.detach().double().reshape(weight.shape[0], -1)
    b = bias.detach().double()
    bound = 2.0**LIMB_BITS

    def peak(e: int, rounded: bool = True) -> float:
        wi, bi = w * 2.0**e, b * 2.0 ** (e + input_bits)
        if rounded:
            wi, bi = round_half_up(wi), round_half_up(bi)
        return float((bound * wi.abs().sum(1) + bi.abs()).max())

    e = MAX_SHIFT + ACTIVATION_BITS - input_bits
    real = peak(0, rounded=False)
    if real > 0.0:
        e = min(e, math.floor(math.log2(ACCUMULATOR_LIMIT / real)))
    while peak(e) > ACCUMULATOR_LIMIT:  # rounding up may cross the limit
        e -= 1
    return e


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5)


def fake_quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``x`` rounded to the ``2^-bits`` grid in the forward pass, identity in the backward."""
    scale = 2.0**bits
    return x + (round_half_up(x * scale) / scale - x).detach()
