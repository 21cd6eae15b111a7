"""Shared fixtures: tiny models with random (non-identity) weights, and the shared data path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from idfzip import FlowConfig, IntegerDiscreteFlow

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    """scripts/NAME.py as a module, with scripts/ on the path while it loads (scripts import
    their neighbours, e.g. reference_codecs, scaling_study)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPTS))

TINY = FlowConfig(channels=3, levels=2, steps_per_level=2, hidden=8, depth=2, prior_hidden=8,
                  prior_depth=1, mixture_components=3)


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.5) -> torch.nn.Module:
    """Give every parameter random values so couplings translate and priors vary."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model.eval()


def tiny_model(seed: int = 0, std: float = 0.5, **overrides) -> IntegerDiscreteFlow:
    cfg = FlowConfig(**{**TINY.to_dict(), **overrides})
    return randomize(IntegerDiscreteFlow(cfg), seed, std)


def mid_grey(rng: np.random.Generator, height: int, width: int, channels: int = 3) -> np.ndarray:
    """Mid-grey with small i.i.d. noise: PNG cannot exploit it, a :func:`sharp_model` can, so
    the flow wins over the fallbacks on these images."""
    return (128 + rng.integers(-5, 6, (height, width, channels))).astype(np.uint8)


def sharp_model(seed: int = 0, log_scale: float = 0.5, **overrides) -> IntegerDiscreteFlow:
    """A tiny random model whose priors are narrow and centred (scale ~ e^log_scale): on images
    near mid-grey it codes far below PNG, so tests can rely on the flow being chosen."""
    model = tiny_model(seed, std=0.05, **overrides)
    with torch.no_grad():
        for prior in model.priors:
            last = prior.net.layers[-1]
            last.weight.zero_()
            last.bias[: prior.channels] = 0.0
            last.bias[prior.channels:] = log_scale
        model.top_prior.means.zero_()
        model.top_prior.log_scales.fill_(log_scale)
    return model


@pytest.fixture(autouse=True)
def one_thread():
    """Every test starts with one torch thread (tests that vary it restore it): the suite
    shares two cores, and results must not depend on the count anyway."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def model() -> IntegerDiscreteFlow:
    return tiny_model()


def shared_data(*parts: str) -> Path:
    """Path inside ../shared/data, or skip the test when that data is not present."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared/data/{'/'.join(parts)} (not present on this machine)")
    return path
