"""Growing a trained flow without changing what it computes: deeper (:func:`deepen`), wider
(:func:`widen`) or with richer priors (:func:`grow_priors`); or moved to another colour transform
(:func:`recolour`), which does change it but keeps what the networks have learnt.

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

import math
from dataclasses import replace

import torch

from .model import FlowConfig, IntegerDiscreteFlow
from .nets import OUTPUT_SCALE
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
    big = IntegerDiscreteFlow(config).to(model.dtype)
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


def recolour(model: IntegerDiscreteFlow, colour_transform: str) -> IntegerDiscreteFlow:
    """A float model with every weight of ``model`` that reads its pixels through
    ``colour_transform`` instead (the transform has no parameters, so the state carries over
    whole). Unlike the growths below this changes the likelihood: the networks were trained
    on the other channels. But they keep their spatial filters and the priors their scales,
    so training on from here is far cheaper than from scratch (a colour transform from
    scratch measured 0.3 bpd better than RGB after 5,000 steps, see data/benchmarks)."""
    if model.is_integer:
        raise ModelError("recolour a float model (idfzip.intnet.to_float turns an integer "
                         "export back into one)")
    new = IntegerDiscreteFlow(replace(model.config, colour_transform=colour_transform))
    new.load_state_dict(model.state_dict())
    return new


def widen(model: IntegerDiscreteFlow, config: FlowConfig) -> IntegerDiscreteFlow:
    """A float model of ``config`` (``model``'s with a larger ``hidden`` and/or
    ``prior_hidden``) that computes exactly what float ``model`` computes.

    Every hidden layer keeps its old units and gains new ones (net2net's function-preserving
    widening, Chen et al. 2016): a new unit's incoming weights and bias keep their fresh random
    initialisation, its outgoing weights start at zero, so the old units see exactly their old
    inputs and the output is unchanged. Training moves the zero weights at once (their
    gradient is the new units' activation), so the new units start learning from the first
    step, from where the narrow model stopped.
    """
    old = model.config
    if replace(config, hidden=old.hidden, prior_hidden=old.prior_hidden) != old \
            or config.hidden < old.hidden or config.prior_hidden < old.prior_hidden:
        raise ModelError("widen changes only hidden and prior_hidden, and only upwards")
    if model.is_integer:
        raise ModelError("widen a float model (idfzip.intnet.to_float turns an integer export "
                         "back into one)")
    wide = IntegerDiscreteFlow(config).to(model.dtype)
    state = wide.state_dict()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            target = state[name]
            if target.shape == value.shape:
                target.copy_(value)
                continue
            # a convolution's weight (out, in, k, k) or bias (out,) with more hidden units: the
            # old units' rows get their old values, and zeros where they read new units; the
            # new units' rows keep their initialisation
            target[: value.shape[0]].zero_()
            target[tuple(slice(0, n) for n in value.shape)] = value
    wide.load_state_dict(state)
    return wide


PRIOR_OPTIONS = ("prior_stages", "top_stages", "prior_components")
WIDTHS = ("hidden", "prior_hidden")


def grow(model: IntegerDiscreteFlow, config: FlowConfig) -> IntegerDiscreteFlow:
    """``model`` (float) grown to ``config``: in another colour transform (:func:`recolour`),
    deeper (:func:`deepen`), wider (:func:`widen`) and/or with richer priors
    (:func:`grow_priors`), whichever the difference needs."""
    if model.config.colour_transform != config.colour_transform:
        model = recolour(model, config.colour_transform)
    keep = {k: getattr(model.config, k) for k in PRIOR_OPTIONS}
    if model.config.steps_per_level != config.steps_per_level:
        narrow = {k: getattr(model.config, k) for k in WIDTHS}
        model = deepen(model, replace(config, **keep, **narrow))
    if any(getattr(model.config, k) != getattr(config, k) for k in WIDTHS):
        model = widen(model, replace(config, **keep))
    return model if model.config == config else grow_priors(model, config)


def grow_priors(model: IntegerDiscreteFlow, config: FlowConfig) -> IntegerDiscreteFlow:
    """A float model of ``config`` (``model``'s with other ``prior_stages``, ``top_stages`` or
    ``prior_components``) that starts from what ``model`` computes. The flow is copied. Each
    stage of a factored-out prior is the old prior's network restricted to the stage's
    channels, with zero weights on the groups before it; as a mixture, its first component
    is that logistic and the others start beside it at 1/20 of the weight each. So a staged
    logistic prior's likelihood is exactly the old one, a mixture's nearly. A staged top
    latent's first group keeps its mixtures; the later groups start as one logistic per
    channel with the old mixture's mean and variance (the top latent is a sixteenth of the
    dims, so the small initial loss is soon made up)."""
    old = model.config
    if replace(config, **{k: getattr(old, k) for k in PRIOR_OPTIONS}) != old:
        raise ModelError("grow_priors changes only prior_stages, top_stages and "
                         "prior_components")
    if any(getattr(old, k) != 1 for k in PRIOR_OPTIONS) or model.is_integer:
        raise ModelError("grow_priors starts from a float model with single-logistic priors")
    new = IntegerDiscreteFlow(config)
    with torch.no_grad():
        new.levels.load_state_dict(model.levels.state_dict())
        for old_prior, new_prior in zip(model.priors, new.priors):
            offset = 0
            for stage in getattr(new_prior, "stages", [new_prior]):
                _restrict(old_prior, stage, offset)
                offset += stage.channels
        _stage_top(model.top_prior, new.top_prior)
    return new


def _restrict(old, stage, offset: int) -> None:
    """``stage``'s network := ``old``'s for channels ``offset ..`` (see :func:`grow_priors`)."""
    old_convs = [m for m in old.net.layers if isinstance(m, torch.nn.Conv2d)]
    new_convs = [m for m in stage.net.layers if isinstance(m, torch.nn.Conv2d)]
    for a, b in zip(old_convs[1:-1], new_convs[1:-1]):
        b.load_state_dict(a.state_dict())
    first, new_first = old_convs[0], new_convs[0]
    new_first.weight.zero_()
    new_first.weight[:, : first.weight.shape[1]] = first.weight
    new_first.bias.copy_(first.bias)
    last, new_last = old_convs[-1], new_convs[-1]
    c, size = old.channels, stage.channels
    means = list(range(offset, offset + size))
    log_scales = [c + row for row in means]
    k = getattr(stage, "components", 1)
    if k == 1:
        new_last.weight.copy_(last.weight[means + log_scales])
        new_last.bias.copy_(last.bias[means + log_scales])
        return
    new_last.weight.zero_()
    new_last.bias.zero_()
    for j in range(k):  # rows: means, log-scales, logits, component-major (ConditionalMixturePrior)
        for kind, rows in enumerate((means, log_scales)):
            at = slice(kind * k * size + j * size, kind * k * size + (j + 1) * size)
            new_last.weight[at] = last.weight[rows]
            new_last.bias[at] = last.bias[rows]
        if j:  # beside the first: shifted, wider, lighter
            new_last.bias[j * size: (j + 1) * size] += (-1) ** j * 0.5 / OUTPUT_SCALE * j
            new_last.bias[k * size + j * size: k * size + (j + 1) * size] += 0.5
            new_last.bias[2 * k * size + j * size: 2 * k * size + (j + 1) * size] = -3.0


def _stage_top(old, new) -> None:
    stages = getattr(new, "stages", [new])
    first = stages[0]
    for name in ("logits", "means", "log_scales"):
        getattr(first, name).copy_(getattr(old, name)[: first.channels])
    logits, means, log_scales = old.params()
    weights = torch.softmax(logits, -1)
    mean = (weights * means).sum(-1)
    variance = (weights * (torch.exp(2 * log_scales) * math.pi**2 / 3 + means**2)).sum(-1)
    scale = (variance - mean**2).clamp_min(1e-6).sqrt() * math.sqrt(3) / math.pi
    offset = first.channels
    for stage in stages[1:]:
        bias = stage.net.layers[-1].bias
        rows = slice(offset, offset + stage.channels)
        bias[: stage.channels] = mean[rows] / OUTPUT_SCALE
        bias[stage.channels:] = torch.log(scale[rows])
        offset += stage.channels
