"""Growing a trained flow deeper without changing what it computes.

Training a bigger model from scratch throws away what a smaller one has learnt; on a small
compute budget it is cheaper to grow the trained model and train on. :func:`deepen` gives a
model with ``k`` times the flow steps per level whose log-likelihood and latents are exactly
those of the original: every original step keeps its weights and is preceded by ``k - 1`` new
steps whose couplings start as the identity (a :class:`~idfzip.nets.ConvNet`'s last layer
starts at zero). A new step still permutes channels; that permutation is undone by folding its
inverse into the original step that follows, so the composition is unchanged and training
starts exactly where the small model stopped.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .model import FlowConfig, IntegerDiscreteFlow
from .weights import ModelError


def deepen(model: IntegerDiscreteFlow, config: FlowConfig) -> IntegerDiscreteFlow:
    """A float model of ``config`` that computes exactly what float ``model`` computes.

    ``config`` may differ from ``model.config`` only in ``steps_per_level``, which must be a
    multiple of it.
    """
    small = model.config
    k, rest = divmod(config.steps_per_level, small.steps_per_level)
    if rest or k < 1 or replace(config, steps_per_level=small.steps_per_level) != small:
        raise ModelError("a model can only be grown to the same architecture with a multiple "
                         f"of its {small.steps_per_level} flow steps per level")
    if model.is_integer:
        raise ModelError("grow a float model (idfzip.intnet.to_float turns an integer export "
                         "back into one)")
    big = IntegerDiscreteFlow(config)
    with torch.no_grad():
        for old_steps, new_steps in zip(model.levels, big.levels):
            for i, old in enumerate(old_steps):
                target = new_steps[k * i + k - 1]
                target.load_state_dict(old.state_dict())
                # the k - 1 fresh steps before it permute channels; undo that in its permutation
                before = torch.arange(old.permutation.perm.numel())
                for fresh in new_steps[k * i: k * i + k - 1]:
                    before = before[fresh.permutation.perm]
                perm = torch.argsort(before)[old.permutation.perm]
                target.permutation.perm.copy_(perm)
                target.permutation.inv_perm.copy_(torch.argsort(perm))
        big.priors.load_state_dict(model.priors.state_dict())
        big.top_prior.load_state_dict(model.top_prior.state_dict())
    return big
