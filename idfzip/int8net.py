"""8-bit integer export of the flow's networks: exact, and fast on integer units (issue #14).

Two arithmetics, ``w8a8`` and ``int8`` (one definition, with the activations' top ``T`` = 254
or 127; the README's FORMAT section states it for other decoders). A network is a chain of
convolutions; layer ``l`` has per-output-channel integers: weights ``W[o, i, ky, kx]`` in
-127..127, bias ``B[o]``, multiplier ``M[o]`` and shift ``S[o]``. Its input ``v`` is
integers, and it computes the accumulator

    ``acc[o, y, x] = sum_{i, ky, kx} W[o, i, ky, kx] v[i, y + ky - p, x + kx - p] + B[o]``

(zero padding ``p``), an exact integer, which becomes

* in a hidden layer, the next layer's activation
  ``a = clamp(floor((acc M + 2^(S-1)) / 2^S), 0, T)`` (``2^(S-1)`` read as 0 for ``S < 1``):
  a bounded ReLU on the grid ``6 / T``, rounded half up (the export makes ``M = 1`` here,
  choosing each channel's weight scale so that the factor is a power of two);
* in the last layer, the real output ``acc M 2^-S``, exact in float64.

The first layer's inputs ``v`` are the integer latents, clipped to ``[-2^10, 2^10 - 1]``
(latents that reach the networks were measured below 230 in magnitude on Kodak; the clip only
bounds what a network sees, never what is coded). The other layers' inputs are activations,
0..T. ``int8`` (the first 8-bit models) keeps them to 7 bits, so that an 8-bit unsigned x
8-bit signed product pair sums to at most 2 * 127 * 127 < 2^15, which CPUs without VNNI
(AVX2's ``vpmaddubsw``) accumulate in 16 bits with saturation. ``w8a8`` spends the eighth bit:
its grid is twice as fine, which measured on Kodak takes the 8-bit models' cost from +0.011 to
-0.009 bpd (an int8 export converts to w8a8 exactly, the same weights); where oneDNN saturates
(:func:`idfzip.int8conv.onednn_exact` finds out), its layers run on the float32 backend,
exact by the bound. (The first layer, a few input channels, runs as a float32 convolution,
exact by the bound; 8-bit units could take its latents as two limbs ``x = 2^7 h + l``.)

The bound: for every output channel and every group of input channels the export chooses,
``reach * sum |W[o, i, ky, kx]|`` over the group is at most ``PARTIAL_LIMIT = 2^24``, with
``reach`` the largest input magnitude (2^10 in the first layer, T after), checked at
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
# the largest activation of each 8-bit arithmetic (see the module docstring): int8's 7 bits,
# w8a8's 8 bits on a grid exactly twice as fine (so an int8 export converts to w8a8 exactly)
ACTIVATION_TOPS = {"int8": 127, "w8a8": 254}
ACTIVATION_TOP = ACTIVATION_TOPS["int8"]
LATENT_LIMIT = 2**10  # the first layer's inputs lie in [-2^10, 2^10 - 1]
PARTIAL_LIMIT = 2**24  # bound of every group's partial sum (float32 holds such integers)
BIAS_LIMIT = 2**22  # |B|: leaves the float32 requantisation room (see Int8Conv.activation)
MULTIPLIER_BITS = 15  # M in [2^14, 2^15]: requantisation to 15 significant bits


def requantization(ratio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer multiplier and shift ``(M, S)`` per channel with ``M 2^-S ~ ratio`` (> 0),
    ``M`` in ``[2^14, 2^15]``; relative error at most 2^-15."""
    ratio = ratio.double()
    shift = (MULTIPLIER_BITS - 1) - torch.floor(torch.log2(ratio))
    multiplier = round_half_up(ratio * torch.pow(2.0, shift))
    return multiplier.long(), shift.long()


def largest_group_sum(weight: torch.Tensor, groups: int) -> float:
    """The largest ``sum |W|`` of one output channel over one of ``groups`` contiguous groups
    of input channels (``torch.tensor_split``): what the bound limits."""
    mass = weight.double().abs().sum(dim=(2, 3))  # (out, in)
    return max(float(part.sum(1).max()) for part in torch.tensor_split(mass, groups, dim=1))


def activation_scale(top: int) -> float:
    """Grid steps per unit of activation, for activations ``0..top`` over [0, 6]."""
    return top / ACTIVATION_MAX


def input_groups(weight: torch.Tensor, top: int = ACTIVATION_TOP) -> int:
    """The fewest contiguous groups of input channels for which every output channel's
    ``top * sum |W|`` over each group is at most ``PARTIAL_LIMIT``."""
    for groups in range(1, weight.shape[1] + 1):
        if largest_group_sum(weight, groups) * top <= PARTIAL_LIMIT:
            return groups
    raise ValueError("a single input channel's weights exceed the partial-sum bound")


def check_accumulator(weight: torch.Tensor, bias: torch.Tensor, reach: int) -> None:
    """Refuse a layer whose whole accumulator could leave int32 (``|acc| < 2^31``) for inputs
    of magnitude up to ``reach``, so that integer backends may accumulate in 32 bits."""
    peak = weight.double().abs().flatten(1).sum(1) * reach + bias.double().abs()
    if float(peak.max()) >= 2**31:
        raise ValueError("a layer's accumulator could exceed 2^31: its weights are too large "
                         "for the 8-bit arithmetic")


def weight_scales(weight: torch.Tensor, bias: torch.Tensor, input_scale: float,
                  last: bool, top: int = ACTIVATION_TOP) -> torch.Tensor:
    """Grid steps per unit of each output channel's weights: the finest that keeps the largest
    weight within +-127 and the integer bias within ``BIAS_LIMIT`` (a channel of tiny weights
    and a large bias would otherwise get a bias beyond any accumulator). In a hidden layer the
    scale is also a power of two times ``activation_scale(top) / input_scale``, so that
    requantising to the activation grid (``0..top``) is a shift (``M = 1``): what lets a fast
    backend requantise in float32, exactly."""
    peak = weight.detach().double().abs().flatten(1).max(1).values
    reach = bias.detach().double().abs() * input_scale
    inf = torch.full_like(peak, float("inf"))
    finest = torch.minimum(torch.where(peak > 0, WEIGHT_TOP / peak, inf),
                           torch.where(reach > 0, BIAS_LIMIT / reach, inf))
    finest = torch.where(finest.isinf(), torch.ones_like(finest), finest)
    if last:
        return finest
    unit = activation_scale(top) / input_scale
    return unit * torch.pow(2.0, torch.floor(torch.log2(finest / unit)))


class Int8Conv(nn.Module):
    """One convolution of the 8-bit arithmetic, exported from a float ``weight`` and ``bias``
    whose input is on a grid of ``input_scale`` steps per unit. ``last`` marks the output
    layer (real outputs instead of activations); activations are ``0..top``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, padding: tuple,
                 input_scale: float, last: bool, top: int = ACTIVATION_TOP):
        super().__init__()
        w, b = weight.detach().double(), bias.detach().double()
        scale = weight_scales(w, b, input_scale, last, top)
        if last:
            multiplier, shift = requantization(1.0 / (scale * input_scale))
        else:  # a power of two by construction: M = 1
            shift = torch.round(torch.log2(scale * input_scale / activation_scale(top))).long()
            multiplier = torch.ones_like(shift)
        self.padding = tuple(padding)
        self.last = last
        self.top = top
        self.first = input_scale == 1.0 / INPUT_SCALE
        self.register_buffer("weight", round_half_up(w * scale.view(-1, 1, 1, 1))
                             .clamp(-WEIGHT_TOP, WEIGHT_TOP).to(torch.int8))
        self.register_buffer("bias", round_half_up(b * scale * input_scale).long())
        self.register_buffer("multiplier", multiplier)
        self.register_buffer("shift", shift)
        self.register_buffer("groups", torch.tensor(input_groups(self.weight, self.reach),
                                                    dtype=torch.int64))
        self.check_bound()
        self._steps_key, self._steps = None, None  # see _float32_steps

    @property
    def reach(self) -> int:
        """The largest magnitude of this layer's inputs."""
        return LATENT_LIMIT if self.first else self.top

    def check_bound(self) -> None:
        """Raise ValueError unless the stored weights, bias and groups keep every partial sum
        within ``PARTIAL_LIMIT`` and the accumulator within int32: what makes every backend
        exact (run at export and on every loaded model file)."""
        check_accumulator(self.weight, self.bias, self.reach)
        if largest_group_sum(self.weight, int(self.groups)) * self.reach > PARTIAL_LIMIT:
            raise ValueError("a layer's input groups do not keep its partial sums within 2^24")

    def _sums(self, values: torch.Tensor) -> torch.Tensor:
        """``conv(values, W)`` (no bias): float32 where the steps that follow are exact in it
        (one input group, every sum bounded by 2^24, see :meth:`_float32_steps`), else
        float64."""
        acc = conv_sum(values, 0, self)
        fast = self._float32_steps() is not None
        return acc if acc.dtype == torch.float32 and fast else acc.double()

    def _float32_steps(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(B + 2^(S-1), 2^-S)`` as float32 (N, C, H, W)-broadcastable, if ``|sum| + |B| +
        2^(S-1)`` stays within 2^24 for every input, so that adding them and shifting are
        exact in float32; else None. Cached until a buffer changes."""
        key = tuple((t.data_ptr(), t._version) for t in self.buffers())
        if self._steps_key != key:
            self._steps_key, self._steps = key, None
            if int(self.groups) == 1 and not bool((self.multiplier != 1).any()):
                mass = self.weight.long().abs().flatten(1).sum(1) * self.reach
                if float((mass + self.bias.abs() + self._half()).max()) <= PARTIAL_LIMIT:
                    self._steps = ((self.bias.double() + self._half()).float().view(1, -1, 1, 1),
                                   torch.pow(2.0, -self.shift.double()).float().view(1, -1, 1, 1))
        return self._steps

    def _half(self) -> torch.Tensor:
        shift = self.shift.double()
        return torch.where(shift >= 1, torch.pow(2.0, shift - 1), torch.zeros_like(shift))

    def output(self, values: torch.Tensor) -> torch.Tensor:
        """The last layer's ``acc M 2^-S`` (float64, exact: ``|acc M| < 2^53``)."""
        factor = self.multiplier.double() * torch.pow(2.0, -self.shift.double())
        acc = self._sums(values).double().add_(self.bias.double().view(1, -1, 1, 1))
        return acc.mul_(factor.view(1, -1, 1, 1))

    def activation(self, values: torch.Tensor) -> torch.Tensor:
        """``clamp(floor((acc M + 2^(S-1)) / 2^S), 0, 127)`` as uint8, channels-last; in float32
        where that is exact (the fast path: 4-byte elements), else in float64."""
        acc = self._sums(values)
        if acc.dtype == torch.float32:  # M = 1: one exact addition of B + 2^(S-1), a shift
            offset, scale = self._float32_steps()
            return _as_activation(acc.add_(offset).mul_(scale), self.top)
        acc.add_(self.bias.double().view(1, -1, 1, 1))
        acc.mul_(self.multiplier.double().view(1, -1, 1, 1))
        acc.add_(self._half().view(1, -1, 1, 1))
        acc.mul_(torch.pow(2.0, -self.shift.double()).view(1, -1, 1, 1))
        return _as_activation(acc, self.top)


def _as_activation(a: torch.Tensor, top: int) -> torch.Tensor:
    """``clamp(floor(a), 0, top)`` as uint8: the cast truncates, which is the floor once the
    values are clamped to be non-negative."""
    return a.clamp_(0, top).to(torch.uint8).contiguous(memory_format=torch.channels_last)


class Int8ConvNet(ExactNet):
    """Drop-in replacement for :class:`ConvNet` computing in the 8-bit arithmetic above, with
    any backend of :mod:`idfzip.int8conv` (the same integers on each)."""

    arithmetic = "int8"

    def __init__(self, net: ConvNet):
        convs = [m for m in net.layers if isinstance(m, nn.Conv2d)]
        top = ACTIVATION_TOPS[self.arithmetic]
        scales = [1.0 / INPUT_SCALE] + [activation_scale(top)] * (len(convs) - 1)
        layers = [Int8Conv(*net.folded_weights(c), c.padding, s, last=(i == len(convs) - 1),
                           top=top)
                  for i, (c, s) in enumerate(zip(convs, scales))]
        super().__init__(layers, net.gain is not None)

    def check_bound(self) -> None:
        for conv in self.convs:
            conv.check_bound()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.clamp(-LATENT_LIMIT, LATENT_LIMIT - 1).float()  # integers: exact in float32
        h = h.contiguous(memory_format=torch.channels_last)
        for conv in self.convs[:-1]:
            h = conv.activation(h)
        return self.convs[-1].output(h)

    def float_weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the real weight and bias this export approximates (for training on)."""
        out = []
        input_scale = 1.0 / INPUT_SCALE
        grid = activation_scale(ACTIVATION_TOPS[self.arithmetic])
        for conv in self.convs:
            target = 1.0 if conv.last else grid
            ratio = conv.multiplier.double() * torch.pow(2.0, -conv.shift.double())
            scale = target / (ratio * input_scale)  # the weights' grid steps per unit
            out.append((conv.weight.double() / scale.view(-1, 1, 1, 1),
                        conv.bias.double() / (scale * input_scale)))
            input_scale = grid
        return out


class W8A8ConvNet(Int8ConvNet):
    """The ``w8a8`` arithmetic: :class:`Int8ConvNet`'s, with 8-bit activations ``0..254``."""

    arithmetic = "w8a8"


# the exported network of each 8-bit arithmetic, by the name a model file records
EIGHT_BIT_NETS = {net.arithmetic: net for net in (Int8ConvNet, W8A8ConvNet)}


def fake_quantize_int8(net: ConvNet, h: torch.Tensor, top: int = ACTIVATION_TOP
                       ) -> torch.Tensor:
    """What ``Int8ConvNet(net)`` (activations ``0..top``) computes, in float with
    straight-through gradients, from ``h`` = latents * INPUT_SCALE: weights on each output
    channel's grid (:func:`weight_scales`), biases on the accumulator's grid, activations on
    the 6/top grid, and the last layer's 15-bit requantisation factor."""
    def ste(x: torch.Tensor, rounded: torch.Tensor) -> torch.Tensor:
        return x + (rounded - x).detach()

    convs = [m for m in net.layers if isinstance(m, nn.Conv2d)]
    input_scale = 1.0 / INPUT_SCALE
    grid = activation_scale(top)
    h = h.clamp(-LATENT_LIMIT * INPUT_SCALE, (LATENT_LIMIT - 1) * INPUT_SCALE)
    for i, conv in enumerate(convs):
        weight, bias = net.folded_weights(conv)
        last = i == len(convs) - 1
        scale = weight_scales(weight, bias, input_scale, last, top).to(weight).view(-1, 1, 1, 1)
        w = ste(weight, round_half_up(weight * scale).clamp(-WEIGHT_TOP, WEIGHT_TOP) / scale)
        unit = scale.view(-1) * input_scale
        b = ste(bias, round_half_up(bias * unit) / unit)
        h = nn.functional.conv2d(h, w, b, padding=conv.padding)
        if last:  # the export's factor M 2^-S, not the exact 1 / (scale * input_scale)
            multiplier, shift = requantization(1.0 / unit.detach().double())
            exact = multiplier.double() * torch.pow(2.0, -shift.double()) * unit.double()
            h = h * exact.to(h).view(1, -1, 1, 1)
        else:
            h = nn.functional.hardtanh(h, 0.0, ACTIVATION_MAX)
            h = ste(h, round_half_up(h * grid) / grid)
            input_scale = grid
    return h
