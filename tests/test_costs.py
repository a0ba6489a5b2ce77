"""The cost model: finite positive estimates for every kind of problem, and the obvious
choices (tiny kernel -> direct, huge kernel -> fft; integers -> direct)."""

import numpy as np
import pytest

import batchconv as bc
from batchconv import compiled
from batchconv.costs import COEFFICIENTS, estimate, features, flops
from batchconv.problem import make_problem

PROBLEMS = [
    ((10, 100), np.float64, (3,), None, {}),
    ((4, 64, 64), np.float32, (8, 5, 5), None, {"mode": "same"}),
    ((2, 3, 32, 32), np.float32, (4, 3, 7, 7), "nchw,kchw->nkhw|hw", {"stride": 2}),
    ((1, 20, 20, 20), np.complex128, (2, 3, 3, 3), None, {"mode": "full"}),
    ((1, 1_000_000), np.float64, (9,), None, {}),  # overlap-save tiles
]


@pytest.mark.parametrize("xs, dt, ws, spec, opts", PROBLEMS)
@pytest.mark.parametrize("method", ["direct", "fft", "torch_fft"])
@pytest.mark.parametrize("numba", [True, False], ids=["compiled", "numpy"])
def test_estimates_are_finite_and_use_known_features(
    xs, dt, ws, spec, opts, method, numba, monkeypatch
):
    """(The one-filter problems use the "window_rows" model with the compiled kernels,
    "shift_add" without.)"""
    monkeypatch.setattr(compiled, "USE_NUMBA", numba)
    p = make_problem(xs, dt, ws, dt, spec, **opts)
    t = estimate(p, method)
    assert np.isfinite(t) and t > 0
    assert flops(p, method) > 0
    model, feats = features(p, method)
    assert set(feats) <= set(COEFFICIENTS[model]), set(feats) - set(COEFFICIENTS[model])


def test_obvious_choices():
    small = bc.plan(((100, 256, 256), np.float32), np.ones((3, 3), np.float32))
    large = bc.plan(((4, 256, 256), np.float32), np.ones((4, 63, 63), np.float32))
    ints = bc.plan(((4, 256, 256), np.int32), np.ones((4, 63, 63), np.int32))
    assert (small.method, large.method, ints.method) == ("direct", "fft", "direct")
    assert "integer inputs" in ints.explain()


def test_explain_lists_every_candidate_and_the_winner():
    p = bc.plan(((8, 128, 128), np.float64), np.ones((4, 15, 15)), mode="same")
    text = p.explain()
    for m in ("direct", "fft"):
        assert m in text
    assert f"* {p.method}" in text and "chosen:" in text
