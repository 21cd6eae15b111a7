"""The integer discrete flow: ``z = f^-1(x)`` (latent inference), ``x = f(z)`` (generation) and
the exact likelihood ``p(x) = p(z)`` (a bijection on integers has no Jacobian term).

Pixels are centred on zero and, optionally, turned into YCoCg-R (``colour_transform``, see
:mod:`idfzip.colour`); then, per level ``l = 1..L``::

    squeeze 2x2 -> [permute -> additive coupling] * steps -> split: z_l | y_l

The permutations are random or reversals (``permutation``); the couplings' translations may be
scaled by learnt ReZero gains that start at zero (``coupling_gain``, see
:class:`~idfzip.nets.ConvNet`).

``z_l`` is factored out under a discretized logistic (or, with ``prior_components`` above 1,
a mixture) conditioned on ``y_l``; ``y_l`` goes on
to the next level. After the last level ``y_L`` is modelled by a per-channel logistic
mixture. With ``prior_stages`` / ``top_stages`` above 1, a latent's channels are coded in that
many groups, each conditioned on the groups before it (:class:`~idfzip.priors.StagedPrior`).
No parameter depends on the image size; images whose sides are not multiples of ``2^L`` are
padded by edge replication at the bottom and right, and cropped back.

Generation runs one walk, :meth:`IntegerDiscreteFlow.synthesize`, from the top latent down
to the image; where each latent comes from is its argument: a sampler (:meth:`sample`), given
latents (:meth:`generate`) or a decoder reading streams (:mod:`idfzip.codec`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .colour import COLOUR_TRANSFORMS
from .layers import PERMUTATIONS, FlowStep, squeeze2x2, unsqueeze2x2
from .priors import (
    ChannelMixturePrior,
    ConditionalLogisticPrior,
    ConditionalMixturePrior,
    Prior,
    StagedPrior,
)

PIXEL_OFFSET = 128  # pixels are centred on zero before entering the flow


@dataclass(frozen=True)
class FlowConfig:
    """Architecture of an :class:`IntegerDiscreteFlow`; saved next to the weights."""

    channels: int = 3
    levels: int = 3
    steps_per_level: int = 4
    hidden: int = 64
    depth: int = 2
    prior_hidden: int = 64
    prior_depth: int = 2
    translated_fraction: float = 0.25
    mixture_components: int = 5
    seed: int = 0
    # Options of issue #13; their defaults are the architecture of every earlier config, so a
    # saved config without these keys loads to the model it was saved from.
    permutation: str = "random"  # channel permutation before each coupling: "random", "reverse"
    coupling_gain: bool = False  # ReZero: couplings' translations scaled by a gain from zero
    colour_transform: str = "none"  # of the RGB pixels before the flow: "none", "ycocg-r"
    prior_stages: int = 1  # channel groups of each factored-out latent (StagedPrior)
    prior_components: int = 1  # logistics per element of a factored-out latent (1: no mixture)
    top_stages: int = 1  # channel groups of the top latent: the first unconditioned

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        for name in ("levels", "steps_per_level", "hidden", "depth", "prior_hidden",
                     "prior_depth", "mixture_components", "prior_stages", "prior_components",
                     "top_stages"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0 < self.translated_fraction < 1:
            raise ValueError("translated_fraction must lie strictly between 0 and 1")
        if max(self.prior_stages, self.top_stages) > 2 * self.channels:
            raise ValueError(f"prior_stages and top_stages can be at most {2 * self.channels} "
                             f"(the channels of the smallest latent)")
        if self.permutation not in PERMUTATIONS:
            raise ValueError(f"permutation must be one of {', '.join(PERMUTATIONS)}, "
                             f"got {self.permutation!r}")
        if self.colour_transform not in COLOUR_TRANSFORMS:
            raise ValueError(f"colour_transform must be one of {', '.join(COLOUR_TRANSFORMS)}, "
                             f"got {self.colour_transform!r}")
        if self.colour_transform != "none" and self.channels != 3:
            raise ValueError(f"colour_transform {self.colour_transform!r} needs RGB images "
                             f"(channels=3), got channels={self.channels}")

    @property
    def block(self) -> int:
        """Image sides are padded to a multiple of this."""
        return 2 ** self.levels

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Latents:
    """The integer latents of a batch: one tensor per level, the last one unconditioned.

    ``height`` and ``width`` are the image size before padding; ``levels[l]`` has shape
    (N, C_l, H_pad / 2^(l+1), W_pad / 2^(l+1)).
    """

    levels: list[torch.Tensor]
    height: int
    width: int


class IntegerDiscreteFlow(nn.Module):
    """Multi-scale integer flow with factored-out logistic priors (see module docstring)."""

    def __init__(self, config: FlowConfig):
        super().__init__()
        self.config = config
        gen = torch.Generator().manual_seed(config.seed)
        self.levels = nn.ModuleList()
        self.priors = nn.ModuleList()
        c = config.channels
        for _ in range(config.levels):
            c *= 4
            translated = max(1, round(c * config.translated_fraction))
            self.levels.append(nn.ModuleList(
                FlowStep(c, translated, config.hidden, config.depth, gen, config.permutation,
                         config.coupling_gain)
                for _ in range(config.steps_per_level)))
            kept = c // 2
            self.priors.append(self._factored_prior(kept, c - kept))
            c = kept
        self.top_prior = self._top_prior(c)

    def _conditional(self, cond_channels: int, channels: int, mixture: bool = False) -> Prior:
        """A network-conditioned prior: a logistic per element, or with ``mixture`` (for
        factored-out latents) a mixture of ``prior_components`` where that is above 1."""
        config = self.config
        if mixture and config.prior_components > 1:
            return ConditionalMixturePrior(cond_channels, channels, config.prior_hidden,
                                           config.prior_depth, config.prior_components)
        return ConditionalLogisticPrior(cond_channels, channels, config.prior_hidden,
                                        config.prior_depth)

    def _factored_prior(self, kept: int, factored: int) -> Prior:
        """The prior of a level's factored-out latent, conditioned on the ``kept`` channels."""
        sizes = group_sizes(factored, self.config.prior_stages)
        if len(sizes) == 1:
            return self._conditional(kept, factored, mixture=True)
        return StagedPrior([self._conditional(kept + sum(sizes[:k]), size, mixture=True)
                            for k, size in enumerate(sizes)])

    def _top_prior(self, channels: int) -> Prior:
        """The top latent's prior: a channel mixture, or one for its first channel group and
        conditional logistics for the others."""
        sizes = group_sizes(channels, self.config.top_stages)
        first = ChannelMixturePrior(sizes[0], self.config.mixture_components)
        if len(sizes) == 1:
            return first
        return StagedPrior([first, *(self._conditional(sum(sizes[:k]), size)
                                     for k, size in enumerate(sizes) if k)])

    # -- shapes ---------------------------------------------------------------------------
    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        b = self.config.block
        ph, pw = -h % b, -w % b
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x

    def _check_images(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.config.channels:
            raise ValueError(f"expected images of shape (N, {self.config.channels}, H, W), "
                             f"got {tuple(x.shape)}")
        if x.shape[-1] < 1 or x.shape[-2] < 1:
            raise ValueError("images must be at least 1x1")

    @property
    def device(self) -> torch.device:
        return next(self.top_prior.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Float dtype the latents are held in: float32 for training, float64 once exported
        to integer networks (see :mod:`idfzip.intnet`)."""
        return next(self.top_prior.parameters()).dtype

    @property
    def is_integer(self) -> bool:
        from .intnet import ExactNet
        return any(isinstance(m, ExactNet) for m in self.modules())

    # -- pixels <-> the flow's input --------------------------------------------------------
    def from_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Integer pixels 0..255 (float dtype) -> the flow's input: centred on zero, then the
        config's colour transform (see :mod:`idfzip.colour`)."""
        forward, _ = COLOUR_TRANSFORMS[self.config.colour_transform]
        return forward(x - PIXEL_OFFSET)

    def to_pixels(self, h: torch.Tensor) -> torch.Tensor:
        """Exact inverse of :meth:`from_pixels`, the one place every inverse path (generation,
        sampling, decoding) turns the flow's output back into pixels."""
        _, inverse = COLOUR_TRANSFORMS[self.config.colour_transform]
        return inverse(h) + PIXEL_OFFSET

    # -- the flow -------------------------------------------------------------------------
    def analyse(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Integer images -> (latents, conditions): the latent of every level, the top one
        last (float dtype, integer values), and the kept part each factored-out latent's prior
        is conditioned on."""
        self._check_images(x)
        h = self.from_pixels(self._pad(x.to(self.device, self.dtype)))
        latents, conds = [], []
        for steps in self.levels:
            h = squeeze2x2(h)
            for step in steps:
                h = step(h)
            kept = h.shape[1] // 2
            y, z = h[:, :kept], h[:, kept:]
            latents.append(z)
            conds.append(y)
            h = y
        latents.append(h)
        return latents, conds

    def coding_units(self, latents: list[torch.Tensor], conds: list[torch.Tensor]) -> list:
        """Every ``(prior, latent, params)`` a stream codes (see :mod:`idfzip.priors`), in the
        decoder's order: the top latent, then the factored-out ones from the deepest level."""
        units = self.top_prior.coding_units(latents[-1], None)
        for index in reversed(range(len(self.levels))):
            units += self.priors[index].coding_units(latents[index], conds[index])
        return units

    def _forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Integer images -> latents and per-image log-likelihood in nats (summed in float64,
        so that the total does not depend on how images are batched)."""
        latents, conds = self.analyse(x)
        log_p = self.top_prior.log_prob(latents[-1], None).double().sum(dim=(1, 2, 3))
        for prior, z, y in zip(self.priors, latents, conds):
            log_p = log_p + prior.log_prob(z, y).double().sum(dim=(1, 2, 3))
        return latents, log_p

    @torch.no_grad()
    def invert_level(self, index: int, h: torch.Tensor) -> torch.Tensor:
        """Undo level ``index`` given ``h``, its kept and factored-out parts side by side, which
        it overwrites: each step's inverse (the same float64 subtractions as
        ``FlowStep.inverse``) with one copy of the level's latents fewer, for decoding large
        tiles."""
        for step in reversed(self.levels[index]):
            coupling = step.coupling
            h[:, coupling.split:] -= coupling.translation(h[:, : coupling.split])
            h = step.permutation.inverse(h)
        return unsqueeze2x2(h)

    def top_shape(self, n: int, height: int, width: int) -> tuple[int, int, int, int]:
        """Shape of the top latent of ``n`` images of ``height`` x ``width``."""
        b = self.config.block
        return (n, self.top_prior.channels, -(-height // b), -(-width // b))

    @torch.no_grad()
    def synthesize(self, draw: Draw, n: int, height: int, width: int) -> torch.Tensor:
        """The one generative walk, top latent -> level L ... level 1 -> ``n`` images of
        ``height`` x ``width`` (float dtype, integer values, not clipped).

        ``draw(prior, cond, out)`` fills ``out`` with the latent that ``prior`` models given
        ``cond`` (``None`` for the top latent): by sampling, from given latents, or by decoding
        a stream. A level's kept and factored-out parts share one buffer, which the level's
        inverse overwrites, so a level's latents exist once (memory, for large tiles)."""
        y = torch.empty(self.top_shape(n, height, width), dtype=self.dtype, device=self.device)
        draw(self.top_prior, None, y)
        for index in reversed(range(len(self.levels))):
            prior, kept = self.priors[index], y.shape[1]
            h = torch.empty((n, kept + prior.channels, *y.shape[2:]), dtype=self.dtype,
                            device=self.device)
            h[:, :kept] = y
            del y
            draw(prior, h[:, :kept], h[:, kept:])
            y = self.invert_level(index, h)
            del h
        return self.to_pixels(y)[..., :height, :width]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training objective: bits per dimension of each image (N,), differentiable."""
        _, log_p = self._forward(x)
        return (-log_p / (math.log(2.0) * x[0].numel())).float()

    # -- public API -----------------------------------------------------------------------
    @torch.no_grad()
    def infer_latent(self, x: torch.Tensor) -> Latents:
        """``z = f^-1(x)`` for uint8/integer images (N, C, H, W); latents are int64."""
        latents, _ = self._forward(x)
        return Latents([z.to(torch.int64) for z in latents], x.shape[-2], x.shape[-1])

    @torch.no_grad()
    def generate(self, latents: Latents) -> torch.Tensor:
        """``x = f(z)``: exact inverse of :meth:`infer_latent`; returns int64 images."""
        given = [z.to(self.device, self.dtype) for z in reversed(latents.levels)]

        def draw(prior, cond, out):
            out.copy_(given.pop(0))
        n = latents.levels[0].shape[0]
        return self.synthesize(draw, n, latents.height, latents.width).to(torch.int64)

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log2 p(x)`` of each image in bits (N,), float64."""
        _, log_p = self._forward(x)
        return log_p / math.log(2.0)

    @torch.no_grad()
    def bpd(self, x: torch.Tensor) -> torch.Tensor:
        """Bits per dimension ``-log2 p(x) / (C H W)`` of each image (N,)."""
        return -self.log_prob(x) / x[0].numel()

    @torch.no_grad()
    def sample(self, n: int, height: int, width: int, temperature: float = 1.0,
               seed: int | None = None) -> torch.Tensor:
        """Draw ``n`` images ``x = f(z), z ~ p(z)``; returns uint8 (n, C, height, width).

        Values the flow maps outside 0..255 are clipped, as an image must be 8-bit.
        """
        if n < 1 or height < 1 or width < 1:
            raise ValueError("n, height and width must be positive")
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed if seed is not None else torch.seed())

        def draw(prior, cond, out):
            out.copy_(prior.sample(cond, out.shape, temperature, gen))
        x = self.synthesize(draw, n, height, width)
        return x.clamp(0, 255).to(torch.uint8)


# draw(prior, cond, out): where :meth:`IntegerDiscreteFlow.synthesize` gets each latent from
Draw = Callable[[Prior, "torch.Tensor | None", torch.Tensor], None]


def group_sizes(channels: int, groups: int) -> list[int]:
    """``channels`` split into ``groups`` consecutive groups of near-equal size."""
    if groups > channels:
        raise ValueError(f"cannot split {channels} channels into {groups} groups")
    return [channels // groups + (k < channels % groups) for k in range(groups)]
