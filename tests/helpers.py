"""Check a batchconv result against the naive reference under the brief's accuracy contract."""

from __future__ import annotations

import numpy as np
from naive import _parse, default_spec_string, naive_correlate, tolerance, window_abs_bound

import batchconv as bc


def expected_dtype(x, w) -> np.dtype:
    rt = np.result_type(np.asarray(x).dtype, np.asarray(w).dtype)
    if rt.kind in "iu":
        return np.dtype(np.float64)
    if rt == np.float16:
        return np.dtype(np.float32)
    return rt


def check(x, w, spec=None, *, method, convolve=False, **kw):
    """Run batchconv and assert the accuracy contract against the float64 loop.

    Returns the batchconv result."""
    f = bc.convolve if convolve else bc.correlate
    y = f(x, w, spec, method=method, **kw)
    reduce = kw.get("reduce")
    explicit = spec or default_spec_string(np.ndim(x), np.ndim(w), reduce is not None)
    xs, ws, out, sliding = _parse(explicit)
    geo = {k: v for k, v in kw.items() if k != "reduce"}
    S = window_abs_bound(x, w, explicit, convolve=convolve, **geo)
    S = S.reshape(S.shape[: len(out)])  # drop the (size-1) reduced axes
    dt = expected_dtype(x, w)
    tol = tolerance(dt)
    cval = kw.get("cval", 0.0)
    ints = (np.asarray(x).dtype.kind in "iu" and np.asarray(w).dtype.kind in "iu"
            and (kw.get("padding", "constant") != "constant" or float(cval).is_integer()))
    if reduce in ("argmax", "argmin"):
        full_out = out + "".join(c for c in sliding if c not in out)
        unreduced = naive_correlate(x, w, f"{xs},{ws}->{full_out}|{sliding}",
                                    convolve=convolve, **geo)
        best = naive_correlate(x, w, explicit, convolve=convolve,
                               **{**kw, "reduce": reduce[3:]})
        assert y.dtype.kind == "i"
        nred = len(full_out) - len(out)
        assert y.shape == best.shape + (nred,)
        lead = np.indices(best.shape)
        got = unreduced[(*lead, *np.moveaxis(y, -1, 0))]
        assert np.all(np.abs(got - best) <= tol * S), (got, best)
        return y
    ref = naive_correlate(x, w, spec, convolve=convolve, **kw)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    assert y.dtype == dt, (y.dtype, dt)
    if ints:
        np.testing.assert_array_equal(y, ref)
        return y
    err = np.abs(y.astype(ref.dtype) - ref)
    bound = tol * S
    bad = err > bound
    assert not bad.any(), (
        f"{bad.sum()} of {bad.size} outputs break the contract; worst err "
        f"{err.max():.3g} vs allowed {bound.min() if bound.size else 0:.3g}")
    assert np.isfinite(y).all()
    return y


class small_fft_tiles:
    """Force the FFT method's overlap-save tiles down to ``points`` FFT points, so that
    tiling bugs show on small inputs."""

    def __init__(self, points: int):
        self.points = points

    def _clear(self):
        from batchconv.methods import fft

        fft.tiling.cache_clear()
        fft.fft_shape.cache_clear()

    def __enter__(self):
        from batchconv.methods import fft

        self.old = fft._TILE_POINTS, fft._TILE_EXTENTS
        fft._TILE_POINTS, fft._TILE_EXTENTS = self.points, 1
        self._clear()
        return self

    def __exit__(self, *exc):
        from batchconv.methods import fft

        fft._TILE_POINTS, fft._TILE_EXTENTS = self.old
        self._clear()
