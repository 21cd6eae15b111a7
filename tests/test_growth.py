"""Growing a trained flow deeper keeps exactly what it computes, so training goes on from it."""

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from idfzip.growth import deepen
from idfzip.intnet import to_integer
from idfzip.weights import ModelError

from .conftest import tiny_model


@settings(max_examples=10, deadline=None)
@given(k=st.integers(2, 3), seed=st.integers(0, 2**16))
def test_deepened_model_has_the_same_latents_and_likelihood(k, seed):
    small = tiny_model(seed=seed, std=0.3)
    big = deepen(small, replace(small.config, steps_per_level=k * small.config.steps_per_level))
    assert all(len(level) == k * small.config.steps_per_level for level in big.levels)
    x = torch.randint(0, 256, (2, 3, 12, 20), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(big.log_prob(x), small.log_prob(x))
    for a, b in zip(big.infer_latent(x).levels, small.infer_latent(x).levels):
        assert torch.equal(a, b)


def test_new_steps_permute_and_learn():
    """The new steps are real flow steps: not identity permutations, and their networks get
    gradients (the last layer, which starts at zero, first)."""
    small = tiny_model()
    big = deepen(small, replace(small.config, steps_per_level=4))
    fresh = big.levels[0][0]
    assert not torch.equal(fresh.permutation.perm, torch.arange(fresh.permutation.perm.numel()))
    big.train()
    big(torch.randint(0, 256, (2, 3, 8, 8)).float()).mean().backward()
    assert fresh.coupling.net.layers[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("change", [dict(steps_per_level=3), dict(hidden=16),
                                    dict(steps_per_level=4, levels=3)])
def test_only_a_multiple_of_the_steps_can_be_grown(change):
    small = tiny_model()
    with pytest.raises(ModelError, match="multiple"):
        deepen(small, replace(small.config, **change))


def test_integer_exports_are_not_grown():
    small = to_integer(tiny_model())
    with pytest.raises(ModelError, match="float model"):
        deepen(small, replace(small.config, steps_per_level=4))


def test_grow_deepens_and_stages_in_one_go():
    """What `idfzip train --init` does when the preset is deeper and has staged priors: the
    factored-out likelihood is kept exactly (prior_stages only)."""
    from idfzip.growth import grow
    small = tiny_model(3, std=0.3)
    target = replace(small.config, steps_per_level=4, prior_stages=2)
    big = grow(small, target)
    assert big.config == target
    x = torch.randint(0, 256, (1, 3, 16, 16))
    assert torch.equal(big.log_prob(x), small.log_prob(x))


@settings(max_examples=8, deadline=None)
@given(extra=st.integers(1, 24), prior_extra=st.integers(0, 24), seed=st.integers(0, 2**16))
def test_widened_model_has_the_same_latents_and_likelihood(extra, prior_extra, seed):
    """Widened in float64, so that the exact zeros of the new outgoing weights leave every sum
    as it was and the latents are compared exactly."""
    from idfzip.growth import widen
    small = tiny_model(seed=seed, std=0.3, top_stages=2).double()
    config = replace(small.config, hidden=small.config.hidden + extra,
                     prior_hidden=small.config.prior_hidden + prior_extra)
    wide = widen(small, config)
    assert wide.config == config
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in small.parameters())
    x = torch.randint(0, 256, (2, 3, 12, 20), generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(wide.log_prob(x), small.log_prob(x), rtol=1e-9, atol=1e-9)
    for a, b in zip(wide.infer_latent(x).levels, small.infer_latent(x).levels):
        assert torch.equal(a, b)


def test_new_units_learn_from_the_first_step():
    """A new unit's outgoing weights start at zero but get a gradient, and its incoming ones
    are not zero (they keep their random initialisation)."""
    from idfzip.growth import widen
    small = tiny_model(seed=1, std=0.3)
    old = small.config.hidden
    wide = widen(small, replace(small.config, hidden=old + 8))
    first, last = wide.levels[0][0].coupling.net.layers[0], \
        wide.levels[0][0].coupling.net.layers[-1]
    assert torch.equal(last.weight[:, old:], torch.zeros_like(last.weight[:, old:]))
    assert first.weight[old:].abs().sum() > 0
    wide.train()
    wide(torch.randint(0, 256, (2, 3, 8, 8)).float()).mean().backward()
    assert last.weight.grad[:, old:].abs().sum() > 0


@pytest.mark.parametrize("change", [dict(hidden=4), dict(levels=3), dict(steps_per_level=4)])
def test_widen_refuses_narrowing_and_other_changes(change):
    from idfzip.growth import widen
    small = tiny_model()
    with pytest.raises(ModelError, match="widen"):
        widen(small, replace(small.config, **change))


def test_grow_deepens_and_widens_in_one_go():
    from idfzip.growth import grow
    small = tiny_model(3, std=0.3).double()
    target = replace(small.config, steps_per_level=4, hidden=small.config.hidden * 2)
    big = grow(small, target)
    assert big.config == target
    x = torch.randint(0, 256, (1, 3, 16, 16))
    torch.testing.assert_close(big.log_prob(x), small.log_prob(x), rtol=1e-9, atol=1e-9)


def test_grow_priors_refuses_other_changes():
    from idfzip.growth import grow_priors
    small = tiny_model(3)
    with pytest.raises(ModelError):
        grow_priors(small, replace(small.config, hidden=16, prior_stages=2))


def test_recoloured_model_keeps_every_weight_and_reads_ycocg():
    """recolour (also reached through grow) moves a model to another colour transform: the
    same state, a different input, so a different likelihood but an exact round trip."""
    from idfzip.growth import grow, recolour
    rgb = tiny_model(seed=3, std=0.3)
    ycocg = recolour(rgb, "ycocg-r")
    assert ycocg.config == replace(rgb.config, colour_transform="ycocg-r")
    assert all(torch.equal(a, b) for a, b in zip(rgb.state_dict().values(),
                                                 ycocg.state_dict().values()))
    assert grow(rgb, ycocg.config).config == ycocg.config
    x = torch.randint(0, 256, (2, 3, 8, 12), generator=torch.Generator().manual_seed(3))
    assert not torch.equal(ycocg.log_prob(x), rgb.log_prob(x))
    assert torch.equal(ycocg.generate(ycocg.infer_latent(x)), x.to(ycocg.dtype))
    with pytest.raises(ModelError, match="float model"):
        recolour(to_integer(tiny_model()), "ycocg-r")
