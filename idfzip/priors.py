"""Priors on the integer latents.

* :class:`ConditionalLogisticPrior` models a factored-out latent with one discretized logistic
  per element whose mean and scale a network predicts from the channels that stay in the flow.
* :class:`ChannelMixturePrior` models the last, unconditioned latent with a mixture of
  discretized logistics per channel. It has no per-position parameters, so one model codes
  images of any size.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .distributions import (
    clamp_log_scale,
    mixture_log_pmf,
    sample_logistic,
    sample_mixture,
)
from .nets import OUTPUT_SCALE, ConvNet

# Initial log-scale of every prior: untrained latents spread like raw pixels (s ~ 30).
INITIAL_LOG_SCALE = 3.5


class ConditionalLogisticPrior(nn.Module):
    """p(z | y) = prod_i DLogistic(z_i; mean_i(y), scale_i(y))."""

    def __init__(self, cond_channels: int, channels: int, hidden: int, depth: int):
        super().__init__()
        self.channels = channels
        self.net = ConvNet(cond_channels, 2 * channels, hidden, depth)
        with torch.no_grad():
            self.net.layers[-1].bias[channels:] = INITIAL_LOG_SCALE

    def params(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_scale), each shaped like the latent."""
        out = self.net(cond)
        mean, log_scale = out[:, : self.channels], out[:, self.channels :]
        return mean * OUTPUT_SCALE, clamp_log_scale(log_scale)

    def sample(self, cond: torch.Tensor, temperature: float, generator=None) -> torch.Tensor:
        mean, log_scale = self.params(cond)
        return sample_logistic(mean, log_scale + _log_temperature(temperature), generator)


class ChannelMixturePrior(nn.Module):
    """p(z) = prod_i Mixture_K(z_i; params of channel(i)), the same at every position."""

    def __init__(self, channels: int, components: int):
        super().__init__()
        self.channels = channels
        self.logits = nn.Parameter(torch.zeros(channels, components))
        spread = torch.linspace(-1.0, 1.0, components) if components > 1 else torch.zeros(1)
        self.means = nn.Parameter(spread.repeat(channels, 1))
        self.log_scales = nn.Parameter(torch.full((channels, components), INITIAL_LOG_SCALE))

    def params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, means, log_scales), each (channels, components)."""
        return self.logits, self.means * OUTPUT_SCALE, clamp_log_scale(self.log_scales)

    def _broadcast(self, shape: torch.Size):
        n, c, h, w = shape
        return [p.view(1, c, 1, 1, -1).expand(n, c, h, w, -1) for p in self.params()]

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Elementwise natural-log probability of ``z`` (N, C, H, W)."""
        logits, means, log_scales = self.params()
        c = self.channels
        view = (1, c, 1, 1, -1)
        return mixture_log_pmf(z, logits.view(view), means.view(view), log_scales.view(view))

    def sample(self, shape, temperature: float, generator=None) -> torch.Tensor:
        logits, means, log_scales = self._broadcast(torch.Size(shape))
        return sample_mixture(logits, means, log_scales + _log_temperature(temperature), generator)


def _log_temperature(temperature: float) -> float:
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return math.log(temperature)
