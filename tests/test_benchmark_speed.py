"""scripts/benchmark_speed.py --sweep: the models it times are grown from a trained 64-wide
release, whatever width the default model has."""

from __future__ import annotations

import numpy as np
import torch

from idfzip.intnet import arithmetic_of
from idfzip.zoo import load_model

from .conftest import load_script


def _script():
    return load_script("benchmark_speed")


def test_sweep_grows_every_width_from_the_64_wide_base(tmp_path):
    bench = _script()
    models = bench.sweep_models(tmp_path, widths=(64, 128))
    assert [label.split(" (")[0] for label, _ in models] == [
        "64 wide, limb", "64 wide, w8a8", "128 wide, limb", "128 wide, w8a8"]
    name, release = bench.SWEEP_BASE
    base = load_model(name, model_id=bytes.fromhex(release))
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 3, 32, 32),
                                                           dtype=np.uint8))
    for (label, path), width in zip(models, (64, 64, 128, 128)):
        model = load_model(str(path))
        assert model.config.hidden == model.config.prior_hidden == width
        assert arithmetic_of(model) == label.split(", ")[1].split(" ")[0]
    with torch.no_grad():  # the 64-wide limb export is the base release itself
        assert torch.equal(load_model(str(models[0][1])).log_prob(x), base.log_prob(x))


def test_sweep_exports_the_8_bit_arithmetic_it_is_asked_for(tmp_path):
    models = _script().sweep_models(tmp_path, "int8", widths=(64,))
    assert [arithmetic_of(load_model(str(path))) for _, path in models] == ["limb", "int8"]
