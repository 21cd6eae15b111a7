import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from idfzip import FlowConfig, IntegerDiscreteFlow
from idfzip.model import PIXEL_OFFSET

from .conftest import tiny_model


def images(n, c, h, w, seed=0):
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), seed=st.integers(0, 10_000))
def test_generate_inverts_infer_latent_at_any_size(h, w, seed):
    model = tiny_model(seed % 3)
    x = images(2, 3, h, w, seed)
    lat = model.infer_latent(x)
    assert all(z.dtype == torch.int64 for z in lat.levels)
    assert torch.equal(model.generate(lat), x.long())


@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (53, 1), (2, 90), (31, 17)])
def test_round_trip_edge_shapes(shape):
    model = tiny_model(1)
    x = images(1, 3, *shape, seed=sum(shape))
    assert torch.equal(model.generate(model.infer_latent(x)), x.long())


def test_grey_model_round_trip():
    model = tiny_model(2, channels=1, levels=3)
    x = images(2, 1, 19, 24)
    assert torch.equal(model.generate(model.infer_latent(x)), x.long())
    assert model.bpd(x).shape == (2,)


def test_latents_are_not_the_pixels():
    model = tiny_model()
    x = images(1, 3, 8, 8)
    lat = model.infer_latent(x)
    assert sum(z.numel() for z in lat.levels) == x.numel()
    raw = IntegerDiscreteFlow(model.config).infer_latent(x)  # zero-initialised: no translation
    assert any(not torch.equal(a, b) for a, b in zip(lat.levels, raw.levels))


def test_alone_and_batched_give_identical_latents_and_likelihood():
    model = tiny_model(4)
    x = images(5, 3, 20, 12, seed=9)
    batched = model.infer_latent(x)
    batched_lp = model.log_prob(x)
    for i in range(5):
        alone = model.infer_latent(x[i: i + 1])
        for zb, za in zip(batched.levels, alone.levels):
            assert torch.equal(zb[i: i + 1], za)
        # float32 convolutions may differ in the last bit with the batch shape
        assert model.log_prob(x[i: i + 1]).item() == pytest.approx(batched_lp[i].item(), rel=1e-6)


def naive_log2_pmf(z, mean, scale):
    """log2 of the bin's mass as a plain difference of CDFs, taken on the side of the mean
    where it does not cancel to zero."""
    z, mean, scale = z.double(), mean.double(), scale.double()
    lower = torch.sigmoid((z + 0.5 - mean) / scale) - torch.sigmoid((z - 0.5 - mean) / scale)
    upper = torch.sigmoid((mean - z + 0.5) / scale) - torch.sigmoid((mean - z - 0.5) / scale)
    return torch.log2(torch.where(z < mean, lower, upper))


def test_log_prob_equals_brute_force_sum_over_the_pmf():
    model = tiny_model(5, std=0.1)  # mild weights keep every term of the naive sum finite
    x = images(1, 3, 8, 8, seed=5)
    lat = model.infer_latent(x)
    expected = 0.0
    # factored-out levels: recompute the kept part y of each level from the deeper latents
    ys = [lat.levels[-1]]
    for index in reversed(range(len(model.levels) - 1)):
        y = model.invert_level(index + 1, torch.cat([ys[0], lat.levels[index + 1]], 1).float())
        ys.insert(0, y)
    with torch.no_grad():
        for prior, y, z in zip(model.priors, ys, lat.levels[:-1]):
            mean, log_scale = prior.params(y.float())
            expected += naive_log2_pmf(z, mean, log_scale.exp()).sum().item()
        logits, means, log_scales = model.top_prior.params()
        top = lat.levels[-1].double().unsqueeze(-1)
        c = top.shape[1]
        weights = torch.softmax(logits.double(), -1).view(1, c, 1, 1, -1)
        mix = (weights * torch.exp2(naive_log2_pmf(top, means.view(1, c, 1, 1, -1),
                                                   log_scales.exp().view(1, c, 1, 1, -1))))
        expected += torch.log2(mix.sum(-1)).sum().item()
    assert model.log_prob(x).item() == pytest.approx(expected, rel=1e-5)
    assert model.bpd(x).item() == pytest.approx(-expected / x.numel(), rel=1e-5)


def test_first_level_input_is_centred_pixels():
    model = IntegerDiscreteFlow(FlowConfig(levels=1, steps_per_level=1))
    x = torch.full((1, 3, 2, 2), 200, dtype=torch.uint8)
    lat = model.infer_latent(x)  # zero-initialised coupling: latents are the centred pixels
    assert torch.equal(torch.cat(lat.levels, 1), torch.full((1, 12, 1, 1), 200 - PIXEL_OFFSET))


def test_sample_is_reproducible_and_in_range():
    model = tiny_model(6)
    a = model.sample(3, 17, 9, temperature=0.8, seed=1)
    b = model.sample(3, 17, 9, temperature=0.8, seed=1)
    c = model.sample(3, 17, 9, temperature=0.8, seed=2)
    assert a.shape == (3, 3, 17, 9) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sampling_at_huge_temperature_clips_instead_of_crashing():
    x = tiny_model(7).sample(2, 8, 8, temperature=1000.0, seed=0)
    assert x.dtype == torch.uint8 and x.min() == 0 and x.max() == 255


def test_bad_inputs_are_rejected():
    model = tiny_model()
    with pytest.raises(ValueError):
        model.infer_latent(images(1, 1, 8, 8))
    with pytest.raises(ValueError):
        model.sample(1, 8, 8, temperature=0.0)
    with pytest.raises(ValueError):
        FlowConfig(channels=2)


def test_untrained_model_bpd_is_sane():
    bpd = IntegerDiscreteFlow(FlowConfig(levels=2, steps_per_level=1)).bpd(images(2, 3, 16, 16))
    assert torch.all((bpd > 6) & (bpd < 20)) and math.isfinite(bpd.sum().item())
