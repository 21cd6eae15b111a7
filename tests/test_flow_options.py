"""The flow options of issue #13: reverse permutations, ReZero coupling gains and the YCoCg-R
colour transform, alone and together; each exact, exportable, codable and saved with its config."""

import copy
import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from idfzip import FlowConfig, IntegerDiscreteFlow, compress, decompress
from idfzip.api import CodingModel, describe
from idfzip.codec import FlowCodec, decode_image, encode_image
from idfzip.colour import ycocg_r, ycocg_r_inverse
from idfzip.growth import deepen
from idfzip.intnet import IntegerConvNet, exact_arithmetic, to_float, to_integer
from idfzip.model import PIXEL_OFFSET
from idfzip.nets import ConvNet
from idfzip.quantization import INPUT_LIMIT
from idfzip.weights import load_model_file, save_model, weights_sha256

from .conftest import TINY, mid_grey, randomize, sharp_model, tiny_model

OPTIONS = {
    "reverse": {"permutation": "reverse"},
    "rezero": {"coupling_gain": True},
    "ycocg": {"colour_transform": "ycocg-r"},
    "all": {"permutation": "reverse", "coupling_gain": True, "colour_transform": "ycocg-r"},
}
NEW_KEYS = ("permutation", "coupling_gain", "colour_transform")


def images(n, h, w, seed=0):
    """Random uint8 RGB images whose first one holds the extremes 0 and 255 in every
    channel combination (the corners of the RGB cube)."""
    x = torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(seed))
    for i, corner in enumerate(itertools.product((0, 255), repeat=3)):
        x[0, :, 0, i] = torch.tensor(corner)
    return x


def with_random_gains(model, seed=0):
    """ReZero gains away from zero (N(0, 1)), so that folding them into the export matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for net in model.modules():
            if isinstance(net, ConvNet) and net.gain is not None:
                net.gain.copy_(torch.randn(net.gain.shape, generator=gen))
    return model


# -- every option, alone and together --------------------------------------------------------
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_exact_inverse_and_finite_likelihood(option):
    model = tiny_model(1, **OPTIONS[option])
    x = images(2, 13, 18)
    assert torch.equal(model.generate(model.infer_latent(x)), x.long())
    assert torch.isfinite(model.log_prob(x)).all()


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_integer_export_codes_exactly(option):
    model = to_integer(with_random_gains(sharp_model(2, **OPTIONS[option])))
    x = images(1, 21, 30, seed=3)
    assert torch.equal(model.generate(model.infer_latent(x)), x.long())
    codec = FlowCodec(model)
    image = x[0].numpy()
    streams = encode_image(codec, image, tile=16, batch_size=2)
    np.testing.assert_array_equal(decode_image(codec, streams, 3, 21, 30, tile=16), image)


def test_compress_and_decompress_with_every_option():
    coding = CodingModel(sharp_model(3, **OPTIONS["all"]), "all-options")
    image = Image.fromarray(mid_grey(np.random.default_rng(0), 64, 48))
    data = compress(image, coding, tile=32)
    assert describe(data)["method"] == "flow"
    assert decompress(data, coding).tobytes() == image.tobytes()


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_save_and_load_keep_config_and_outputs(option, tmp_path):
    for model in (tiny_model(4, **OPTIONS[option]), to_integer(tiny_model(4, **OPTIONS[option]))):
        digest = save_model(model, tmp_path / "m.pt")
        loaded = load_model_file(tmp_path / "m.pt")
        assert loaded.config == model.config and loaded.sha256 == digest
        x = images(1, 9, 11)
        assert torch.equal(loaded.log_prob(x), model.log_prob(x))


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_sampling_runs_through_the_inverse(option):
    model = tiny_model(5, std=0.05, **OPTIONS[option])
    x = model.sample(2, 10, 12, seed=0)
    assert x.shape == (2, 3, 10, 12) and x.dtype == torch.uint8


def test_model_files_without_the_new_keys_load_the_old_architecture(tmp_path):
    """Files saved before these options have configs without their keys."""
    model = tiny_model(6)
    save_model(model, tmp_path / "m.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    blob["config"] = {k: v for k, v in blob["config"].items() if k not in NEW_KEYS}
    torch.save(blob, tmp_path / "old.pt")
    loaded = load_model_file(tmp_path / "old.pt")
    assert (loaded.config.permutation, loaded.config.coupling_gain,
            loaded.config.colour_transform) == ("random", False, "none")
    assert loaded.config == TINY and not any("gain" in name for name in loaded.state_dict())
    x = images(1, 9, 11)
    assert torch.equal(loaded.log_prob(x), model.log_prob(x))


def test_a_model_with_every_option_grows_deeper_computing_the_same():
    """Fresh steps start as the identity through their zero gains; their reversals are undone
    in the following original step's permutation."""
    small = tiny_model(7, std=0.3, **OPTIONS["all"])
    big = deepen(small, FlowConfig(**{**small.config.to_dict(), "steps_per_level": 4}))
    x = images(2, 12, 20)
    assert torch.equal(big.log_prob(x), small.log_prob(x))
    for a, b in zip(big.infer_latent(x).levels, small.infer_latent(x).levels):
        assert torch.equal(a, b)


@pytest.mark.parametrize("bad", [{"permutation": "shuffle"}, {"colour_transform": "yuv"},
                                 {"colour_transform": "ycocg-r", "channels": 1}])
def test_invalid_options_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        FlowConfig(**{**TINY.to_dict(), **bad})


# -- permutation ------------------------------------------------------------------------------
def test_reverse_permutations_reverse_the_channels():
    model = IntegerDiscreteFlow(FlowConfig(**{**TINY.to_dict(), "permutation": "reverse"}))
    for steps in model.levels:
        for step in steps:
            c = step.permutation.perm.numel()
            assert torch.equal(step.permutation.perm, torch.arange(c).flip(0))
            assert torch.equal(step.permutation.inv_perm, torch.arange(c).flip(0))


# -- ReZero -------------------------------------------------------------------------------------
def test_a_fresh_rezero_model_starts_as_the_identity_and_its_gains_learn():
    torch.manual_seed(0)
    model = IntegerDiscreteFlow(FlowConfig(**{**TINY.to_dict(), "coupling_gain": True}))
    couplings = [step.coupling for steps in model.levels for step in steps]
    assert all(c.net.layers[-1].weight.abs().sum() > 0 for c in couplings)  # not zero-initialised
    x = images(2, 16, 16)
    plain = IntegerDiscreteFlow(TINY)  # zero last layers: the identity couplings of the default
    for a, b in zip(model.infer_latent(x).levels, plain.infer_latent(x).levels):
        assert torch.equal(a, b)
    model.train()
    model(x).mean().backward()
    assert all(c.net.gain.grad is not None and c.net.gain.grad.abs().sum() > 0
               for c in couplings)


def test_the_export_folds_the_gain_into_the_last_convolution_exactly():
    net = randomize(ConvNet(5, 3, hidden=16, depth=2, gain=True), seed=6, std=0.3)
    x = torch.randint(-300, 300, (2, 5, 12, 10), generator=torch.Generator().manual_seed(7))
    exported = IntegerConvNet(net)
    assert not any("gain" in name for name in exported.state_dict())
    with exact_arithmetic("cpu"):
        exact = exported(x.double())
    net.double()  # in float64 the fake-quantised float network computes the export exactly
    net.fake_quant = "limb"
    assert torch.equal(net(x.double()), exact)


def test_a_rezero_export_agrees_with_its_float_model():
    model = with_random_gains(tiny_model(3, std=0.05, coupling_gain=True))
    exported = to_integer(copy.deepcopy(model))
    x = images(2, 16, 16, seed=1)
    assert torch.allclose(exported.bpd(x), model.bpd(x).double(), rtol=1e-3)
    floats, ints = model.infer_latent(x).levels, exported.infer_latent(x).levels
    agree = sum(int((a == b).sum()) for a, b in zip(floats, ints)) / x.numel()
    assert agree > 0.99


def test_a_rezero_export_turned_back_to_float_has_unit_gains_and_the_same_export():
    exported = to_integer(with_random_gains(tiny_model(4, std=0.05, coupling_gain=True)))
    back = to_float(copy.deepcopy(exported))
    gains = [m.gain for m in back.modules() if isinstance(m, ConvNet) and m.gain is not None]
    assert len(gains) == 4 and all(torch.equal(g, torch.ones_like(g)) for g in gains)
    assert set(back.state_dict()) == set(tiny_model(coupling_gain=True).state_dict())
    assert weights_sha256(to_integer(copy.deepcopy(back)).state_dict()) == \
        weights_sha256(exported.state_dict())


# -- YCoCg-R ------------------------------------------------------------------------------------
def test_ycocg_r_is_exact_on_8_bit_pixels_and_stays_in_range():
    """Every pair of channels over a grid through 0..255 (the third at each grid value), the
    cube's corners and random pixels: exact inverse, Y in 0..255, Co and Cg in -255..255."""
    grid = torch.tensor(sorted({*range(0, 256, 5), 1, 127, 128, 254, 255}))
    a, b, c = torch.meshgrid(grid, grid, grid, indexing="ij")
    cube = torch.stack([a.flatten(), b.flatten(), c.flatten()])
    corners = torch.tensor(list(itertools.product((0, 255), repeat=3))).T
    noise = torch.randint(0, 256, (3, 100_000), generator=torch.Generator().manual_seed(0))
    rgb = torch.cat([cube, corners, noise], dim=1).view(1, 3, -1, 1).float()
    ycocg = ycocg_r(rgb)
    assert torch.equal(ycocg_r_inverse(ycocg), rgb)
    assert 0 <= ycocg[:, 0].min() and ycocg[:, 0].max() <= 255
    assert ycocg[:, 1:].abs().max() == 255  # reached, at (255, 0, 0) and its kin


def test_ycocg_r_decorrelates_grey_into_luma():
    grey = torch.arange(256.0).view(1, 1, -1, 1).expand(1, 3, 256, 1)
    ycocg = ycocg_r(grey)
    assert torch.equal(ycocg[:, 0], grey[:, 0]) and not ycocg[:, 1:].any()


def test_the_flow_sees_centred_ycocg_well_inside_the_network_clip():
    model = tiny_model(colour_transform="ycocg-r")
    x = images(1, 8, 8).float()
    h = model.from_pixels(x)
    assert torch.equal(h, ycocg_r(x) - torch.tensor([PIXEL_OFFSET, 0, 0]).view(1, 3, 1, 1))
    assert h.abs().max() <= 255 < INPUT_LIMIT
    assert torch.equal(model.to_pixels(h), x)
