import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from idfzip.distributions import (
    discretized_logistic_log_pmf,
    mixture_log_pmf,
    sample_logistic,
)


def naive_pmf(z, mean, scale):
    z, mean, scale = (torch.as_tensor(v, dtype=torch.float64) for v in (z, mean, scale))
    return torch.sigmoid((z + 0.5 - mean) / scale) - torch.sigmoid((z - 0.5 - mean) / scale)


@settings(max_examples=50, deadline=None)
@given(mean=st.floats(-300, 300), log_scale=st.floats(math.log(0.1), math.log(256)))
def test_pmf_matches_difference_of_sigmoids_and_sums_to_one(mean, log_scale):
    z = torch.arange(-20000, 20001, dtype=torch.float64)
    log_p = discretized_logistic_log_pmf(z, torch.tensor(mean, dtype=torch.float64),
                                         torch.tensor(log_scale, dtype=torch.float64))
    naive = naive_pmf(z, mean, math.exp(log_scale))
    big = naive > 1e-6  # the naive difference loses precision in the tails
    assert torch.allclose(log_p[big].exp(), naive[big], rtol=1e-7, atol=0)
    assert abs(log_p.exp().sum().item() - 1.0) < 1e-9


def test_pmf_is_finite_far_in_the_tails():
    log_p = discretized_logistic_log_pmf(torch.tensor([1e4, -1e4]), torch.tensor(0.0),
                                         torch.tensor(math.log(0.1)))
    assert torch.isfinite(log_p).all() and (log_p < -1e3).all()


def test_mixture_is_weighted_sum_of_components():
    z = torch.arange(-50, 51, dtype=torch.float64)
    logits = torch.tensor([0.3, -1.0], dtype=torch.float64)
    means = torch.tensor([-5.0, 12.0], dtype=torch.float64)
    log_scales = torch.tensor([1.0, 2.0], dtype=torch.float64)
    weights = torch.softmax(logits, 0)
    expected = sum(weights[k] * naive_pmf(z, means[k], log_scales[k].exp()) for k in range(2))
    got = mixture_log_pmf(z, logits, means, log_scales).exp()
    assert torch.allclose(got, expected, rtol=1e-10)


def test_samples_follow_the_pmf():
    gen = torch.Generator().manual_seed(0)
    mean, log_scale = torch.full((200_000,), 2.3), torch.full((200_000,), math.log(1.5))
    z = sample_logistic(mean, log_scale, gen)
    assert torch.equal(z, z.round())
    freq = (z == 2).double().mean().item()
    assert abs(freq - naive_pmf(2, 2.3, 1.5).item()) < 0.005
