"""The integer discrete flow: ``z = f^-1(x)`` (latent inference), ``x = f(z)`` (generation) and
the exact likelihood ``p(x) = p(z)`` (a bijection on integers has no Jacobian term).

Pixels are centred on zero and, optionally, turned into YCoCg-R (``colour_transform``, see
:mod:`idfzip.colour`); then, per level ``l = 1..L``::

    squeeze 2x2 -> [permute -> additive coupling] * steps -> split: z_l | y_l

The permutations are random or reversals (``permutation``); the couplings' translations may be
scaled by learnt ReZero gains that start at zero (``coupling_gain``, see
:class:`~idfzip.nets.ConvNet`).

``z_l`` is factored out under a discretized logistic conditioned on ``y_l``; ``y_l`` goes on
to the next level. After the last level ``y_L`` is modelled by a per-channel logistic
mixture. No parameter depends on the image size; images whose sides are not multiples of
``2^L`` are padded by edge replication at the bottom and right, and cropped back.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .colour import COLOUR_TRANSFORMS
from .layers import PERMUTATIONS, FlowStep, squeeze2x2, unsqueeze2x2
from .distributions import discretized_logistic_log_pmf
from .priors import ChannelMixturePrior, ConditionalLogisticPrior

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

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        for name in ("levels", "steps_per_level", "hidden", "depth", "prior_hidden",
                     "prior_depth", "mixture_components"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0 < self.translated_fraction < 1:
            raise ValueError("translated_fraction must lie strictly between 0 and 1")
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
            self.priors.append(ConditionalLogisticPrior(
                kept, c - kept, config.prior_hidden, config.prior_depth))
            c = kept
        self.top_prior = ChannelMixturePrior(c, config.mixture_components)

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
        return self.top_prior.logits.device

    @property
    def dtype(self) -> torch.dtype:
        """Float dtype the latents are held in: float32 for training, float64 once exported
        to integer networks (see :mod:`idfzip.intnet`)."""
        return self.top_prior.logits.dtype

    @property
    def is_integer(self) -> bool:
        from .intnet import IntegerConvNet
        return any(isinstance(m, IntegerConvNet) for m in self.modules())

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
    def analyse(self, x: torch.Tensor):
        """Integer images -> (latents, prior parameters): the latent of every level (float
        dtype, integer values) and the (mean, log_scale) of each factored-out latent's prior."""
        self._check_images(x)
        h = self.from_pixels(self._pad(x.to(self.device, self.dtype)))
        latents, params = [], []
        for steps, prior in zip(self.levels, self.priors):
            h = squeeze2x2(h)
            for step in steps:
                h = step(h)
            kept = h.shape[1] // 2
            y, z = h[:, :kept], h[:, kept:]
            params.append(prior.params(y))
            latents.append(z)
            h = y
        latents.append(h)
        return latents, params

    def _forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Integer images -> latents and per-image log-likelihood in nats (summed in float64,
        so that the total does not depend on how images are batched)."""
        latents, params = self.analyse(x)
        log_p = self.top_prior.log_prob(latents[-1]).double().sum(dim=(1, 2, 3))
        for z, (mean, log_scale) in zip(latents, params):
            log_pmf = discretized_logistic_log_pmf(z, mean, log_scale)
            log_p = log_p + log_pmf.double().sum(dim=(1, 2, 3))
        return latents, log_p

    def inverse_level(self, index: int, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Undo level ``index`` given its kept part ``y`` and factored-out part ``z``."""
        h = torch.cat([y, z], dim=1)
        if not torch.is_grad_enabled():
            return self.invert_level(index, h)
        for step in reversed(self.levels[index]):
            h = step.inverse(h)
        return unsqueeze2x2(h)

    @torch.no_grad()
    def invert_level(self, index: int, h: torch.Tensor) -> torch.Tensor:
        """:meth:`inverse_level` of ``h``, the kept and factored-out parts side by side, which
        it overwrites: the same values (the same float64 subtractions) with one copy of the
        level's latents fewer, for decoding large tiles."""
        for step in reversed(self.levels[index]):
            coupling = step.coupling
            h[:, coupling.split:] -= coupling.translation(h[:, : coupling.split])
            h = step.permutation.inverse(h)
        return unsqueeze2x2(h)

    def _inverse(self, levels: list[torch.Tensor]) -> torch.Tensor:
        h = levels[-1]
        for index in reversed(range(len(self.levels))):
            h = self.inverse_level(index, h, levels[index])
        return self.to_pixels(h)

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
        levels = [z.to(self.device, self.dtype) for z in latents.levels]
        x = self._inverse(levels)
        return x[..., : latents.height, : latents.width].to(torch.int64)

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
        b = self.config.block
        ph, pw = height + (-height % b), width + (-width % b)
        scale = 2 ** self.config.levels
        shape = (n, self.top_prior.channels, ph // scale, pw // scale)
        h = self.top_prior.sample(shape, temperature, gen)
        for index in reversed(range(len(self.levels))):
            z = self.priors[index].sample(h, temperature, gen)
            h = self.inverse_level(index, h, z)
        x = self.to_pixels(h)[..., :height, :width]
        return x.clamp(0, 255).to(torch.uint8)
