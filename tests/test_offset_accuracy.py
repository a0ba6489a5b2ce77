"""ssd and ncc on data with a common offset (issue #20, finding 6), against exact rational
arithmetic (``fractions.Fraction``) under the metrics' accuracy contract.

The metrics centre ``x`` by its item's mean and the filters by theirs (``metrics/windowed.py``).
With an offset of 1e10 the filter's float64 mean is off by about 1e-6, so the centred
filter no longer sums to zero; the formulas dropped that sum, which put float64 ssd 1e5x
and ncc 4e5x beyond the contract. Both NumPy methods (``direct``, with and without the
compiled kernels, and ``fft``) and both torch methods (CPU tensors) are checked."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import tolerance

import batchconv as bc
from batchconv import compiled

LETTERS = "hwd"
NUMPY_METHODS = ["direct", "direct+numpy", "fft", "fft+numpy"]  # +numpy: no numba


def _spec(ndim: int) -> str:
    s = LETTERS[:ndim]
    return f"nc{s},kc{s}->nk{s}|{s}"


def _integers(x: np.ndarray, w: np.ndarray):
    """``x`` and ``w`` as Python integers over one common power-of-two denominator (each
    value's ``Fraction``, exactly): object arrays, and the denominator."""
    fx = [Fraction(float(v)) for v in x.astype(np.float64).ravel()]
    fw = [Fraction(float(v)) for v in w.astype(np.float64).ravel()]
    den = max(f.denominator for f in fx + fw)  # powers of two: the largest is their lcm
    X = np.array([f.numerator * (den // f.denominator) for f in fx], object)
    W = np.array([f.numerator * (den // f.denominator) for f in fw], object)
    return X.reshape(x.shape), W.reshape(w.shape), den


def exact_metric(x, w, metric: str, stride: int = 1, dilation: int = 1, items=None):
    """``metric`` for x (B, C, *S) and w (K, C, *T), 'valid', in exact rational
    arithmetic (integers over a common denominator; rounded once, at the end), and the
    contract's bound per output without ``tol``. ``items``: for an ``x`` padded
    beforehand, the unpadded one (the item's mean ``mu`` is its, as in
    ``tests/naive.py``). The bound is ``window_metric_bound``'s:
    ssd's ``max sum (|a - mu| + |b - mu|)^2``, ncc's
    ``max sum |a - mu| |b - mean b| / (|a - mean a| |b - mean b|) + 1``, the maxima over
    the pair's windows:
    ``(ref, bound, usable)``; ``usable`` is False for windows so close to flat that the
    contract does not compare them (as ``helpers.check_metric``)."""
    B, C, *S = x.shape
    K, _, *T = w.shape
    nd = len(S)
    X, W, den = _integers(x, w)
    span = [(t - 1) * dilation + 1 for t in T]
    win = np.lib.stride_tricks.sliding_window_view(X, span, axis=tuple(range(2, 2 + nd)))
    steps = [slice(None, None, stride)] * nd + [slice(None, None, dilation)] * nd
    win = win[(slice(None), slice(None), *steps)]
    out = win.shape[2 : 2 + nd]
    # (B, windows, n): each window's values, channels included, in w's order
    win = np.moveaxis(win, 1, 1 + nd).reshape(B, math.prod(out), -1)
    n = win.shape[-1]
    if items is not None:  # padding copies values: den is a multiple of theirs
        X = np.array([int(Fraction(float(v)) * den) for v in items.ravel()], object)
        X = X.reshape(items.shape)
    N = X[0].size
    ref = np.zeros((B, K, *out))
    bound = np.zeros((B, K, *out))
    usable = np.ones((B, K, *out), bool)
    for i in range(B):
        a, Sx = win[i], X[i].sum()  # the item's mean mu is Sx / N
        Sa = a.sum(axis=-1)
        VA = n * (a * a).sum(axis=-1) - Sa * Sa  # n^2 times the window's variance
        for k in range(K):
            b = W[k].ravel()
            Sb = b.sum()
            if metric == "ssd":  # sum (a - b)^2 and sum (|N a - Sx| + |N b - Sx|)^2
                d = a - b
                val = [Fraction(v, den * den) for v in (d * d).sum(axis=-1)]
                s = np.abs(N * a - Sx) + np.abs(N * b - Sx)
                scale = Fraction(max((s * s).sum(axis=-1)), (N * den) ** 2)
                ref[i, k] = np.array([float(v) for v in val]).reshape(out)
                bound[i, k] = float(scale)
                continue
            VB = n * (b * b).sum() - Sb * Sb
            num = n * (a * b).sum(axis=-1) - Sa * Sb
            # ncc = num / sqrt(VA VB); scale / den = sum |N a - Sx| |n b - Sb| / (N sqrt(VA VB))
            t = max((np.abs(N * a - Sx) * np.abs(n * b - Sb)).sum(axis=-1))
            for j, (q, va) in enumerate(zip(num, VA)):
                o = np.unravel_index(j, out)
                root = math.sqrt(va * VB)  # float(va * VB): one rounding
                if root == 0:  # a flat window or filter: exactly 0
                    ref[(i, k, *o)], bound[(i, k, *o)] = 0.0, 1.0
                    continue
                ref[(i, k, *o)] = float(q) / root
                ratio = float(Fraction(t, N)) / root  # the contract's scale / den
                bound[(i, k, *o)] = ratio + 1
                usable[(i, k, *o)] = ratio < 1e4
    return ref, bound, usable


def _numpy_call(x, w, method, **kw):
    if method.endswith("+numpy"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(compiled, "USE_NUMBA", False)
            return bc.correlate(x, w, _spec(x.ndim - 2), method=method[: -len("+numpy")], **kw)
    return bc.correlate(x, w, _spec(x.ndim - 2), method=method, **kw)


def _torch_call(x, w, method, **kw):
    torch = pytest.importorskip("torch")
    y = bc.correlate(
        torch.from_numpy(x), torch.from_numpy(w), _spec(x.ndim - 2), method=method, **kw
    )
    assert isinstance(y, torch.Tensor) and y.device.type == "cpu"
    return y.numpy()


def _assert_contract(y, x, w, *, metric, mode="valid", padding="constant", **kw):
    """``y`` within the contract of the exact value ('same': ``x`` padded with
    ``numpy.pad``, which matches the library's modes other than 'constant')."""
    items = None
    if mode == "same":
        spans = [(t - 1) * kw.get("dilation", 1) + 1 for t in w.shape[2:]]
        pads = [(0, 0)] * 2 + [(s // 2, s - 1 - s // 2) for s in spans]
        x, items = np.pad(x, pads, mode=padding), x
    ref, bound, usable = exact_metric(x, w, metric, items=items, **kw)
    assert y.shape == ref.shape and y.dtype == x.dtype
    err = np.abs(y.astype(np.float64) - ref)
    with np.errstate(divide="ignore", invalid="ignore"):  # bound 0: only err 0 passes
        ratio = np.where(usable & (err > 0), err / (tolerance(x.dtype) * bound), 0)
    assert np.isfinite(y).all()
    assert ratio.max() <= 1, (
        f"{metric}: error {ratio.max():.3g}x the contract (worst err "
        f"{err.flat[np.argmax(ratio)]:.3g})"
    )


def _offset_problem(rng, offset, dtype, shape=(2, 1, 48), taps=(12,), K=3):
    """x = offset + noise; the bank: a window of x item 0 (its mean is the item's, up to
    noise), a noisy copy of one, and an independent filter at the same offset."""
    x = (offset + rng.standard_normal(shape)).astype(dtype)
    C = shape[1]
    cut = x[0][(slice(None), *[slice(3, 3 + t) for t in taps])]
    bank = [
        cut,
        cut + 0.1 * rng.standard_normal(cut.shape),
        offset + rng.standard_normal(cut.shape),
    ]
    w = np.stack(bank[:K]).astype(dtype).reshape(K, C, *taps)
    return x, w


FLOAT64_OFFSETS = [1e6, 1e8, 1e10]
FLOAT32_OFFSETS = [1e2, 1e3]


@pytest.mark.parametrize("method", NUMPY_METHODS)
@pytest.mark.parametrize("metric", ["ssd", "ncc"])
@pytest.mark.parametrize(
    "dtype,offset",
    [(np.float64, o) for o in FLOAT64_OFFSETS] + [(np.float32, o) for o in FLOAT32_OFFSETS],
    ids=[f"float64-{o:g}" for o in FLOAT64_OFFSETS] + [f"float32-{o:g}" for o in FLOAT32_OFFSETS],
)
def test_common_offset(dtype, offset, metric, method):
    """The issue's case: 1-D, a bank (before the fix: ssd 18x / 4.9e3x / 1.1e5x and ncc
    59x / 1.5e4x / 3.7e5x the contract at 1e6 / 1e8 / 1e10, both methods)."""
    rng = np.random.default_rng(20)
    x, w = _offset_problem(rng, offset, dtype)
    _assert_contract(_numpy_call(x, w, method, metric=metric), x, w, metric=metric)


@pytest.mark.parametrize("method", NUMPY_METHODS)
@pytest.mark.parametrize("metric", ["ssd", "ncc"])
def test_common_offset_2d_channels(metric, method):
    """2-D with two channels (the compiled one-pass 2-D statistics for ``direct``) and a
    kernel longer than the shifted-slice box sums take."""
    rng = np.random.default_rng(21)
    x, w = _offset_problem(rng, 1e10, np.float64, shape=(2, 2, 14, 13), taps=(3, 9))
    _assert_contract(_numpy_call(x, w, method, metric=metric), x, w, metric=metric)


@pytest.mark.parametrize("method", ["torch_direct", "torch_fft"])
@pytest.mark.parametrize("metric", ["ssd", "ncc"])
@pytest.mark.parametrize(
    "dtype,offset",
    [(np.float64, o) for o in FLOAT64_OFFSETS] + [(np.float32, 1e3)],
    ids=[f"float64-{o:g}" for o in FLOAT64_OFFSETS] + ["float32-1e3"],
)
def test_common_offset_torch(dtype, offset, metric, method):
    """``metrics/windowed_torch.py`` has the same formulas: the same case on CPU tensors."""
    rng = np.random.default_rng(22)
    x, w = _offset_problem(rng, offset, dtype)
    _assert_contract(_torch_call(x, w, method, metric=metric), x, w, metric=metric)


@st.composite
def _problems(draw):
    """x and a bank with a common offset (up to 1e10 for float64, 1e3 for float32, either
    sign), contrast 1e-2 to 1e2, the filters' mean the same or a few contrasts away;
    1-D or 2-D, channels, banks, strides, dilations, 'valid' or 'same' with a copying
    padding. Returns ``(x, w, keywords)``."""
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    top = 10 if dtype == np.float64 else 3
    offset = draw(st.sampled_from([-1, 1])) * 10.0 ** draw(st.integers(0, top))
    shift = draw(st.sampled_from([0.0, 0.5, -3.0]))
    contrast = draw(st.sampled_from([1.0, 1e-2, 1e2]))
    nd = draw(st.integers(1, 2))
    taps = tuple(draw(st.integers(1, 10 if nd == 1 else 4)) for _ in range(nd))
    dilation = draw(st.integers(1, 2))
    spans = [(t - 1) * dilation + 1 for t in taps]
    S = tuple(s + draw(st.integers(0, 12 if nd == 1 else 5)) for s in spans)
    B, C, K = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 3))
    kw = {"stride": draw(st.integers(1, 2)), "dilation": dilation}
    if draw(st.booleans()):
        kw["mode"] = "same"
        kw["padding"] = draw(st.sampled_from(["edge", "reflect", "symmetric", "wrap"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = (offset + contrast * rng.standard_normal((B, C, *S))).astype(dtype)
    w = (offset + contrast * (shift + rng.standard_normal((K, C, *taps)))).astype(dtype)
    if draw(st.booleans()):  # filter 0: a window of x (means: the item's, up to noise)
        w[0] = x[0][(slice(None), *[slice(0, s, dilation) for s in spans])]
    kw["metric"] = draw(st.sampled_from(["ssd", "ncc"]))
    return x, w, kw


@settings(max_examples=40, deadline=None)
@given(problem=_problems(), method=st.sampled_from(NUMPY_METHODS))
def test_offsets_drawn(problem, method):
    """Drawn problems (:func:`_problems`) within the contract against exact arithmetic."""
    x, w, kw = problem
    _assert_contract(_numpy_call(x, w, method, **kw), x, w, **kw)


@settings(max_examples=20, deadline=None)
@given(problem=_problems(), method=st.sampled_from(["torch_direct", "torch_fft"]))
def test_offsets_drawn_torch(problem, method):
    """The same on CPU tensors."""
    x, w, kw = problem
    _assert_contract(_torch_call(x, w, method, **kw), x, w, **kw)
