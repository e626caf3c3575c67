"""training.gain_by_degradation: switching a degradation step off really removes it and is undone
afterwards, and the gain is measured on what the model returns (a real ONNX model built here)."""

from __future__ import annotations

import copy

import numpy as np

from tests.model_factory import make_cfrnet_like
from training import degrade
from training.gain_by_degradation import WITHOUT, gain_row, switched_off
from app.core.restorer import Restorer


def _faces(n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:256, :256] / 255.0
    return [np.clip(np.stack([yy, xx, 0.5 * (xx + yy)], -1) * 200 + rng.integers(0, 40, 3), 0, 255).astype(np.uint8)
            for _ in range(n)]


def test_switched_off_removes_the_step_and_restores_the_ranges():
    before = copy.deepcopy(degrade.RANGES)
    everything = {step: tuple(k for k in spec if k.startswith("p")) for step, spec in degrade.RANGES.items()}
    faces = _faces(2)
    with switched_off(everything):
        assert all(np.array_equal(x, f) for x, f in zip(degrade.degrade_eval_set(faces, 0), faces))
    assert degrade.RANGES == before
    with switched_off(WITHOUT["without grey / sepia"]):
        assert degrade.RANGES["tone"]["p_grey"] == 0 and degrade.RANGES["fade"]["p"] == before["fade"]["p"]
    assert degrade.RANGES == before


def test_gain_row_measures_the_model(tmp_path):
    faces = _faces()
    identity = Restorer(make_cfrnet_like(tmp_path / "identity.onnx", strength=0.0))
    p_in, p_out, n = gain_row(identity, faces, 2, seed=0)
    assert n == len(faces) and abs(p_out - p_in) < 0.05  # a model that changes nothing gains nothing
    darker = Restorer(make_cfrnet_like(tmp_path / "darker.onnx", strength=0.0, tone=-0.1))
    q_in, q_out, _ = gain_row(darker, faces, 2, seed=0)
    assert q_in == p_in and q_out < p_out - 1.0  # two cycles of −0.1 cost well over 1 dB
