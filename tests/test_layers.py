import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from idfzip.layers import AdditiveCoupling, FlowStep, Permutation, squeeze2x2, unsqueeze2x2

from .conftest import randomize


def integers(shape, seed=0, low=-300, high=300):
    return torch.randint(low, high, shape, generator=torch.Generator().manual_seed(seed)).float()


@settings(max_examples=25, deadline=None)
@given(c=st.integers(1, 6), h=st.integers(1, 6), w=st.integers(1, 6), seed=st.integers(0, 99))
def test_squeeze_is_a_bijection(c, h, w, seed):
    x = integers((2, c, 2 * h, 2 * w), seed)
    y = squeeze2x2(x)
    assert y.shape == (2, 4 * c, h, w)
    assert torch.equal(unsqueeze2x2(y), x)
    # each 2x2 block lands in one position's channels
    assert torch.equal(y[0, :4, 0, 0], x[0, 0, :2, :2].flatten())


def test_permutation_inverse():
    p = Permutation(12, torch.Generator().manual_seed(3))
    x = integers((2, 12, 3, 3))
    assert not torch.equal(p(x), x)
    assert torch.equal(p.inverse(p(x)), x)


@settings(max_examples=20, deadline=None)
@given(channels=st.integers(2, 16), h=st.integers(1, 9), w=st.integers(1, 9),
       seed=st.integers(0, 999))
def test_coupling_exact_inverse_with_random_weights(channels, h, w, seed):
    layer = randomize(AdditiveCoupling(channels, max(1, channels // 4), hidden=8, depth=2), seed)
    x = integers((3, channels, h, w), seed)
    with torch.no_grad():
        z = layer(x)
        assert not torch.equal(z, x)  # random weights translate
        assert torch.equal(z, z.round())
        assert torch.equal(z[:, : layer.split], x[:, : layer.split])
        assert torch.equal(layer.inverse(z), x)


def test_flow_step_inverse():
    step = randomize(FlowStep(12, 3, 8, 2, torch.Generator().manual_seed(0)), 1)
    x = integers((2, 12, 5, 7))
    with torch.no_grad():
        assert torch.equal(step.inverse(step(x)), x)


def test_rounding_passes_gradients_straight_through():
    layer = randomize(AdditiveCoupling(4, 1, hidden=8, depth=2))
    layer.train()
    x = integers((1, 4, 4, 4))
    layer(x).sum().backward()
    grads = [p.grad for p in layer.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
