"""The small convolutional networks inside couplings and priors.

They are built only from operations that have exact integer counterparts (convolution with
bias, a clamp-style activation, channel concatenation), with no normalisation layer whose
statistics depend on the batch, so that a trained network can be exported to integer
arithmetic for bit-exact coding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .quantization import (
    ACTIVATION_BITS,
    ACTIVATION_MAX,
    INPUT_BITS,
    INPUT_LIMIT,
    fake_quantize,
    layer_exponent,
)

# Integer-valued inputs (pixels, latents) are brought to roughly unit range by this fixed
# factor; a power of two so that an integer network can apply it as a shift. Inputs are
# clipped to +-INPUT_LIMIT first, which bounds the integer export's sums.
INPUT_SCALE = 2.0**-INPUT_BITS
# Network outputs that live in latent units (translations, prior means) are this factor
# times the raw output, so that an optimiser step of ~1e-3 moves them by a useful amount.
OUTPUT_SCALE = 16.0
# Training precisions: the dtype a ConvNet's hidden layers are autocast to (None: float32).
PRECISIONS: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16}


class BoundedReLU(nn.Module):
    """``clamp(x, 0, ACTIVATION_MAX)``: a ReLU whose range is known before training."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardtanh(x, 0.0, ACTIVATION_MAX)  # fused backward, unlike clamp


class ConvNet(nn.Module):
    """3x3 conv -> [bounded ReLU -> conv] * depth, mapping integer latents to real outputs.

    The last convolution starts at zero, so a coupling built on this network starts as the
    identity and a prior starts at its bias. With ``gain`` (ReZero, Bachlechner et al. 2020, as
    in IDF++), the output is instead ``gain * conv(h)`` with a learnt per-output-channel
    ``gain`` that starts at zero and a randomly initialised last convolution: the network still
    starts at zero, but the gain's gradient (the convolution's output) is not zero, whereas a
    zero gain and a zero convolution would each block the other's gradient. The gain is a
    factor per output channel of the last convolution's weight and bias, so fake quantisation
    and the integer export use the folded weights (:meth:`folded_weights`) and the exported
    network has no extra operation.

    With ``fake_quant`` set to an arithmetic (quantisation-aware training), weights, biases and
    activations are rounded to the grids of that integer export in the forward pass, so the
    float network computes what its export will. With ``hidden_dtype`` set (training in
    bfloat16), all but the last convolution run autocast to that type, faster on CPUs with
    bfloat16 units (AMX) and on GPUs; the last one stays in float32 because its outputs
    (translations, prior means) live in latent units, where bfloat16 would be coarser than an
    integer step.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int, depth: int,
                 gain: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, hidden, 3, padding=1)]
        for i in range(depth - 1):
            kernel = 1 if i % 2 == 0 else 3
            layers += [BoundedReLU(), nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2)]
        layers += [BoundedReLU(), nn.Conv2d(hidden, out_channels, 3, padding=1)]
        self.layers = nn.Sequential(*layers)
        self.gain = nn.Parameter(torch.zeros(out_channels)) if gain else None
        if not gain:
            nn.init.zeros_(self.layers[-1].weight)
            nn.init.zeros_(self.layers[-1].bias)
        self.fake_quant = ""  # "limb", "int8" or "w8a8": train on that export's grids
        self.hidden_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.clamp(-INPUT_LIMIT, INPUT_LIMIT) * INPUT_SCALE
        if self.fake_quant == "limb":
            return self._fake_quantized(h)
        if self.fake_quant:  # an 8-bit export's grids decide every value: no autocast
            from .int8net import ACTIVATION_TOPS, fake_quantize_int8
            return fake_quantize_int8(self, h, ACTIVATION_TOPS[self.fake_quant])
        if self.hidden_dtype is None:
            h = self.layers(h)
        else:
            with torch.autocast(h.device.type, dtype=self.hidden_dtype):
                h = self.layers[:-1](h)
            h = self.layers[-1](h.float())
        return h if self.gain is None else h * self.gain.view(1, -1, 1, 1)

    def folded_weights(self, conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of ``conv``, one of the layers, as a single convolution computes it:
        for the last, with the gain folded in (``w * gain``, ``b * gain`` per output channel)."""
        if self.gain is None or conv is not self.layers[-1]:
            return conv.weight, conv.bias
        return conv.weight * self.gain.view(-1, 1, 1, 1), conv.bias * self.gain

    def _fake_quantized(self, h: torch.Tensor) -> torch.Tensor:
        bits = INPUT_BITS
        for layer in self.layers:
            if isinstance(layer, nn.Conv2d):
                weight, bias = self.folded_weights(layer)
                e = layer_exponent(weight, bias, bits)
                h = F.conv2d(h, fake_quantize(weight, e), fake_quantize(bias, e + bits),
                             padding=layer.padding)
            else:
                h = fake_quantize(layer(h), ACTIVATION_BITS)
                bits = ACTIVATION_BITS
        return h


def set_precision(model: nn.Module, precision: str) -> None:
    """Run the hidden layers of every :class:`ConvNet` in ``model`` in ``precision`` (a key of
    :data:`PRECISIONS`)."""
    for module in model.modules():
        if isinstance(module, ConvNet):
            module.hidden_dtype = PRECISIONS[precision]
