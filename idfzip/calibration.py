"""Rescaling a float flow's hidden activations to fill the 8-bit grid, without changing what
it computes (for the 8-bit export, :mod:`idfzip.int8net`).

The 8-bit arithmetic has 127 activation steps over the bounded ReLU's range [0, 6], but trained
networks use a small part of it (measured on ``photo``, per layer: median activation about 0.07,
99.99th percentile about 0.9, at most 2.8), so most of the grid is wasted and rounding costs
~0.3 bpd. A ReLU network computes the same function when a hidden channel's outputs are
multiplied by ``s > 0`` (its row of weights and its bias in one layer) and the next layer's
weights reading it are divided by ``s``; the bounded ReLU too, as long as ``s h`` stays below
its ceiling. So each hidden channel is scaled to bring the largest activation seen on
calibration images to the ceiling (``s`` at most ``MAX_GAIN``; channels never active are left
alone). Activations larger than any seen are clipped at the ceiling, the only change;
quantisation-aware fine-tuning follows.
"""

from __future__ import annotations

import torch
from torch import nn

from .nets import ConvNet
from .quantization import ACTIVATION_MAX

MAX_GAIN = 64.0
CHUNK = 64  # images per forward pass: bounds the memory, not the result (a running maximum)


@torch.no_grad()
def hidden_peaks(model: nn.Module, images: torch.Tensor) -> dict[nn.Conv2d, torch.Tensor]:
    """Largest activation of every hidden channel of every :class:`ConvNet` in ``model``
    over ``images`` (integer pixels, N x C x H x W), keyed by the convolution producing it."""
    peaks: dict[nn.Conv2d, torch.Tensor] = {}
    hooks = []
    for net in (m for m in model.modules() if isinstance(m, ConvNet)):
        convs = [m for m in net.layers if isinstance(m, nn.Conv2d)]
        for conv in convs[:-1]:
            def record(module, _inputs, output):
                peak = output.detach().float().clamp(0, ACTIVATION_MAX).amax(dim=(0, 2, 3))
                old = peaks.get(module)
                peaks[module] = peak if old is None else torch.maximum(old, peak)
            hooks.append(conv.register_forward_hook(record))
    try:
        for chunk in images.split(CHUNK):
            model.log_prob(chunk.to(model.device, model.dtype))
    finally:
        for hook in hooks:
            hook.remove()
    return peaks


@torch.no_grad()
def fill_activation_range(model: nn.Module, images: torch.Tensor) -> None:
    """Rescale (in place) every hidden channel of ``model``'s float networks so that its
    largest activation over ``images`` reaches the bounded ReLU's ceiling (see above)."""
    peaks = hidden_peaks(model, images)
    for net in (m for m in model.modules() if isinstance(m, ConvNet)):
        convs = [m for m in net.layers if isinstance(m, nn.Conv2d)]
        for conv, following in zip(convs[:-1], convs[1:]):
            peak = peaks.get(conv)
            if peak is None:
                continue
            gain = torch.where(peak > 0, ACTIVATION_MAX / peak.clamp_min(1e-12),
                               torch.ones_like(peak)).clamp(max=MAX_GAIN)
            conv.weight.mul_(gain.view(-1, 1, 1, 1).to(conv.weight))
            conv.bias.mul_(gain.to(conv.bias))
            following.weight.div_(gain.view(1, -1, 1, 1).to(following.weight))
