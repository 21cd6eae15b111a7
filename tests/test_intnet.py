"""Integer export: exact, independent of batching and threads, and faithful to the float model."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from idfzip.entropy import quantize_logistic
from idfzip.intnet import IntegerConvNet, exact_arithmetic, to_float, to_integer
from idfzip.nets import ConvNet
from idfzip.quantization import (
    ACCUMULATOR_LIMIT,
    ACTIVATION_BITS,
    ACTIVATION_TOP,
    INPUT_LIMIT,
    LIMB_BITS,
    MAX_SHIFT,
)
from idfzip.weights import weights_sha256

from .conftest import randomize, tiny_model


def latents(shape, seed=0, bound=400):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(-bound, bound, shape, generator=gen).double()


def int64_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pad: int):
    """Reference convolution in int64 arithmetic: unfold + integer matmul."""
    n, _, h, w = x.shape
    cols = F.unfold(x.double(), weight.shape[-1], padding=pad).round().long()
    out = weight.round().long().reshape(weight.shape[0], -1) @ cols
    return (out + bias.round().long()[:, None]).reshape(n, -1, h, w)


def int64_network(net: IntegerConvNet, x: torch.Tensor) -> torch.Tensor:
    """What the export must compute, in int64: conv + bias, then round half up to the
    activation grid and clamp, layer by layer; the last layer's integer times 2^-exponent."""
    h = x.clamp(-INPUT_LIMIT, INPUT_LIMIT).round().long()
    for conv in net.convs:
        y = int64_conv(h, conv.weight, conv.bias, conv.padding[0])
        shift = int(conv.exponent) - ACTIVATION_BITS
        if shift >= 1:
            h = torch.div(y + 2 ** (shift - 1), 2**shift, rounding_mode="floor")
        else:
            h = y * 2**-shift
        h = h.clamp(0, ACTIVATION_TOP)
    return y.double() * 2.0 ** -int(net.convs[-1].exponent)


@pytest.mark.parametrize("scale", [1e-7, 1e-3, 0.3, 30.0, 3e4])
def test_integer_network_equals_int64_arithmetic(scale):
    """Weight scales from tiny to huge drive the requantisation shift through all its cases
    (capped at MAX_SHIFT, between 1 and 7, at most 0); inputs include clipped latents."""
    net = randomize(ConvNet(6, 4, hidden=16, depth=3), seed=1)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    exported = IntegerConvNet(net)
    x = latents((2, 6, 9, 7), bound=3 * INPUT_LIMIT)
    with exact_arithmetic("cpu"):
        assert torch.equal(exported(x), int64_network(exported, x))


def test_every_partial_sum_is_bounded_so_float32_is_exact():
    net = IntegerConvNet(randomize(ConvNet(6, 4, hidden=16, depth=3), seed=4))
    for conv in net.convs:
        w = conv.weight.reshape(conv.weight.shape[0], -1)
        assert torch.equal(w, w.round()) and torch.equal(conv.bias, conv.bias.round())
        assert (2**LIMB_BITS * w.abs().sum(1) + conv.bias.abs()).max() <= ACCUMULATOR_LIMIT
        assert int(conv.exponent) - ACTIVATION_BITS <= MAX_SHIFT


def test_worst_case_inputs_stay_exact():
    """All weights of one sign and every input at its bound: the float32 sums reach the limit
    the layer exponents are chosen for, and must still equal int64 arithmetic."""
    net = randomize(ConvNet(6, 4, hidden=16, depth=3), seed=5)
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    exported = IntegerConvNet(net)
    for value in (INPUT_LIMIT, -INPUT_LIMIT, 2**LIMB_BITS - 1, -(2**LIMB_BITS) - 1):
        x = torch.full((1, 6, 8, 8), float(value), dtype=torch.float64)
        with exact_arithmetic("cpu"):
            assert torch.equal(exported(x), int64_network(exported, x))


def test_integer_network_is_independent_of_batch_and_threads():
    net = IntegerConvNet(randomize(ConvNet(5, 3, hidden=32, depth=3), seed=2))
    x = latents((6, 5, 24, 20), seed=3)
    torch.set_num_threads(2)
    together = net(x)
    torch.set_num_threads(1)
    alone = torch.cat([net(x[i: i + 1]) for i in range(6)])
    torch.set_num_threads(2)
    assert torch.equal(together, alone)


@pytest.mark.parametrize("budget", [1, 2000, 5000])
def test_a_network_run_in_strips_of_rows_gives_the_same_values(budget, monkeypatch):
    """Large inputs run in strips (bounded memory); each strip carries the rows its outputs
    depend on, so the result is identical to one pass, down to strips of one row."""
    import idfzip.intnet
    net = IntegerConvNet(randomize(ConvNet(5, 3, hidden=16, depth=4), seed=8))
    assert net.reach == 1 + 0 + 1 + 0 + 1  # 3x3, 1x1, 3x3, 1x1, 3x3
    x = latents((2, 5, 23, 17), seed=9)
    whole = net(x)
    monkeypatch.setattr(idfzip.intnet, "NET_CHUNK_ELEMENTS", budget)
    assert torch.equal(net(x), whole)
    assert torch.equal(net(x[:1]), whole[:1])


def test_one_ulp_in_a_float_prior_parameter_breaks_decoding():
    """Why the export matters: a float network's last bit changes with batch shape, threads or
    CPU, and one ulp at a quantisation boundary gives the decoder other tables."""
    import constriction

    from idfzip.entropy import decode_logistic, encode_logistic
    z = np.arange(-20, 21, dtype=np.int64)
    below = np.full(z.shape, np.nextafter(2.5, -np.inf))
    above = np.full(z.shape, np.nextafter(2.5, np.inf))
    log_scale = np.full(z.shape, 1.0)
    assert not np.array_equal(np.stack(quantize_logistic(below, log_scale)),
                              np.stack(quantize_logistic(above, log_scale)))
    coder = constriction.stream.stack.AnsCoder()
    encode_logistic(coder, z, below, log_scale)
    words = coder.get_compressed()
    same = decode_logistic(constriction.stream.stack.AnsCoder(words), below, log_scale)
    other = decode_logistic(constriction.stream.stack.AnsCoder(words), above, log_scale)
    assert np.array_equal(same, z) and not np.array_equal(other, z)


def test_integer_model_is_faithful_and_its_export_deterministic():
    model = tiny_model(3, std=0.05)
    exported = to_integer(copy.deepcopy(model))
    again = to_integer(copy.deepcopy(model))
    assert weights_sha256(exported.state_dict()) == weights_sha256(again.state_dict())
    assert exported.is_integer and not model.is_integer
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert torch.allclose(exported.bpd(x), model.bpd(x).double(), rtol=1e-3)
    lat = exported.infer_latent(x)
    assert torch.equal(exported.generate(lat), x.long())


@pytest.mark.parametrize("std", [0.01, 0.05, 0.5])
def test_an_export_turned_back_to_float_exports_to_the_same_integers(std):
    exported = to_integer(tiny_model(4, std=std))
    back = to_float(copy.deepcopy(exported))
    assert not back.is_integer and all(p.dtype == torch.float32 for p in back.parameters())
    assert weights_sha256(to_integer(copy.deepcopy(back)).state_dict()) == \
        weights_sha256(exported.state_dict())
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert torch.allclose(back.bpd(x).double(), exported.bpd(x), rtol=1e-3)


def test_fake_quantised_float_network_computes_what_its_export_computes():
    net = randomize(ConvNet(5, 3, hidden=16, depth=3), seed=6, std=0.3)
    x = latents((2, 5, 12, 10), seed=7)
    with exact_arithmetic("cpu"):
        exact = IntegerConvNet(net)(x)
    net.double()  # in float64 the fake-quantised arithmetic is exact as well
    plain = net(x)
    net.fake_quant = "limb"
    fake = net(x)
    assert torch.equal(fake, exact) and not torch.equal(plain, exact)
    fake.sum().backward()  # straight-through: gradients reach every weight
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
