"""scripts/forecast.py: reading the width studies' tables and carrying held-out changes over."""

from __future__ import annotations

import pytest

from .conftest import load_script


def _script():
    return load_script("forecast")


STUDY = """# a study
Held-out: 11 images; the start scores 4.0000 there.

| step | a | b |
|---|---|---|
| 500 | 3.9900 | 3.9800 |
| 1000 | 3.9800 | |
| last | 3.9700 (1500) | 3.9600 (1000) |

| step | restart |
|---|---|
| 500 | 1.0 |
| last | 0.5 (600) |

| | start | a | b |
|---|---|---|---|
| Kodak (24) | 3.0000 | 2.9850 | 2.9800 |
| 18 unseen photos | 2.5000 | 2.4700 | 2.4600 |
"""


def test_curves_take_each_run_of_the_first_table_in_minutes():
    runs = _script().curves(STUDY, ["a", "b"], 6.0)
    assert runs["a"] == ([2.0, 4.0, 6.0], [3.99, 3.98, 3.97])
    assert runs["b"] == ([3.0, 6.0], [3.98, 3.96])  # its blank cell skipped, its own last step


def test_photo_transfer_is_the_benchmark_change_per_held_out_change():
    out = _script().photo_transfer(STUDY)
    # held-out changes -0.03, -0.04; Kodak -0.015, -0.02 (half); unseen -0.03, -0.04 (the same)
    assert out["Kodak (24)"] == pytest.approx((3.0, 2.98, 0.5))
    assert out["18 unseen photos"] == pytest.approx((2.5, 2.46, 1.0))


def test_the_shipped_studies_parse_and_fall():
    forecast = _script()
    text = (forecast.BENCH / "width_study_gpu.md").read_text()
    runs = forecast.curves(text, ["w64", "w128", "w192", "w256"], 8.8)
    for minutes, bpd in runs.values():
        assert minutes[-1] == pytest.approx(8.8) and bpd[-1] < bpd[0]
