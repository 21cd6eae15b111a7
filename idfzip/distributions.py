"""Discretized logistic distributions over the integers.

A latent ``z`` is an unbounded integer; its probability under a logistic with mean ``mu`` and
scale ``s`` is the mass of the bin ``[z - 1/2, z + 1/2]``:

    P(z) = sigmoid((z + 1/2 - mu) / s) - sigmoid((z - 1/2 - mu) / s)

Everything here returns natural-log probabilities; callers convert to bits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Bounds on the logistic scale, shared by the model and the entropy coder's tables. Below
# LOG_SCALE_MIN one bin already holds >98% of the mass; above LOG_SCALE_MAX the latent is
# effectively uniform over the 8-bit range. Written as literals (log 0.1 and log 256), not
# computed, so that no platform's log() can move the coder's quantisation boundaries.
LOG_SCALE_MIN = -2.3025850929940455
LOG_SCALE_MAX = 5.545177444479562


def clamp_log_scale(log_scale: torch.Tensor) -> torch.Tensor:
    """Keep log-scales in the range the coder supports (gradient passes inside the range)."""
    return log_scale.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(-x)) for x > 0, accurate for small and large x."""
    return torch.where(x < math.log(2.0), torch.log(-torch.expm1(-x)), torch.log1p(-torch.exp(-x)))


def discretized_logistic_log_pmf(
    z: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """Log-probability of integer ``z`` under a discretized logistic, elementwise.

    Uses the identity ``sigmoid(b) - sigmoid(a) = sigmoid(b) * sigmoid(-a) * (1 - exp(a - b))``
    which stays finite in both tails, unlike the naive difference of sigmoids.
    """
    inv_scale = torch.exp(-log_scale)
    a = (z - 0.5 - mean) * inv_scale
    b = (z + 0.5 - mean) * inv_scale
    return F.logsigmoid(b) + F.logsigmoid(-a) + _log1mexp(inv_scale)


def mixture_log_pmf(
    z: torch.Tensor, logits: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor
) -> torch.Tensor:
    """Log-probability of integer ``z`` under a mixture of discretized logistics.

    ``z`` has shape ``S``; ``logits``, ``means``, ``log_scales`` have shape ``S + (K,)`` (or
    broadcast to it) for ``K`` components.
    """
    component = discretized_logistic_log_pmf(z.unsqueeze(-1), means, log_scales)
    return torch.logsumexp(component + torch.log_softmax(logits, dim=-1), dim=-1)


def sample_logistic(
    mean: torch.Tensor, log_scale: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Integer samples of a discretized logistic: a continuous sample rounded to its bin."""
    u = torch.rand(mean.shape, generator=generator, dtype=torch.float64, device=mean.device)
    u = u.clamp(1e-12, 1 - 1e-12)
    noise = (torch.log(u) - torch.log1p(-u)).to(mean.dtype)
    return torch.round(mean + torch.exp(log_scale) * noise)


def sample_mixture(
    logits: torch.Tensor,
    means: torch.Tensor,
    log_scales: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Integer samples of a discretized logistic mixture (components on the last axis)."""
    flat_logits = logits.reshape(-1, logits.shape[-1])
    choice = torch.multinomial(torch.softmax(flat_logits.double(), -1), 1, generator=generator)
    choice = choice.reshape(logits.shape[:-1] + (1,)).to(logits.device)
    mean = torch.gather(means, -1, choice).squeeze(-1)
    log_scale = torch.gather(log_scales, -1, choice).squeeze(-1)
    return sample_logistic(mean, log_scale, generator)
