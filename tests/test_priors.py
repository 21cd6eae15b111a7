"""The prior contract (idfzip.priors), checked for every prior family and layout (and the
flow's options with them): exact
inverse, log_prob against a brute-force pmf, exact coding at the rate log_prob promises,
identical bytes whatever the batching and threads, save/load, sampling and growth."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from idfzip.api import CodingModel, compress, decompress
from idfzip.codec import decode_image, encode_image
from idfzip.growth import grow_priors
from idfzip.intnet import to_integer
from idfzip.model import group_sizes
from idfzip.priors import (
    ChannelMixturePrior,
    ConditionalLogisticPrior,
    ConditionalMixturePrior,
    StagedPrior,
)
from idfzip.weights import load_model_file, save_model

from .conftest import mid_grey, tiny_model

# every prior layout a config can ask for (tiny models: 2 levels of 6 and 12 factored-out
# channels, a 12-channel top latent)
LAYOUTS = {
    "logistic": {},
    "staged levels": {"prior_stages": 2},
    "staged top": {"top_stages": 2},
    "staged 3": {"prior_stages": 3, "top_stages": 3},
    "mixture": {"prior_components": 3},
    "staged mixture": {"prior_components": 2, "prior_stages": 2, "top_stages": 2},
    # the flow's options (tests/test_flow_options.py) with richer priors
    "every option": {"prior_components": 2, "top_stages": 2, "permutation": "reverse",
                     "coupling_gain": True, "colour_transform": "ycocg-r"},
}
ids = list(LAYOUTS)


def model_of(layout: str, seed: int = 0, std: float = 0.1):
    return tiny_model(seed, std=std, **LAYOUTS[layout])


def smooth_image(seed: int, height: int = 24, width: int = 32) -> np.ndarray:
    """(C, H, W) uint8 image with some structure."""
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(mid_grey(rng, height, width).transpose(2, 0, 1))


def naive_log_pmf(prior, z: torch.Tensor, params: tuple) -> torch.Tensor:
    """Brute force, in float64: the difference of the logistic CDFs at the bin's edges,
    weighted over components for a mixture."""
    z = z.double().unsqueeze(-1)
    if isinstance(prior, ChannelMixturePrior):
        c = params[0]  # each element's channel
        logits, means, log_scales = (p.double()[c] for p in prior.params())
    elif isinstance(prior, ConditionalMixturePrior):
        logits, means, log_scales = (p.double() for p in params)
    else:
        assert isinstance(prior, ConditionalLogisticPrior)
        means, log_scales = (p.double().unsqueeze(-1) for p in params)
        logits = torch.zeros_like(means)
    scales = log_scales.exp()
    mass = torch.sigmoid((z + 0.5 - means) / scales) - torch.sigmoid((z - 0.5 - means) / scales)
    return torch.log((torch.softmax(logits, -1) * mass).sum(-1))


@pytest.mark.parametrize("layout", ids)
def test_the_flow_is_exactly_invertible(layout):
    model = model_of(layout, std=0.5)
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 3, 13, 19)))
    x[0, :, 0, 0] = 0
    x[1, :, 0, 0] = 255
    assert torch.equal(model.generate(model.infer_latent(x)), x)


@pytest.mark.parametrize("layout", ids)
def test_log_prob_is_the_sum_of_each_coded_units_brute_force_pmf(layout):
    model = model_of(layout)
    x = torch.from_numpy(np.stack([smooth_image(2), smooth_image(3)]))
    with torch.no_grad():
        latents, conds = model.analyse(x)
        units = model.coding_units(latents, conds)
        expected = sum(naive_log_pmf(prior, z, params).sum(dim=(1, 2, 3))
                       for prior, z, params in units)
    coded = sum(z[0].numel() for _, z, _ in units)
    assert coded == sum(z[0].numel() for z in latents)  # every latent coded exactly once
    # float32 per element, summed in float64
    torch.testing.assert_close(model.log_prob(x) * np.log(2.0), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("layout", ids)
def test_each_prior_is_a_normalised_pmf(layout):
    model = model_of(layout)
    x = torch.from_numpy(smooth_image(4, 16, 16)[None])
    with torch.no_grad():
        latents, conds = model.analyse(x)
        for prior, z, params in model.coding_units(latents, conds):
            values = torch.arange(-400, 401, dtype=torch.float64).view(-1, 1, 1, 1)
            first = tuple(p[:, :1, :1, :1] for p in params)  # one element's distribution
            total = naive_log_pmf(prior, values, first).exp().sum()
            assert total.item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("layout", ids)
def test_coding_round_trips_at_the_rate_log_prob_promises(layout):
    float_model = model_of(layout)
    coder = CodingModel(to_integer(model_of(layout)), "tiny")
    image = smooth_image(5, 64, 64)
    streams = encode_image(coder.codec, image, 64)
    decoded = decode_image(coder.codec, streams, 3, 64, 64, 64)
    assert np.array_equal(decoded, image)
    bits = 8 * sum(len(s) for s in streams)
    promised = -coder.model.log_prob(torch.from_numpy(image[None])).item()
    assert promised > 0 and abs(bits - promised) / promised < 0.01
    # the integer export and the float model it came from agree closely
    assert -float_model.log_prob(torch.from_numpy(image[None])).item() == pytest.approx(
        promised, rel=0.01)


@pytest.mark.parametrize("layout", ids)
def test_bytes_do_not_depend_on_batching_or_threads(layout):
    coder = CodingModel(to_integer(model_of(layout, seed=3)), "tiny")
    from PIL import Image
    image = Image.fromarray(smooth_image(6, 40, 56).transpose(1, 2, 0))
    one = compress(image, coder, tile=16, batch_size=1)
    torch.set_num_threads(2)
    try:
        many = compress(image, coder, tile=16, batch_size=5)
    finally:
        torch.set_num_threads(1)
    assert one == many
    assert decompress(many, coder, batch_size=3).tobytes() == image.tobytes()


@pytest.mark.parametrize("layout", ids)
def test_save_and_load_keep_the_layout_and_the_likelihood(layout, tmp_path):
    model = to_integer(model_of(layout, seed=4))
    save_model(model, tmp_path / "m.pt")
    loaded = load_model_file(tmp_path / "m.pt")
    assert loaded.config == model.config
    x = torch.from_numpy(smooth_image(7)[None])
    assert torch.equal(loaded.log_prob(x), model.log_prob(x))


@pytest.mark.parametrize("layout", ids)
def test_sampling_follows_the_layout_and_its_seed(layout):
    model = model_of(layout, std=0.5)
    a = model.sample(2, 9, 12, seed=5)
    assert a.shape == (2, 3, 9, 12) and a.dtype == torch.uint8
    assert torch.equal(a, model.sample(2, 9, 12, seed=5))


def test_staged_priors_condition_later_groups_on_earlier_ones():
    """Changing a first-group latent changes the second group's log_prob, not the first's
    other elements': the second stage sees the first group."""
    prior = model_of("staged levels", std=0.5).priors[0]
    assert isinstance(prior, StagedPrior)
    cond = torch.randint(-20, 20, (1, 6, 4, 4)).double()
    z = torch.randint(-5, 5, (1, 6, 4, 4)).double()
    before = prior.double().log_prob(z, cond)
    z[:, 0] += 3
    after = prior.log_prob(z, cond)
    first = group_sizes(6, 2)[0]
    assert torch.equal(before[:, 1:first], after[:, 1:first])
    assert not torch.equal(before[:, first:], after[:, first:])


def test_growing_staged_priors_keeps_the_factored_likelihood_exactly():
    model = model_of("logistic", std=0.3)
    grown = grow_priors(model, replace(model.config, prior_stages=3))
    x = torch.from_numpy(smooth_image(8)[None])
    assert torch.equal(grown.log_prob(x), model.log_prob(x))
    both = grow_priors(model, replace(model.config, prior_stages=2, top_stages=2))
    assert both.log_prob(x).item() == pytest.approx(model.log_prob(x).item(), rel=0.05)


def test_layouts_that_cannot_be_built_are_refused():
    with pytest.raises(ValueError, match="prior_stages"):
        tiny_model(channels=1, prior_stages=3)
    assert group_sizes(12, 5) == [3, 3, 2, 2, 2]
