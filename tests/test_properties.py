"""Hypothesis: random specs, shapes, modes, strides, dilations, paddings and dtypes; every
method against the naive loop."""

from __future__ import annotations

import os

import numpy as np
from helpers import check, check_metric, small_fft_tiles
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@st.composite
def problems(draw):
    nd = draw(st.integers(1, 3))
    sliding = "hwd"[:nd]
    has_batch, has_bank = draw(st.booleans()), draw(st.booleans())
    has_sum, has_pair = draw(st.booleans()), draw(st.booleans())
    xs, ws, out = "", "", ""
    sizes = {}
    if has_batch:
        xs += "n"
        out += "n"
        sizes["n"] = draw(st.integers(1, 3))
    if has_bank:
        ws += "k"
        out += "k"
        sizes["k"] = draw(st.integers(1, 3))
    if has_sum:
        xs += "c"
        ws += "c"
        sizes["c"] = draw(st.integers(1, 3))
    if has_pair:
        xs += "g"
        ws += "g"
        out += "g"
        sizes["g"] = draw(st.integers(1, 2))
    mode = draw(st.sampled_from(["valid", "same", "full"]))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    n = [draw(st.integers(1, 9)) for _ in range(nd)]
    m = [draw(st.integers(1, 4)) for _ in range(nd)]
    if mode == "valid":
        n = [max(ni, (mi - 1) * di + 1) for ni, mi, di in zip(n, m, dilation, strict=True)]
    reduce_axes = draw(st.sets(st.sampled_from(list(sliding)))) if draw(st.booleans()) else set()
    kept = "".join(c for c in sliding if c not in reduce_axes)
    # shuffle the output letters
    out_letters = list(out + kept)
    perm = draw(st.permutations(out_letters))
    spec = f"{xs + sliding},{ws + sliding}->{''.join(perm)}|{sliding}"
    x_shape = tuple(sizes[c] for c in xs) + tuple(n)
    w_shape = tuple(sizes[c] for c in ws) + tuple(m)
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int16, np.complex128]))
    reduce = None
    if reduce_axes:
        choices = (
            ["sum", "mean"]
            if np.dtype(dtype).kind == "c"
            else ["sum", "mean", "max", "min", "argmax", "argmin"]
        )
        reduce = draw(st.sampled_from(choices))
    padding = draw(st.sampled_from(["constant", "reflect", "symmetric", "edge", "wrap"]))
    cval = draw(st.sampled_from([0.0, 1.5])) if padding == "constant" else 0.0
    method = draw(st.sampled_from(["direct", "fft"]))
    seed = draw(st.integers(0, 2**16))
    tile_points = draw(st.sampled_from([None, 1, 8, 27]))
    return dict(
        tile_points=tile_points,
        spec=spec,
        x_shape=x_shape,
        w_shape=w_shape,
        dtype=dtype,
        mode=mode,
        stride=stride,
        dilation=dilation,
        padding=padding,
        cval=cval,
        reduce=reduce,
        method=method,
        seed=seed,
        convolve=draw(st.booleans()) and reduce is None,
    )


# the fuzz test: at least 500 random problems in CI (about 7 s), 2000 with the "long"
# profile (HYPOTHESIS_PROFILE=long); BATCHCONV_FUZZ_SHARE (default 1) scales both fuzz
# tests' counts (tests/test_array_api.py runs them on other array libraries with less)
FUZZ_SHARE = float(os.environ.get("BATCHCONV_FUZZ_SHARE", "1"))
FUZZ_EXAMPLES = max(
    1, round((2000 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 500) * FUZZ_SHARE)
)


def random_arrays(pr):
    """``x`` and ``w`` of the drawn problem: integers in [-50, 50), else normal values
    (complex ones for a complex dtype)."""
    rng = np.random.default_rng(pr["seed"])
    dt = np.dtype(pr["dtype"])

    def make(shape):
        if dt.kind == "i":
            return rng.integers(-50, 50, size=shape).astype(dt)
        a = rng.standard_normal(shape)
        if dt.kind == "c":
            a = a + 1j * rng.standard_normal(shape)
        return a.astype(dt)

    return make(pr["x_shape"]), make(pr["w_shape"])


@settings(max_examples=FUZZ_EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_random_problems_match_naive(pr):
    x, w = random_arrays(pr)
    kw = dict(
        method=pr["method"],
        mode=pr["mode"],
        stride=pr["stride"],
        dilation=pr["dilation"],
        padding=pr["padding"],
        cval=pr["cval"],
        reduce=pr["reduce"],
        convolve=pr["convolve"],
    )
    if pr["tile_points"] is None:
        check(x, w, pr["spec"], **kw)
    else:
        with small_fft_tiles(pr["tile_points"]):
            check(x, w, pr["spec"], **kw)


METRIC_EXAMPLES = max(
    1, round((800 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 200) * FUZZ_SHARE)
)


@settings(max_examples=METRIC_EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.sampled_from(["ssd", "sad", "ncc", "cosine"]), st.booleans())
def test_random_metric_problems_match_naive(pr, metric, numba):
    """The same random problems with a similarity metric (real data; the reductions
    whose bound is the window's: max, min, argmax, argmin), with and without the
    compiled kernels."""
    from hypothesis import assume

    from batchconv import compiled

    dt = np.dtype(pr["dtype"])
    assume(dt.kind != "c" and pr["reduce"] not in ("sum", "mean"))
    rng = np.random.default_rng(pr["seed"])
    make = (
        (lambda s: rng.integers(-50, 50, size=s).astype(dt))
        if dt.kind == "i"
        else (lambda s: (rng.standard_normal(s) + 3).astype(dt))
    )
    x, w = make(pr["x_shape"]), make(pr["w_shape"])
    method = "direct" if metric == "sad" else pr["method"]
    kw = dict(
        mode=pr["mode"],
        stride=pr["stride"],
        dilation=pr["dilation"],
        padding=pr["padding"],
        cval=pr["cval"],
        reduce=pr["reduce"],
    )
    old = compiled.USE_NUMBA
    compiled.USE_NUMBA = numba
    try:
        if pr["tile_points"] is None:
            check_metric(x, w, pr["spec"], metric=metric, method=method, **kw)
        else:
            with small_fft_tiles(pr["tile_points"]):
                check_metric(x, w, pr["spec"], metric=metric, method=method, **kw)
    finally:
        compiled.USE_NUMBA = old
