"""Integer export of the flow's networks, for bit-exact coding on any machine.

A float :class:`~idfzip.nets.ConvNet` becomes an :class:`IntegerConvNet` whose weights,
biases and activations are integers with power-of-two scales (the grids and the bound that
makes them exact are in :mod:`idfzip.quantization`). Every layer:

1. splits its integer input into two 7-bit limbs, ``x = 2^7 x_hi + x_lo``, stacked on the
   batch axis;
2. convolves them in float32 without bias: each result is an integer of at most 2^23, so
   it is exact whatever the summation order, machine, thread count or batch shape;
3. combines ``2^7 y_hi + y_lo + B`` and requantises it to the next layer's activation
   (bounded ReLU on a 2^-10 grid, rounded half up) with float32 steps that are exact too
   (see :func:`requantize`); the last layer returns ``(2^7 y_hi + y_lo + B) * 2^-exponent``
   in float64, exactly, so the rounded translations and the quantised prior parameters that
   follow are exact as well.

Weights are stored as integer-valued float64 buffers (the model's hash covers them) and cast
to float32, exactly, when used.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .limits import NET_CHUNK_ELEMENTS
from .nets import ConvNet
from .quantization import (
    ACTIVATION_BITS,
    ACTIVATION_TOP,
    INPUT_BITS,
    INPUT_LIMIT,
    LIMB_BITS,
    layer_exponent,
    round_half_up,
)

LIMB = 2.0**LIMB_BITS


def split_limbs(x: torch.Tensor) -> torch.Tensor:
    """Integer-valued ``x`` with ``|x| <= 2^14`` (N, C, H, W) -> float32 ``[x_hi; x_lo]``
    (2N, C, H, W) with ``x = 2^7 x_hi + x_lo``, ``x_hi = floor(x / 2^7)``, ``0 <= x_lo < 2^7``.
    The limbs are laid out channels-last, the layout CPU convolutions are fastest in (1.2-3.8x
    over NCHW at these shapes, measured); layers' outputs keep it."""
    x = x.float()
    limbs = torch.empty((2 * x.shape[0], *x.shape[1:]), dtype=torch.float32, device=x.device,
                        memory_format=torch.channels_last)
    high, low = limbs.chunk(2)
    torch.mul(x, 1.0 / LIMB, out=high).floor_()
    torch.add(x, high, alpha=-LIMB, out=low)
    return limbs


class IntegerConv(nn.Module):
    """One convolution with integer weights ``W``, bias ``B`` and output unit ``2^-exponent``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, padding: tuple,
                 input_bits: int):
        super().__init__()
        e = layer_exponent(weight, bias, input_bits)
        self.padding = padding
        self.register_buffer("weight", round_half_up(weight.detach().double() * 2.0**e))
        self.register_buffer("bias", round_half_up(bias.detach().double()
                                                   * 2.0 ** (e + input_bits)))
        self.register_buffer("exponent", torch.tensor(e + input_bits, dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer input (N, ...) -> exact float32 ``(conv(x_hi, W), conv(x_lo, W))``."""
        y = F.conv2d(split_limbs(x), self.weight.float(), padding=self.padding)
        return y.chunk(2)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's exact real output ``conv(x, W) + B`` in units of 1, as float64."""
        high, low = self(x)
        y = high.double() * LIMB + low.double() + self.bias.view(1, -1, 1, 1)
        return y * 2.0 ** -int(self.exponent)

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        """The next layer's input: ``clamp(round_half_up((conv(x, W) + B) * 2^-shift), 0,
        ACTIVATION_TOP)`` with ``shift = exponent - ACTIVATION_BITS``, as float32."""
        return requantize(*self(x), self.bias, int(self.exponent) - ACTIVATION_BITS)


def requantize(high: torch.Tensor, low: torch.Tensor, bias: torch.Tensor,
               shift: int) -> torch.Tensor:
    """``clamp(floor((2^7 high + low + B + h) / 2^shift), 0, ACTIVATION_TOP)``, ``h`` the
    rounding half, computed in float32 in place and exactly: ``r = low + B + h`` is at most
    2^24 (``|low + B| <= 2^23`` by the layer bound, ``h <= 2^23`` as ``shift <= 24``), and

    * for ``shift >= 7``: ``floor((2^7 high + r) / 2^s) = floor((high + floor(r / 2^7)) /
      2^(s-7))``, every term an integer of at most 2^24;
    * for ``shift < 7``: ``2^(7-s) high + floor(r / 2^s)`` is a sum of exact terms; if it
      exceeds 2^24 it is rounded, but stays beyond the clamp's range, so the clamp is exact.
    """
    half = 2.0 ** (shift - 1) if shift >= 1 else 0.0
    r = low.add_((bias + half).float().view(1, -1, 1, 1))
    if shift >= LIMB_BITS:
        out = high.add_(r.mul_(1.0 / LIMB).floor_()).mul_(2.0 ** (LIMB_BITS - shift)).floor_()
    else:
        out = high.mul_(2.0 ** (LIMB_BITS - shift)).add_(r.mul_(2.0**-shift).floor_())
    return out.clamp_(0.0, ACTIVATION_TOP)


def _input_bits(convs: list) -> list[int]:
    """Fraction bits of each layer's input grid: the network's input, then activations."""
    return [INPUT_BITS] + [ACTIVATION_BITS] * (len(convs) - 1)


class ExactNet(nn.Module):
    """What the exported networks share: a chain of integer layers ``convs`` that replaces a
    :class:`ConvNet`, run in strips of rows where the input is large. Subclasses define the
    arithmetic (``arithmetic``, the name a model file records) in ``_forward``.

    A ReZero gain is folded into the last convolution before quantisation
    (:meth:`ConvNet.folded_weights`), so it costs nothing here; ``folded_gain`` (not part of
    the state) remembers that there was one, for :func:`to_float`."""

    arithmetic = ""

    def __init__(self, convs: list[nn.Module], folded_gain: bool):
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.folded_gain = folded_gain
        # rows of input each output row depends on, above and below (the kernels' reach)
        self.reach = sum(conv.padding[0] for conv in self.convs)
        self.widest = max(conv.weight.shape[0] for conv in self.convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Integer latents (any float dtype) -> the network output as exact float64 values.

        Inputs whose widest activation would exceed ``NET_CHUNK_ELEMENTS`` run in strips of
        rows, each with ``reach`` rows of context above and below: every output row sees
        exactly the inputs it sees in one pass, and every sum is exact in any order, so the
        result is identical, with memory bounded by the strip instead of the image."""
        n, _, height, width = x.shape
        rows = max(1, NET_CHUNK_ELEMENTS // max(1, 2 * n * self.widest * width))
        if rows >= height:
            return self._forward(x)
        out = None
        for top in range(0, height, rows):
            bottom = min(height, top + rows)
            first, last = max(0, top - self.reach), min(height, bottom + self.reach)
            strip = self._forward(x[:, :, first:last])[:, :, top - first: bottom - first]
            if out is None:
                out = strip.new_empty((n, strip.shape[1], height, width))
            out[:, :, top:bottom] = strip
        return out

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_bound(self) -> None:
        """Raise ValueError if the integers (as loaded from a file) break the bound that makes
        the arithmetic exact. A limb network's weight exponents keep it by construction."""

    def float_weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the real weight and bias the export computes with (for training on)."""
        raise NotImplementedError


class IntegerConvNet(ExactNet):
    """Drop-in replacement for :class:`ConvNet` computing in the exact limb arithmetic above."""

    arithmetic = "limb"

    def __init__(self, net: ConvNet):
        convs = [m for m in net.layers if isinstance(m, nn.Conv2d)]
        super().__init__([IntegerConv(*net.folded_weights(c), c.padding, b)
                          for c, b in zip(convs, _input_bits(convs))], net.gain is not None)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.clamp(-INPUT_LIMIT, INPUT_LIMIT)
        for conv in self.convs[:-1]:
            h = conv.activation(h)
        return self.convs[-1].value(h)

    def float_weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for exported, b in zip(self.convs, _input_bits(self.convs)):
            exponent = int(exported.exponent)
            out.append((exported.weight * 2.0 ** (b - exponent), exported.bias * 2.0**-exponent))
        return out


ARITHMETICS = ("limb", "int8", "w8a8")


def exported_net(net: ConvNet, arithmetic: str) -> ExactNet:
    """The export of one network in ``arithmetic`` (``limb``: this module; ``int8`` and
    ``w8a8``: :mod:`idfzip.int8net`)."""
    if arithmetic == "limb":
        return IntegerConvNet(net)
    from .int8net import EIGHT_BIT_NETS  # it builds on this module
    if arithmetic in EIGHT_BIT_NETS:
        return EIGHT_BIT_NETS[arithmetic](net)
    raise ValueError(f"unknown arithmetic {arithmetic!r}; one of {', '.join(ARITHMETICS)}")


def arithmetic_of(model: nn.Module) -> str | None:
    """The arithmetic of ``model``'s exported networks, None for a float model."""
    kinds = {m.arithmetic for m in model.modules() if isinstance(m, ExactNet)}
    if len(kinds) > 1:
        raise ValueError("a model mixes arithmetics")
    return kinds.pop() if kinds else None


def to_integer(model: nn.Module, arithmetic: str = "limb") -> nn.Module:
    """Replace every ConvNet inside ``model`` (in place) by its integer export in
    ``arithmetic``; the model's remaining parameters move to float64 so that exact values are
    never rounded to float32."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, ConvNet):
                setattr(module, name, exported_net(child, arithmetic))
    return model.double()


def to_float(model: nn.Module) -> nn.Module:
    """Inverse of :func:`to_integer` (in place), for training on from exported weights: each
    exported network becomes a float32 :class:`ConvNet` with the weights and biases its export
    computes with (:meth:`ExactNet.float_weights`), up to the activations' rounding; exporting
    a limb network again gives the same integers. A network exported with a ReZero gain gets
    its gain back at 1, its last layer holding the folded weights."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, ExactNet):
                setattr(module, name, _float_net(child))
    return model.float()


def _float_net(net: ExactNet) -> ConvNet:
    first, last = net.convs[0].weight, net.convs[-1].weight
    out = ConvNet(first.shape[1], last.shape[0], first.shape[0], len(net.convs) - 1,
                  gain=net.folded_gain)
    floats = [m for m in out.layers if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        if out.gain is not None:
            out.gain.fill_(1.0)
        for conv, (weight, bias) in zip(floats, net.float_weights()):
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
    return out


# Precision switches that would let float32 convolutions and matrix products use TF32 or
# bfloat16 internally (oneDNN on CPUs, cuBLAS / cuDNN on GPUs); the export needs full float32.
_FP32_BACKENDS = (torch.backends.mkldnn.conv, torch.backends.mkldnn.matmul,
                  torch.backends.cudnn.conv, torch.backends.cuda.matmul)


@contextlib.contextmanager
def exact_arithmetic(device: torch.device):
    """Settings under which the export's float32 convolutions stay exact: IEEE float32 in every
    backend; on CUDA also no cuDNN (its FFT/Winograd algorithms are not exact; the native path
    is im2col + GEMM) and deterministic algorithms only. Restores the caller's settings."""
    cuda = torch.device(device).type == "cuda"
    saved = [backend.fp32_precision for backend in _FP32_BACKENDS]
    saved_cuda = (torch.backends.cudnn.enabled, torch.are_deterministic_algorithms_enabled())
    for backend in _FP32_BACKENDS:
        backend.fp32_precision = "ieee"
    if cuda:
        torch.backends.cudnn.enabled = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        for backend, value in zip(_FP32_BACKENDS, saved):
            backend.fp32_precision = value
        if cuda:
            torch.backends.cudnn.enabled = saved_cuda[0]
            torch.use_deterministic_algorithms(saved_cuda[1])
