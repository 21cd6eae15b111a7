"""Shared fixtures: tiny models with random (non-identity) weights, and the shared data path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from idfzip import FlowConfig, IntegerDiscreteFlow

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

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


@pytest.fixture
def model() -> IntegerDiscreteFlow:
    return tiny_model()


def shared_data(*parts: str) -> Path:
    """Path inside ../shared/data, or skip the test when that data is not present."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared/data/{'/'.join(parts)} (not present on this machine)")
    return path
