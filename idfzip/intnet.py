"""Integer export of the flow's networks, for bit-exact coding on any machine.

A float :class:`~idfzip.nets.ConvNet` becomes an :class:`IntegerConvNet` whose weights,
biases and activations are integers with power-of-two scales (the grids of
:mod:`idfzip.quantization`):

* weights ``W = round(w * 2^e)`` with a per-layer exponent ``e`` chosen so ``|W| < 2^15``;
* activations ``A = clamp(round(a * 2^12), 0, 6 * 2^12)`` (the bounded ReLU on a 2^-12 grid);
* inputs are the integer latents themselves (``INPUT_SCALE`` is ``2^-7``).

A layer computes ``conv(A, W) + B`` on integer-valued float64 tensors. Every product and
partial sum is an integer below 2^53 (inputs are clipped to 2^20, ``|W| < 2^15``, at most a
few thousand terms), so float64 represents it exactly and the result is the same in any
summation order, on any CPU or GPU, for any batch shape or thread count. Requantisation
multiplies by a power of two and rounds half up; the output is the exact value
``conv_out * 2^-k``, so the rounded translations and the quantised prior parameters that
follow are exact too.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .nets import ACTIVATION_MAX, INPUT_LIMIT, ConvNet
from .quantization import ACTIVATION_BITS, INPUT_BITS, round_half_up, weight_exponent


class IntegerConv(nn.Module):
    """One convolution with integer weights ``W``, bias ``B`` and weight exponent ``e``."""

    def __init__(self, conv: nn.Conv2d, input_bits: int):
        super().__init__()
        e = weight_exponent(conv.weight.detach())
        w = conv.weight.detach().double()
        b = conv.bias.detach().double()
        self.padding = conv.padding
        self.register_buffer("weight", round_half_up(w * 2.0**e))
        self.register_buffer("bias", round_half_up(b * 2.0 ** (e + input_bits)))
        self.register_buffer("exponent", torch.tensor(e + input_bits, dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Integer-valued float64 in, integer-valued float64 out (unit ``2^-exponent``)."""
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)


class IntegerConvNet(nn.Module):
    """Drop-in replacement for :class:`ConvNet` computing in exact integer arithmetic."""

    def __init__(self, net: ConvNet):
        super().__init__()
        convs = [m for m in net.layers if isinstance(m, nn.Conv2d)]
        layers, bits = [], INPUT_BITS
        for conv in convs:
            layers.append(IntegerConv(conv, bits))
            bits = ACTIVATION_BITS
        self.convs = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the network output as exact float64 values."""
        h = x.double().clamp(-INPUT_LIMIT, INPUT_LIMIT)  # integer latents, unit 2^-7
        top = ACTIVATION_MAX * 2.0**ACTIVATION_BITS
        for conv in self.convs[:-1]:
            shift = int(conv.exponent) - ACTIVATION_BITS
            h = round_half_up(conv(h) * 2.0**-shift).clamp_(0.0, top)
        last = self.convs[-1]
        return last(h) * 2.0 ** -int(last.exponent)


def to_integer(model: nn.Module) -> nn.Module:
    """Replace every ConvNet inside ``model`` (in place) by its integer export; the model's
    remaining parameters move to float64 so that exact values are never rounded to float32."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, ConvNet):
                setattr(module, name, IntegerConvNet(child))
    return model.double()


@contextlib.contextmanager
def exact_arithmetic(device: torch.device):
    """Settings under which integer-valued float64 convolutions stay exact on CUDA: no TF32, no
    cuDNN (whose FFT/Winograd algorithms are not exact; the native path is im2col + GEMM),
    deterministic algorithms only. On the CPU the float64 path is exact as it is (and switching
    deterministic algorithms on costs seconds of imports), so nothing changes there. Restores
    the caller's settings afterwards."""
    if torch.device(device).type != "cuda":
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.enabled, torch.are_deterministic_algorithms_enabled())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.enabled = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.enabled) = saved[:3]
        torch.use_deterministic_algorithms(saved[3])
