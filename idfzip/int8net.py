"""8-bit integer export of the flow's networks: exact, and fast on integer units (issue #14).

The arithmetic (one definition; the README's FORMAT section states it for other decoders). A
network is a chain of convolutions; layer ``l`` has per-output-channel integers: weights
``W[o, i, ky, kx]`` in -127..127, bias ``B[o]``, multiplier ``M[o]`` and shift ``S[o]``. Its
input ``v`` is integers, and it computes the accumulator

    ``acc[o, y, x] = sum_{i, ky, kx} W[o, i, ky, kx] v[i, y + ky - p, x + kx - p] + B[o]``

(zero padding ``p``), an exact integer, which becomes

* in a hidden layer, the next layer's activation
  ``a = clamp(floor((acc M + 2^(S-1)) / 2^S), 0, 127)`` (``2^(S-1)`` read as 0 for ``S < 1``):
  a bounded ReLU on the grid ``6 / 127``, rounded half up;
* in the last layer, the real output ``acc M 2^-S``, exact in float64.

The first layer reads the integer latents ``x``, clipped to ``[-2^13, 2^13 - 1]`` and split into
two limbs ``x = 2^7 h + l`` with ``h = floor(x / 2^7)`` in -64..63 and ``l`` in 0..127; its sum
over inputs is ``2^7 sum(W h) + sum(W l)``. Every input value is thus at most 127 in
magnitude, 7 bits: an 8-bit unsigned x 8-bit signed product pair then sums to at most
2 * 127 * 127 < 2^15, which CPUs without VNNI (AVX2's ``vpmaddubsw``) accumulate in 16 bits
with saturation: 8-bit activations were measured to come out wrong there, 7-bit ones exact.

The bound: for every output channel and every group of input channels the export chooses,
``127 * sum |W[o, i, ky, kx]|`` over the group is at most ``PARTIAL_LIMIT = 2^24``, checked at
export. So every partial sum is an integer that float32 holds exactly and int32 without
overflow, whatever the summation order: backends that sum in float32 (a float32 convolution on
CPU or GPU, oneDNN's int8 convolution with a float32 output) convolve group by group and add
the groups in float64, which is exact too. The result is the same integer on every backend,
machine, thread count and batch shape (see :mod:`idfzip.int8conv` for the backends).
"""

from __future__ import annotations

import torch
from torch import nn

from .int8conv import conv_sum
from .intnet import ExactNet
from .nets import ConvNet, INPUT_SCALE
from .quantization import ACTIVATION_MAX, round_half_up

WEIGHT_TOP = 127  # |W|; symmetric, so -W is representable too
ACTIVATION_TOP = 127  # activations 0..127: 7 bits (see the module docstring)
ACTIVATION_SCALE = ACTIVATION_TOP / ACTIVATION_MAX  # grid steps per unit of activation
LATENT_LIMIT = 2**13  # the first layer's inputs lie in [-2^13, 2^13 - 1]: two 7-bit limbs
LIMB = 2**7
PARTIAL_LIMIT = 2**24  # bound of every group's partial sum (float32 holds such integers)
MULTIPLIER_BITS = 15  # M in [2^14, 2^15]: requantisation to 15 significant bits


def requantization(ratio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer multiplier and shift ``(M, S)`` per channel with ``M 2^-S ~ ratio`` (> 0),
    ``M`` in ``[2^14, 2^15]``; relative error at most 2^-15."""
    ratio = ratio.double()
    shift = (MULTIPLIER_BITS - 1) - torch.floor(torch.log2(ratio))
    multiplier = round_half_up(ratio * torch.pow(2.0, shift))
    return multiplier.long(), shift.long()


def input_groups(weight: torch.Tensor, top: int = ACTIVATION_TOP) -> int:
    """The fewest contiguous groups of input channels (``torch.tensor_split``) for which every
    output channel's ``top * sum |W|`` over each group is at most ``PARTIAL_LIMIT``."""
    mass = weight.double().abs().sum(dim=(2, 3))  # (out, in)
    if float(mass.sum(1).max()) * top > PARTIAL_LIMIT * mass.shape[1]:
        raise ValueError("a single input channel's weights exceed the partial-sum bound")
    for groups in range(1, mass.shape[1] + 1):
        parts = torch.tensor_split(mass, groups, dim=1)
        if all(float(p.sum(1).max()) * top <= PARTIAL_LIMIT for p in parts):
            return groups
    raise ValueError("a single input channel's weights exceed the partial-sum bound")


def check_accumulator(weight: torch.Tensor, bias: torch.Tensor, first: bool) -> None:
    """Refuse a layer whose whole accumulator could leave int32 (``|acc| < 2^31``), so that
    integer backends may accumulate in 32 bits."""
    reach = (LIMB * LIMB // 2 + ACTIVATION_TOP) if first else ACTIVATION_TOP
    peak = weight.double().abs().flatten(1).sum(1) * reach + bias.double().abs()
    if float(peak.max()) >= 2**31:
        raise ValueError("a layer's accumulator could exceed 2^31: its weights are too large "
                         "for the 8-bit arithmetic")


class Int8Conv(nn.Module):
    """One convolution of the 8-bit arithmetic, exported from a float ``weight`` and ``bias``
    whose input is on a grid of ``input_scale`` steps per unit. ``last`` marks the output
    layer (real outputs instead of activations)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, padding: tuple,
                 input_scale: float, last: bool):
        super().__init__()
        w, b = weight.detach().double(), bias.detach().double()
        peak = w.abs().flatten(1).max(1).values
        scale = torch.where(peak > 0, WEIGHT_TOP / peak, torch.ones_like(peak))  # per channel
        target = 1.0 if last else ACTIVATION_SCALE
        multiplier, shift = requantization(target / (scale * input_scale))
        self.padding = tuple(padding)
        self.last = last
        self.register_buffer("weight", round_half_up(w * scale.view(-1, 1, 1, 1))
                             .clamp(-WEIGHT_TOP, WEIGHT_TOP).to(torch.int8))
        self.register_buffer("bias", round_half_up(b * scale * input_scale).long())
        self.register_buffer("multiplier", multiplier)
        self.register_buffer("shift", shift)
        self.register_buffer("groups", torch.tensor(input_groups(self.weight), dtype=torch.int64))
        check_accumulator(self.weight, self.bias, first=input_scale == 1.0 / INPUT_SCALE)
        self._packed: dict = {}  # backend caches (prepacked weights), not part of the state

    def accumulate(self, limbs: list[tuple[torch.Tensor, int, int]]) -> torch.Tensor:
        """``acc`` as exact float64 from inputs given as ``(values uint8, zero point, factor)``:
        ``sum_k factor_k conv(values_k - zero point_k, W) + B``."""
        acc = None
        for values, zero, factor in limbs:
            part = conv_sum(values, zero, self)
            acc = part * factor if acc is None else acc.add_(part, alpha=factor)
        return acc.add_(self.bias.double().view(1, -1, 1, 1))

    def scaled(self, acc: torch.Tensor) -> torch.Tensor:
        """``acc M 2^-S`` (float64, exact: ``|acc M| < 2^53``)."""
        factor = self.multiplier.double() * torch.pow(2.0, -self.shift.double())
        return acc.mul_(factor.view(1, -1, 1, 1))

    def activation(self, acc: torch.Tensor) -> torch.Tensor:
        """``clamp(floor((acc M + 2^(S-1)) / 2^S), 0, 127)`` as uint8, channels-last."""
        shift = self.shift.double().view(1, -1, 1, 1)
        half = torch.where(shift >= 1, torch.pow(2.0, shift - 1), torch.zeros_like(shift))
        a = acc.mul_(self.multiplier.double().view(1, -1, 1, 1)).add_(half)
        a = a.mul_(torch.pow(2.0, -shift)).floor_().clamp_(0, ACTIVATION_TOP)
        return a.to(torch.uint8).contiguous(memory_format=torch.channels_last)


def latent_limbs(x: torch.Tensor) -> list[tuple[torch.Tensor, int, int]]:
    """Integer latents -> the first layer's inputs: ``h + 64`` with zero point 64, factor 2^7,
    and ``l`` with zero point 0, factor 1 (uint8, channels-last)."""
    x = x.double().clamp(-LATENT_LIMIT, LATENT_LIMIT - 1)
    high = torch.floor(x / LIMB)
    low = x - high * LIMB
    as_u8 = (lambda t: t.to(torch.uint8).contiguous(memory_format=torch.channels_last))
    return [(as_u8(high + LIMB // 2), LIMB // 2, LIMB), (as_u8(low), 0, 1)]


class Int8ConvNet(ExactNet):
    """Drop-in replacement for :class:`ConvNet` computing in the 8-bit arithmetic above, with
    any backend of :mod:`idfzip.int8conv` (the same integers on each)."""

    arithmetic = "int8"

    def __init__(self, net: ConvNet):
        convs = [m for m in net.layers if isinstance(m, nn.Conv2d)]
        scales = [1.0 / INPUT_SCALE] + [ACTIVATION_SCALE] * (len(convs) - 1)
        layers = [Int8Conv(*net.folded_weights(c), c.padding, s, last=(i == len(convs) - 1))
                  for i, (c, s) in enumerate(zip(convs, scales))]
        super().__init__(layers, net.gain is not None)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = latent_limbs(x)
        for conv in self.convs[:-1]:
            inputs = [(conv.activation(conv.accumulate(inputs)), 0, 1)]
        last = self.convs[-1]
        return last.scaled(last.accumulate(inputs))

    def float_weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the real weight and bias this export approximates (for training on)."""
        out = []
        input_scale = 1.0 / INPUT_SCALE
        for conv in self.convs:
            target = 1.0 if conv.last else ACTIVATION_SCALE
            ratio = conv.multiplier.double() * torch.pow(2.0, -conv.shift.double())
            scale = target / (ratio * input_scale)  # the weights' grid steps per unit
            out.append((conv.weight.double() / scale.view(-1, 1, 1, 1),
                        conv.bias.double() / (scale * input_scale)))
            input_scale = ACTIVATION_SCALE
        return out


def fake_quantize_int8(net: ConvNet, h: torch.Tensor) -> torch.Tensor:
    """What ``Int8ConvNet(net)`` computes, in float with straight-through gradients, from
    ``h`` = latents * INPUT_SCALE: weights on each output channel's grid of 127 steps per
    peak, biases on the accumulator's grid, activations on the 6/127 grid (the requantisation
    factor's 2^-15 rounding is left out)."""
    def ste(x: torch.Tensor, rounded: torch.Tensor) -> torch.Tensor:
        return x + (rounded - x).detach()

    convs = [m for m in net.layers if isinstance(m, nn.Conv2d)]
    input_scale = 1.0 / INPUT_SCALE
    h = h.clamp(-LATENT_LIMIT * INPUT_SCALE, (LATENT_LIMIT - 1) * INPUT_SCALE)
    for i, conv in enumerate(convs):
        weight, bias = net.folded_weights(conv)
        peak = weight.detach().abs().flatten(1).max(1).values
        scale = torch.where(peak > 0, WEIGHT_TOP / peak, torch.ones_like(peak)).view(-1, 1, 1, 1)
        w = ste(weight, round_half_up(weight * scale).clamp(-WEIGHT_TOP, WEIGHT_TOP) / scale)
        unit = scale.view(-1) * input_scale
        b = ste(bias, round_half_up(bias * unit) / unit)
        h = nn.functional.conv2d(h, w, b, padding=conv.padding)
        if i < len(convs) - 1:
            h = nn.functional.hardtanh(h, 0.0, ACTIVATION_MAX)
            h = ste(h, round_half_up(h * ACTIVATION_SCALE) / ACTIVATION_SCALE)
            input_scale = ACTIVATION_SCALE
    return h
