"""Invertible layers over integer-valued tensors.

Every layer maps integers to integers and has an exact ``inverse``: ``layer.inverse(layer(x))
== x`` for any integer ``x``, because the only non-trivial operation is adding a rounded
function of channels that the layer leaves unchanged. Tensors hold integer values in a
floating dtype so that gradients can flow during training.
"""

from __future__ import annotations

import torch
from torch import nn

from .nets import OUTPUT_SCALE, ConvNet


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer, passing the gradient straight through."""
    return x + (torch.round(x) - x).detach()


def squeeze2x2(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 4C, H/2, W/2), moving each 2x2 block into channels."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // 2, 2, w // 2, 2)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(n, c * 4, h // 2, w // 2)


def unsqueeze2x2(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`squeeze2x2`."""
    n, c, h, w = x.shape
    x = x.reshape(n, c // 4, 2, 2, h, w)
    return x.permute(0, 1, 4, 2, 5, 3).reshape(n, c // 4, h * 2, w * 2)


def random_permutation(channels: int, generator: torch.Generator) -> torch.Tensor:
    """A seeded random order: every channel meets every other in some coupling."""
    return torch.randperm(channels, generator=generator)


def reverse_permutation(channels: int, generator: torch.Generator) -> torch.Tensor:
    """The channels in reverse order (Glow's and IDF++'s ablations); draws nothing from
    ``generator``."""
    return torch.arange(channels - 1, -1, -1)


# the values of FlowConfig.permutation: name -> (channels, generator) -> permutation
PERMUTATIONS = {"random": random_permutation, "reverse": reverse_permutation}


class Permutation(nn.Module):
    """A fixed channel permutation, stored in the state dict so files stay decodable."""

    def __init__(self, channels: int, generator: torch.Generator, kind: str = "random"):
        super().__init__()
        perm = PERMUTATIONS[kind](channels, generator)
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.perm]

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, self.inv_perm]


class AdditiveCoupling(nn.Module):
    """``z_b = x_b + round(NN(x_a))``, ``z_a = x_a``: integer in, integer out, exactly invertible.

    ``x_a`` is the first ``channels - translated`` channels; the network sees only those, so
    the inverse can recompute the same translation from ``z_a``. With ``gain`` (ReZero), the
    network's output is scaled by a learnt per-channel gain that starts at zero (see
    :class:`~idfzip.nets.ConvNet`).
    """

    def __init__(self, channels: int, translated: int, hidden: int, depth: int,
                 gain: bool = False):
        super().__init__()
        self.split = channels - translated
        self.net = ConvNet(self.split, translated, hidden, depth, gain=gain)

    def translation(self, x_a: torch.Tensor) -> torch.Tensor:
        return round_ste(self.net(x_a) * OUTPUT_SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_a, x_b = x[:, : self.split], x[:, self.split :]
        return torch.cat([x_a, x_b + self.translation(x_a)], dim=1)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        z_a, z_b = z[:, : self.split], z[:, self.split :]
        return torch.cat([z_a, z_b - self.translation(z_a)], dim=1)


class FlowStep(nn.Module):
    """Permutation (of kind ``permutation``, a key of :data:`PERMUTATIONS`) followed by an
    additive coupling (with a ReZero ``gain`` or not)."""

    def __init__(self, channels: int, translated: int, hidden: int, depth: int, generator,
                 permutation: str = "random", gain: bool = False):
        super().__init__()
        self.permutation = Permutation(channels, generator, permutation)
        self.coupling = AdditiveCoupling(channels, translated, hidden, depth, gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.coupling(self.permutation(x))

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return self.permutation.inverse(self.coupling.inverse(z))
