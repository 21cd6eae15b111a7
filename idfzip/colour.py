"""Reversible integer colour transforms applied to pixels before the flow (issue #13).

A flow has to learn the strong correlation between R, G and B from data; a fixed decorrelating
transform hands it luma and chroma from the first step. The transform must map integers to
integers with an exact inverse, or coding would not be lossless: YCoCg-R (Malvar & Sullivan,
2003) does, by lifting steps that each add a floored function of the other channels::

    Co = R - B;  t = B + floor(Co / 2);  Cg = G - t;  Y = t + floor(Cg / 2)

Applied to pixels centred on zero (``p - 128``) it gives ``Y - 128``, ``Co``, ``Cg``: the offset
cancels in the differences, so the flow's input is centred too. For 8-bit pixels ``Y`` stays in
0..255 and ``Co``, ``Cg`` lie in -255..255, far inside the networks' input clip
(:data:`idfzip.quantization.INPUT_LIMIT`).

Tensors are (N, 3, H, W) with integer values in any dtype; floor division of such values is
exact in float32 and float64.
"""

from __future__ import annotations

from typing import Callable

import torch


def _half(x: torch.Tensor) -> torch.Tensor:
    return torch.div(x, 2, rounding_mode="floor")


def ycocg_r(rgb: torch.Tensor) -> torch.Tensor:
    """RGB -> (Y, Co, Cg) by the lifting steps of the module docstring."""
    r, g, b = rgb.unbind(1)
    co = r - b
    t = b + _half(co)
    cg = g - t
    return torch.stack([t + _half(cg), co, cg], dim=1)


def ycocg_r_inverse(ycocg: torch.Tensor) -> torch.Tensor:
    """(Y, Co, Cg) -> RGB: the lifting steps of :func:`ycocg_r` undone in reverse order, exact
    for any integers."""
    y, co, cg = ycocg.unbind(1)
    t = y - _half(cg)
    g = cg + t
    b = t - _half(co)
    return torch.stack([b + co, g, b], dim=1)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


# name -> (forward, inverse), the values of FlowConfig.colour_transform
COLOUR_TRANSFORMS: dict[str, tuple[Callable, Callable]] = {
    "none": (_identity, _identity),
    "ycocg-r": (ycocg_r, ycocg_r_inverse),
}
