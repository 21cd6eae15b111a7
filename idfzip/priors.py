"""Priors on the integer latents, and the contract every prior family meets.

A prior family is one :class:`Prior` subclass plus its entropy-coding adapter (a
:class:`~idfzip.entropy.SymbolCoder`). The flow and the codec only use the contract, never
ask which family they hold:

* ``log_prob(z, cond)``: elementwise natural-log pmf of the latent ``z`` given ``cond``, the
  part of the flow it is conditioned on (``None`` for the unconditioned top latent);
* ``sample(cond, shape, temperature, generator)``: a latent drawn from the prior;
* ``coding_params(cond, shape)``: the tensors that fix each element's distribution, and
  ``make_coder()``: the adapter that codes latents under such parameters;
* ``coding_units(z, cond)`` and ``decode(read, cond, out)``: how a latent is laid into a
  stream and read back. A plain prior is one unit; :class:`StagedPrior` is several, each
  conditioned on the ones before it, so it decodes them in turn and runs its networks between.

Families:

* :class:`ConditionalLogisticPrior`: one discretized logistic per element, mean and scale
  predicted by a network from ``cond``;
* :class:`ConditionalMixturePrior`: a mixture of ``K`` discretized logistics per element, its
  weights, means and scales predicted by a network from ``cond``;
* :class:`ChannelMixturePrior`: a per-channel mixture of discretized logistics, the same at
  every position (no per-position parameters, so one model codes images of any size);
* :class:`StagedPrior`: a latent's channels in groups, each group under its own prior
  conditioned on ``cond`` and the groups before it (channel-conditional coding).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .distributions import (
    clamp_log_scale,
    discretized_logistic_log_pmf,
    mixture_log_pmf,
    sample_logistic,
    sample_mixture,
)
from .entropy import LOGISTIC_CODER, MixtureCoder, MixtureTables, SymbolCoder
from .nets import OUTPUT_SCALE, ConvNet

# Initial log-scale of every prior: untrained latents spread like raw pixels (s ~ 30).
INITIAL_LOG_SCALE = 3.5

# What the codec hands a prior's ``decode``: read(prior, params, out) decodes the latent that
# ``prior`` codes under ``params`` (its ``coding_params``) from every tile's stream into ``out``.
Reader = Callable[["Prior", tuple, torch.Tensor], None]


class Prior(nn.Module):
    """The contract (see the module docstring); subclasses implement the first four methods."""

    channels: int

    def log_prob(self, z: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, cond: torch.Tensor | None, shape: torch.Size, temperature: float,
               generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def coding_params(self, cond: torch.Tensor | None, shape: torch.Size) -> tuple:
        """Tensors shaped like the latent (``shape``) that fix each element's distribution."""
        raise NotImplementedError

    def make_coder(self) -> SymbolCoder:
        raise NotImplementedError

    def coding_units(self, z: torch.Tensor, cond: torch.Tensor | None) -> list[tuple]:
        """``(prior, latent, params)`` of each part of ``z`` a stream holds, in decoding order."""
        return [(self, z, self.coding_params(cond, z.shape))]

    def decode(self, read: Reader, cond: torch.Tensor | None, out: torch.Tensor) -> None:
        """Fill ``out`` (the latent's shape) from the streams, through ``read``."""
        read(self, self.coding_params(cond, out.shape), out)


class ConditionalLogisticPrior(Prior):
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

    def log_prob(self, z, cond):
        return discretized_logistic_log_pmf(z, *self.params(cond))

    def sample(self, cond, shape, temperature, generator=None):
        mean, log_scale = self.params(cond)
        return sample_logistic(mean, log_scale + _log_temperature(temperature), generator)

    def coding_params(self, cond, shape):
        return self.params(cond)

    def make_coder(self) -> SymbolCoder:
        return LOGISTIC_CODER


class ConditionalMixturePrior(Prior):
    """p(z | y) = prod_i Mixture_K(z_i; logits_i(y), means_i(y), scales_i(y))."""

    def __init__(self, cond_channels: int, channels: int, hidden: int, depth: int,
                 components: int):
        super().__init__()
        self.channels, self.components = channels, components
        self.net = ConvNet(cond_channels, 3 * components * channels, hidden, depth)
        with torch.no_grad():  # output rows: means, log-scales, logits; component-major
            self.net.layers[-1].bias[components * channels: 2 * components * channels] = (
                INITIAL_LOG_SCALE)

    def params(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, means, log_scales), each shaped like the latent plus ``(K,)``."""
        out = self.net(cond)
        n, _, h, w = out.shape
        out = out.view(n, 3, self.components, self.channels, h, w).permute(1, 0, 3, 4, 5, 2)
        means, log_scales, logits = out
        return logits, means * OUTPUT_SCALE, clamp_log_scale(log_scales)

    def log_prob(self, z, cond):
        return mixture_log_pmf(z, *self.params(cond))

    def sample(self, cond, shape, temperature, generator=None):
        logits, means, log_scales = self.params(cond)
        return sample_mixture(logits, means, log_scales + _log_temperature(temperature),
                              generator)

    def coding_params(self, cond, shape):
        return self.params(cond)

    def make_coder(self) -> SymbolCoder:
        return MixtureCoder(self.components)


class ChannelMixturePrior(Prior):
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

    def log_prob(self, z, cond=None):
        view = (1, self.channels, 1, 1, -1)
        return mixture_log_pmf(z, *(p.view(view) for p in self.params()))

    def sample(self, cond, shape, temperature, generator=None):
        n, c, h, w = shape
        logits, means, log_scales = (p.view(1, c, 1, 1, -1).expand(n, c, h, w, -1)
                                     for p in self.params())
        return sample_mixture(logits, means, log_scales + _log_temperature(temperature),
                              generator)

    def coding_params(self, cond, shape):
        """Each element's channel, which selects its table."""
        channel = torch.arange(self.channels, device=self.logits.device).view(1, -1, 1, 1)
        return (channel.expand(shape),)

    def make_coder(self) -> SymbolCoder:
        return MixtureTables(*(p.detach().cpu().numpy() for p in self.params()))


class StagedPrior(Prior):
    """A latent's channels in consecutive groups: group ``k`` under ``stages[k]``, conditioned
    on ``cond`` and groups ``0..k-1`` (concatenated on channels; ``cond=None`` for the top
    latent, whose first group is then unconditioned). What a stage learns from the groups
    before it (colours and sub-pixel positions of the same place) is what an independent prior
    pays for; the cost is one network per stage, run in turn when decoding."""

    def __init__(self, stages: list[Prior]):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.channels = sum(stage.channels for stage in stages)

    def _groups(self, z: torch.Tensor) -> list[torch.Tensor]:
        return list(z.split([stage.channels for stage in self.stages], dim=1))

    @staticmethod
    def _context(cond: torch.Tensor | None, groups: list[torch.Tensor]) -> torch.Tensor | None:
        parts = ([] if cond is None else [cond]) + groups
        return torch.cat(parts, dim=1) if parts else None

    def log_prob(self, z, cond):
        groups = self._groups(z)
        return torch.cat([stage.log_prob(group, self._context(cond, groups[:k]))
                          for k, (stage, group) in enumerate(zip(self.stages, groups))], dim=1)

    def sample(self, cond, shape, temperature, generator=None):
        groups: list[torch.Tensor] = []
        for stage in self.stages:
            size = (shape[0], stage.channels, *shape[2:])
            groups.append(stage.sample(self._context(cond, groups), size, temperature,
                                       generator))
        return torch.cat(groups, dim=1)

    def coding_units(self, z, cond):
        groups = self._groups(z)
        return [unit for k, (stage, group) in enumerate(zip(self.stages, groups))
                for unit in stage.coding_units(group, self._context(cond, groups[:k]))]

    def decode(self, read, cond, out):
        groups = self._groups(out)  # views: decoded in place
        for k, (stage, group) in enumerate(zip(self.stages, groups)):
            stage.decode(read, self._context(cond, groups[:k]), group)


def _log_temperature(temperature: float) -> float:
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return math.log(temperature)
