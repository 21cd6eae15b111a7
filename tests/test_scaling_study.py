"""scripts/scaling_study.py: the variants' layouts and the power-law fit of a training curve."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from idfzip.zoo import PRESETS

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "scaling_study.py"
_spec = importlib.util.spec_from_file_location("scaling_study", SCRIPT)
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)


def test_variants_change_only_width_and_depth_of_their_base():
    assert study.variant_config("w64") == PRESETS["photo-r1"]  # earlier studies stay comparable
    wide = study.variant_config("w128s8", "cifar10")
    assert (wide.hidden, wide.prior_hidden, wide.steps_per_level) == (128, 128, 8)
    assert wide.levels == PRESETS["cifar10"].levels == 3


def test_power_law_fit_recovers_a_known_curve_and_predicts_ahead():
    hours = np.linspace(0.05, 2.0, 40)
    bpd = 3.5 + 0.4 * hours ** -0.5 + np.random.default_rng(0).normal(0, 1e-4, hours.size)
    floor, a, b = study.fit_power_law(hours, bpd)
    assert floor == pytest.approx(3.5, abs=0.01) and a == pytest.approx(0.4, abs=0.01)
    assert b == pytest.approx(0.5, abs=0.02)
    assert study.predict((floor, a, b), 200.0) == pytest.approx(3.5 + 0.4 / 200**0.5, abs=0.01)


def test_power_law_fit_refuses_a_curve_that_does_not_fall():
    with pytest.raises(ValueError, match="does not fall"):
        study.fit_power_law([0.1, 0.5, 1.0, 2.0], [4.0, 4.1, 4.2, 4.3])
    with pytest.raises(ValueError, match="at least 3 points"):
        study.fit_power_law([0.1, 2.0], [4.3, 4.0])
