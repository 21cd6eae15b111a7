"""The integer grids of the exported networks, shared by the export (:mod:`idfzip.intnet`) and
by quantisation-aware training (fake quantisation in :class:`idfzip.nets.ConvNet`).

All scales are powers of two: weights ``round(w * 2^e)`` with ``|W| < 2^WEIGHT_BITS``,
activations on a ``2^-ACTIVATION_BITS`` grid, inputs (integer latents) in units of
``INPUT_SCALE = 2^-INPUT_BITS``. Rounding is half up, ``floor(x + 1/2)``, everywhere.
"""

from __future__ import annotations

import math

import torch

WEIGHT_BITS = 15
ACTIVATION_BITS = 12
INPUT_BITS = 7  # nets.INPUT_SCALE == 2^-INPUT_BITS


def weight_exponent(weight: torch.Tensor) -> int:
    """Largest ``e`` with ``max|weight| * 2^e < 2^WEIGHT_BITS``."""
    peak = float(weight.detach().abs().max())
    if peak == 0.0:
        return 0
    return WEIGHT_BITS - math.frexp(peak)[1]


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5)


def fake_quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``x`` rounded to the ``2^-bits`` grid in the forward pass, identity in the backward."""
    scale = 2.0**bits
    return x + (round_half_up(x * scale) / scale - x).detach()
