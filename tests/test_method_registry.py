"""Adding a method is one module (here: a class in this file) plus one registration line
(issue 21): ``auto`` weighs it with its own cost model, ``explain()`` describes it in its
own words, and the planner applies its declared NaN/Inf policy. No code outside the
method compares its name.
"""

from __future__ import annotations

from math import prod

import numpy as np
import pytest
from naive import naive_correlate

import batchconv as bc
from batchconv.geometry import pad_sliding
from batchconv.methods import METHODS, Method, register_method, unregister_method


class ToyFFT:
    """Plain ``numpy.fft`` correlation of whole items: 1-D, stride and dilation 1, real
    data, plain correlations (the metrics wrap it: ssd, ncc, cosine). Its cost model
    says it is nearly free, so ``auto`` picks it wherever it applies."""

    NAME = "toy_fft"
    ON_TENSORS = False
    STANDS_FOR = None
    COMPUTES_SAD = False
    EXACT_FOR_INTEGERS = False
    SPREADS_NONFINITE = True  # a NaN spreads over the item's transform, as any FFT's
    COEFFICIENTS = {"toy": {"calls": 1e-9}}

    @staticmethod
    def applies(p, device=None):
        if p.ndim != 1 or p.dtype.kind != "f":
            return "toy_fft: real 1-D problems only"
        if p.geoms[0].stride != 1 or p.geoms[0].dilation != 1:
            return "toy_fft: stride and dilation 1 only"
        return None

    @staticmethod
    def prepare(p, wc, budget=None):
        return np.ascontiguousarray(wc[..., ::-1])  # (K, C, P, m): convolution taps

    @staticmethod
    def compute(p, st, xc, k0, k1, out=None, nonfinite=None):
        xp = pad_sliding(xc, p.geoms, p.padding, p.cval, first_axis=3)  # (b, C, P, L)
        m, n_out = p.T[0], p.O[0]
        size = xp.shape[-1] + m - 1
        spectra = np.einsum("bcpf,kcpf->bkpf", np.fft.rfft(xp, size), np.fft.rfft(st[k0:k1], size))
        y = np.fft.irfft(spectra, size)[..., m - 1 : m - 1 + n_out].astype(p.dtype)
        if nonfinite is not None:  # items whose results are not all finite: redone
            bad = ~np.isfinite(y).reshape(y.shape[0], -1).all(axis=1)
            nonfinite.update(np.flatnonzero(bad).tolist())
        if out is None:
            return y
        out[...] = y
        return out

    @staticmethod
    def workspace_bytes(p, b, k, budget=None):
        size = p.geoms[0].padded + p.T[0] - 1
        r = p.dtype.itemsize
        spectra = (b * p.C + k * p.C + 2 * b * k) * p.P * (size // 2 + 1) * 16
        return b * p.C * p.P * p.geoms[0].padded * r + spectra + b * k * p.P * size * 8

    @staticmethod
    def state_bytes(p):
        return p.K * p.window_size * p.P * p.dtype.itemsize

    @staticmethod
    def fuses_reduce(p):
        return False

    @staticmethod
    def flops(p):
        size = p.geoms[0].padded + p.T[0] - 1
        return 5.0 * size * np.log2(size) * p.B * p.K * p.C * p.P

    @staticmethod
    def cost_features(p, device=None):
        return "toy", {"calls": 1.0}

    @staticmethod
    def describe(p, st, budget, device=None):
        return f"toy_fft: numpy.fft of whole items, {prod(p.O)} outputs each"


@pytest.fixture
def toy():
    method = ToyFFT()
    assert isinstance(method, Method)  # the protocol's attributes, by name
    register_method(method)
    bc.clear_plan_cache()
    try:
        yield method
    finally:
        unregister_method(method.NAME)
        bc.clear_plan_cache()
    assert "toy_fft" not in METHODS


@pytest.mark.parametrize("metric", ["dot", "ssd", "ncc", "cosine"])
def test_auto_weighs_a_registered_method_and_explain_describes_it(toy, metric, rng):
    x = rng.standard_normal((3, 2, 500))
    w = rng.standard_normal((4, 2, 9))
    spec = "ncl,kcl->nkl|l"
    p = bc.plan(x, w, spec, metric=metric, mode="same")
    assert p.method == "toy_fft" and p.reason.startswith("lowest estimated time")
    text = p.explain()
    assert "toy_fft: numpy.fft of whole items, 500 outputs each" in text
    assert "toy_fft " in text.split("candidates:")[1]  # a candidate with its estimate
    want = naive_correlate(x, w, spec, metric=metric, mode="same")
    np.testing.assert_allclose(p(x), want, rtol=1e-9, atol=1e-9)


def test_a_method_that_does_not_apply_is_not_a_candidate(toy, rng):
    x, w = rng.standard_normal((2, 64, 64)), rng.standard_normal((3, 5, 5))
    p = bc.plan(x, w)  # 2-D: toy_fft does not apply
    assert p.method != "toy_fft" and "toy_fft" not in p.explain()
    with pytest.raises(ValueError, match="toy_fft: real 1-D problems only"):
        bc.plan(x, w, method="toy_fft")
    with pytest.raises(ValueError, match="has no 'toy_fft' form"):
        x1, w1 = rng.standard_normal((1, 100)), rng.standard_normal(5)
        bc.plan(x1, w1, metric="sad", method="toy_fft")


def test_its_nonfinite_policy_keeps_nan_local(toy, rng):
    """SPREADS_NONFINITE: the planner redoes the items whose results the method flags,
    and the filters holding a NaN, directly: a NaN stays in the windows that cover it."""
    x = rng.standard_normal((2, 1, 400))
    w = rng.standard_normal((3, 1, 7))
    x[0, 0, 100] = np.nan
    w[2, 0, 3] = np.inf
    p = bc.plan(x, w, "ncl,kcl->nkl|l")
    assert p.method == "toy_fft"
    y = p(x)
    want = naive_correlate(x, w, "ncl,kcl->nkl|l")
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    assert np.isnan(y[0, 0]).sum() == 7  # the 7 windows over x[0, 0, 100], no more
    finite = np.isfinite(want)
    np.testing.assert_allclose(y[finite], want[finite], rtol=1e-9, atol=1e-9)


def test_a_registration_must_be_complete_and_new(toy):
    with pytest.raises(ValueError, match="is taken"):
        register_method(toy)

    class Half:
        NAME = "half"

    with pytest.raises(ValueError, match="a method needs ON_TENSORS"):
        register_method(Half())


def test_unregistering_forgets_cached_choices_but_not_made_plans(rng):
    """correlate's plan cache and the planner's candidates name methods: both forget
    them when the registry changes; a plan made with a method keeps running it."""
    x, w = rng.standard_normal((3, 2, 500)), rng.standard_normal((4, 2, 9))
    spec = "ncl,kcl->nkl|l"
    register_method(ToyFFT())
    try:
        made = bc.plan(x, w, spec, mode="same")
        first = bc.correlate(x, w, spec, mode="same")  # (cached: a toy_fft plan)
        assert made.method == "toy_fft"
    finally:
        unregister_method("toy_fft")
    again = bc.correlate(x, w, spec, mode="same")  # planned anew, without toy_fft
    assert bc.plan(x, w, spec, mode="same").method != "toy_fft"
    np.testing.assert_allclose(again, first, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(made(x), first, rtol=1e-9, atol=1e-9)  # still runs
    assert "toy_fft: numpy.fft" in made.explain()
    with pytest.raises(ValueError, match="got 'toy_fft'"):
        bc.plan(x, w, spec, method="toy_fft")


def test_a_metric_over_it_in_several_blocks(toy, rng):
    """Without held_bytes (optional), a metric's estimate counts all of the method's
    temporaries as held between blocks; the blocks still agree with the loop."""
    x, w = rng.standard_normal((16, 2, 800)), rng.standard_normal((6, 2, 9))
    spec = "ncl,kcl->nkl|l"
    p = bc.plan(x, w, spec, metric="ncc", method="toy_fft", mode="same", memory="2MB")
    assert p.chunk != (16, 6)  # several blocks
    want = naive_correlate(x, w, spec, metric="ncc", mode="same")
    np.testing.assert_allclose(p(x), want, rtol=1e-9, atol=1e-9)
