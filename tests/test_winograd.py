"""The Winograd method (methods/winograd.py) against the naive float64 loop: hypothesis-
drawn shapes, channels, batches, banks, modes and paddings, adversarial value ranges, the
tile choice that keeps the accuracy contract, and the NaN/Inf policy."""

from __future__ import annotations

import warnings
import zlib
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import naive_correlate, tolerance, window_abs_bound

import batchconv as bc
from batchconv import compiled
from batchconv.methods import winograd
from batchconv.problem import make_problem

SPEC_2D = "nhwc,hwck->nhwk|hw"
SPEC_1D = "nlc,lck->nlk|l"


@pytest.fixture(autouse=True, scope="module", params=["compiled", "numpy"])
def transforms(request):
    """Every test twice: with the compiled transforms (2-D tiles of 6 x 6 samples, where
    numba is installed) and with the NumPy matrix products."""
    if request.param == "compiled" and not compiled.enabled():
        pytest.skip("numba is not installed")
    old = compiled.USE_NUMBA
    compiled.USE_NUMBA = request.param == "compiled"
    yield request.param
    compiled.USE_NUMBA = old


def check(x, w, spec, method_="winograd", **kw):
    """The method's result within tol * S of the naive loop, S the pair's window scale."""
    y = bc.correlate(x, w, spec, method=method_, **kw)
    ref = naive_correlate(x.astype(np.float64), w.astype(np.float64), spec, **kw)
    bound = window_abs_bound(x.astype(np.float64), w.astype(np.float64), spec, **kw)
    assert y.shape == ref.shape and y.dtype == x.dtype
    err = np.abs(y - ref)
    assert np.all(err <= tolerance(x.dtype) * bound), float((err / np.maximum(bound, 1e-300)).max())
    return y


@pytest.mark.parametrize("m, r", [(2, 3), (4, 3), (2, 5), (4, 5)])
def test_matrices_compute_the_correlation(m, r):
    """A^T [(G g) * (B^T d)] is the correlation of the tile, by the plain sum."""
    at, g, bt = winograd.winograd_matrices(m, r)
    rng = np.random.default_rng(m * 10 + r)
    for _ in range(5):
        d, k = rng.standard_normal(m + r - 1), rng.standard_normal(r)
        y = at @ ((g @ k) * (bt @ d))
        ref = [sum(d[i + j] * k[j] for j in range(r)) for i in range(m)]
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12)


def test_points_amplify_less_than_lavins():
    """F(4, 3) from the points 0, 1, -1, 2, -1/2 amplifies a rounding error 4.67x per
    axis; Lavin and Gray's 0, +-1, +-2 (their published matrices) 10.7x, which in 2-D
    (114x) would not keep the float32 contract."""
    lavin = (0, 1, -1, 2, -2)
    at, g, bt = winograd.winograd_matrices(4, 3, lavin)
    assert bt[0].tolist() == [4, 0, -5, 0, 1, 0]
    assert at[3].tolist() == [0, 1, -1, 8, -8, 1]
    np.testing.assert_allclose(g[3], [1 / 24, 1 / 12, 1 / 6])
    assert winograd.amplification(4, 3, 1) == pytest.approx(14 / 3)
    assert winograd.amplification(4, 3, 1, lavin) == pytest.approx(32 / 3)
    u = np.finfo(np.float32).eps / 2
    assert winograd._ROUNDINGS * winograd.amplification(4, 3, 2, lavin) * u > 1e-5


@pytest.mark.parametrize(
    "shapes, dtype, tile",
    [
        (((2, 16, 16, 8), (3, 3, 8, 4)), np.float32, 4),
        (((2, 16, 16, 8), (3, 3, 8, 4)), np.float64, 4),
        (((2, 64, 8), (3, 8, 4)), np.float32, 4),
        (((2, 64, 8), (5, 8, 4)), np.float32, 4),
        (((2, 16, 16, 8), (5, 5, 8, 4)), np.float64, 4),
        (((2, 16, 16, 8), (5, 5, 8, 4)), np.float32, 2),  # F(4x4, 5x5) would amplify 204x
    ],
)
def test_tile_keeps_the_contract(shapes, dtype, tile):
    spec = SPEC_2D if len(shapes[0]) == 4 else SPEC_1D
    p = make_problem(shapes[0], dtype, shapes[1], dtype, spec)
    assert winograd.tile_size(p) == tile
    assert winograd.applies(p) is None
    u = np.finfo(dtype).eps / 2
    bound = winograd._ROUNDINGS * winograd.amplification(tile, p.T[0], p.ndim) * u
    assert bound <= tolerance(dtype)
    if tile == 2:  # the larger tile would not
        assert winograd._ROUNDINGS * winograd.amplification(4, p.T[0], p.ndim) * u > 1e-5


def test_no_tile_for_half_precision_results():
    """Where the contract has no tolerance for the compute dtype, no tile is taken."""
    p = make_problem((2, 16, 16, 8), np.float32, (3, 3, 8, 4), np.float32, SPEC_2D)
    assert winograd.tile_size(replace(p, dtype=np.dtype(np.float16))) is None


def test_compiled_transforms_run_where_they_apply(transforms):
    """2-D tiles of 6 x 6 samples (F(4x4, 3x3), F(2x2, 5x5)) with 16 or more channels and
    filters take the compiled transforms when numba is on; 1-D tiles, F(4x4, 5x5) and
    fewer channels or filters the matrix products. ``explain()`` says which."""
    compiled_on = transforms == "compiled"
    for dtype, r, C, K, spec, expected in [
        (np.float32, 3, 16, 16, SPEC_2D, compiled_on),
        (np.float32, 5, 16, 32, SPEC_2D, compiled_on),
        (np.float64, 3, 16, 16, SPEC_2D, compiled_on),
        (np.float32, 3, 8, 16, SPEC_2D, False),  # few channels: the products are faster
        (np.float32, 3, 16, 4, SPEC_2D, False),  # few filters
        (np.float64, 5, 16, 16, SPEC_2D, False),  # F(4x4, 5x5): 8 x 8 tiles
        (np.float32, 3, 16, 16, SPEC_1D, False),
    ]:
        d = 2 if spec == SPEC_2D else 1
        x = np.zeros((1, *(12,) * d, C), dtype)
        p = bc.plan(x, np.ones((*(r,) * d, C, K), dtype), spec, method="winograd")
        assert (p.state.compiled_transforms is not None) == expected, (dtype, r, C, K, spec)
        assert ("compiled (numba)" in p.explain()) == expected


def test_compiled_transforms_cost_a_share_of_the_matrix_products():
    """The model was fitted on the matrix-product transforms; where the transforms run
    compiled their flops and copies count ``_COMPILED_COST`` of those (fitted on measured
    layers), the GEMMs and the flops the plan reports the same. A 'valid' channels-last
    input, which they read in place, moves no padded copy."""
    x, w = np.zeros((8, 64, 64, 64), np.float32), np.zeros((5, 5, 64, 16), np.float32)
    for mode in ("same", "valid"):
        p = bc.plan(x, w, SPEC_2D, mode=mode, method="winograd").problem
        with compiled.use_numba(True):
            (_, on), on_flops = winograd.cost_features(p), winograd.flops(p)
            with_numba = compiled.enabled()  # (numba installed)
        with compiled.use_numba(False):
            (_, off), off_flops = winograd.cost_features(p), winograd.flops(p)
        assert on_flops == off_flops
        assert on["gemm_flops_single"] == off["gemm_flops_single"]
        assert on["calls"] == off["calls"]
        if not with_numba:
            assert on == off
            continue
        share = winograd._COMPILED_COST
        assert on["transform_flops"] == pytest.approx(share * off["transform_flops"])
        need = winograd._layout(p)[2]
        padded = 0 if mode == "same" else p.B * p.C * np.prod(need) * 4  # (not moved)
        assert on["moved_bytes"] == pytest.approx(share * (off["moved_bytes"] - padded))


def test_unpickled_plan_without_numba_runs_the_products(transforms, monkeypatch):
    """A plan made with the compiled transforms, unpickled where numba is missing (a Dask
    worker without it), runs the matrix products instead of failing."""
    import pickle

    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 14, 13, 16)).astype(np.float32)
    w = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    p = pickle.loads(pickle.dumps(bc.plan(x, w, SPEC_2D, method="winograd")))
    monkeypatch.setattr(compiled, "has_module", lambda name: False)
    monkeypatch.setattr(compiled, "kernels", lambda: pytest.fail("numba's kernels used"))
    assert not compiled.enabled()
    ref = naive_correlate(x.astype(np.float64), w.astype(np.float64), SPEC_2D)
    bound = window_abs_bound(x.astype(np.float64), w.astype(np.float64), SPEC_2D)
    assert np.all(np.abs(p(x) - ref) <= tolerance(x.dtype) * bound)


@pytest.mark.parametrize(
    "x_shape, w_shape, spec, kw, why",
    [
        ((2, 16, 16, 3), (3, 3, 3, 4), SPEC_2D, {"stride": 2}, "stride"),
        ((2, 16, 16, 3), (3, 3, 3, 4), SPEC_2D, {"dilation": 2}, "stride"),
        ((2, 16, 16, 3), (7, 7, 3, 4), SPEC_2D, {}, "taps"),
        ((2, 16, 16, 3), (3, 5, 3, 4), SPEC_2D, {}, "taps"),
        ((2, 8, 8, 8, 3), (3, 3, 3, 3, 4), "ndhwc,dhwck->ndhwk|dhw", {}, "sliding axes"),
    ],
)
def test_does_not_apply(x_shape, w_shape, spec, kw, why):
    x, w = np.ones(x_shape, np.float32), np.ones(w_shape, np.float32)
    p = bc.plan(x, w, spec, **kw).problem
    assert why in winograd.applies(p)
    with pytest.raises(ValueError, match="winograd"):
        bc.correlate(x, w, spec, method="winograd", **kw)
    z = np.ones((2, 16, 16, 3), np.complex64)
    p = bc.plan(z, np.ones((3, 3, 3, 4), np.complex64), SPEC_2D).problem
    assert "real" in winograd.applies(p)


@st.composite
def problems(draw):
    d = draw(st.sampled_from([1, 2]))
    r = draw(st.sampled_from([3, 3, 5]))
    S = tuple(draw(st.integers(r, 19)) for _ in range(d))
    B, C, K = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 5))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    mode = draw(st.sampled_from(["valid", "same", "full"]))
    padding = draw(st.sampled_from(["constant", "reflect", "wrap", "edge"]))
    cval = draw(st.sampled_from([0.0, 1.5])) if padding == "constant" else 0.0
    channels_first = draw(st.booleans())
    letters = "hw"[:d] if d == 2 else "l"
    if channels_first:
        spec = f"nc{letters},kc{letters}->nk{letters}|{letters}"
        xs, ws = (B, C, *S), (K, C, *(r,) * d)
    else:
        spec = f"n{letters}c,{letters}ck->n{letters}k|{letters}"
        xs, ws = (B, *S, C), (*(r,) * d, C, K)
    kw = dict(mode=mode, padding=padding)
    if cval:
        kw["cval"] = cval
    seed = draw(st.integers(0, 2**31 - 1))
    return spec, xs, ws, dtype, kw, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_random_problems_match_naive(pr):
    spec, xs, ws, dtype, kw, seed = pr
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    check(x, w, spec, **kw)


def _adversarial(name, rng, xs, ws):
    """Inputs that stress the transforms: wide dynamic ranges, all-positive data far from
    zero (no cancellation to hide behind), a lone spike, a step edge."""
    x, w = rng.random(xs), rng.standard_normal(ws)
    if name == "log range":
        x = np.exp(rng.uniform(-8, 8, xs)) * rng.choice([-1, 1], xs)
        w = np.exp(rng.uniform(-8, 8, ws)) * rng.choice([-1, 1], ws)
    elif name == "all positive":
        x, w = 1e4 + rng.random(xs), rng.random(ws)
    elif name == "spike":  # (inside: at an edge, see test_edge_spikes_known_limitation)
        x = rng.random(xs) * 1e-3
        x[(0, *(n // 2 for n in xs[1:-1]), 0)] = 1e5
        x[(-1, *(n // 3 for n in xs[1:-1]), -1)] = -1e5
    elif name == "step edge":
        x[..., : xs[-2] // 2, :] *= 1e-4
        x[..., xs[-2] // 2 :, :] *= 1e4
    elif name == "striped":  # every fourth column large: the worst case found for F(4x4)
        x[..., 1::4, :] *= 1e4
    elif name == "heavy corner tap":
        w = rng.random(ws) * 1e-4
        w[(0,) * (len(ws) - 2)] = 1.0
    return x, w


@pytest.mark.parametrize(
    "case", ["log range", "all positive", "spike", "step edge", "heavy corner tap"]
)
@pytest.mark.parametrize(
    "xs, ws, spec",
    [
        ((2, 15, 14, 16), (3, 3, 16, 4), SPEC_2D),
        ((2, 13, 12, 1), (3, 3, 1, 3), SPEC_2D),
        ((2, 70, 16), (3, 16, 4), SPEC_1D),
        ((2, 70, 16), (5, 16, 4), SPEC_1D),
        ((2, 17, 15, 8), (5, 5, 8, 3), SPEC_2D),
    ],
)
@pytest.mark.parametrize("mode", ["same", "valid"])
def test_adversarial_values_keep_the_contract(case, xs, ws, spec, mode):
    rng = np.random.default_rng(zlib.crc32(repr((case, xs, mode)).encode()))
    x, w = _adversarial(case, rng, xs, ws)
    check(x.astype(np.float32), w.astype(np.float32), spec, mode=mode)


def test_larger_problem_with_many_channels():
    """A CNN-like layer: 128 channels summed per transformed position."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 20, 20, 128)).astype(np.float32)
    w = rng.standard_normal((3, 3, 128, 16)).astype(np.float32)
    check(x, w, SPEC_2D, mode="same")


def test_paired_axes_and_chunks():
    """Paired axes (grouped channels) and chunked tile rows: an item with more tiles than
    a chunk holds."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 70, 66)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    check(x, w, "nphw,kphw->nkphw|hw", mode="same")


@pytest.mark.parametrize(
    "xs, ws, spec",
    [
        ((2, 13, 15, 3), (3, 3, 3, 4), SPEC_2D),  # 11 x 13 outputs: 3 and 1 past whole tiles
        ((1, 150, 70, 2), (3, 3, 2, 3), SPEC_2D),  # one item's tile rows in several chunks
        ((2, 3, 14, 10), (4, 3, 5, 5), "nchw,kchw->nkhw|hw"),  # 5x5 (F(2x2)): 10 x 6
        ((3, 2, 2, 11, 9), (2, 2, 3, 3), "npchw,kphw->nkphw|hw"),  # paired axis: 9 x 7
        ((3, 41, 2), (5, 2, 3), SPEC_1D),  # 37 outputs
        ((2, 6, 6, 1), (3, 3, 1, 1), SPEC_2D),  # one tile a side, exactly
    ],
)
def test_valid_tiles_are_gathered_from_the_input(xs, ws, spec):
    """'valid' windows with the matrix-product transforms: the tiles come from the input
    itself, each axis's last tile read back from the end (its outputs the others do not
    give); the outputs are the naive loop's."""
    rng = np.random.default_rng(zlib.crc32(repr(xs).encode()))
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    p = bc.plan(x, w, spec, method="winograd").problem
    assert winograd._reads_input(p, winograd.tile_size(p))
    for dtype in (np.float64, np.float32):
        check(x.astype(dtype), w.astype(dtype), spec, mode="valid")


@pytest.mark.parametrize(
    "xs, ws, view",
    [
        ((2, 13, 15, 16), (3, 3, 16, 16), None),  # 11 x 13 outputs
        ((1, 150, 70, 16), (3, 3, 16, 20), None),  # tile rows in several chunks
        ((2, 9, 10, 32), (3, 3, 32, 16), None),  # 7 x 8: a column of whole tiles
        (
            (2, 20, 30, 24),
            (3, 3, 16, 16),
            (slice(None), slice(2, 17), slice(None, None, 2), slice(4, 20)),
        ),
        ((2, 12, 13, 16), (5, 5, 16, 16), None),  # F(2x2, 5x5): 8 x 9
    ],
)
def test_compiled_transforms_read_valid_inputs_in_place(xs, ws, view, transforms, monkeypatch):
    """With the compiled transforms too, a 'valid' channels-last input is read in place
    (no padded copy: ``_padded_input`` is not called), strided views included, the last
    tiles moved back; the outputs are the naive loop's."""
    rng = np.random.default_rng(zlib.crc32(repr((xs, view)).encode()))
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    if view is not None:
        x = x[view]
    p = bc.plan(x.astype(np.float32), w.astype(np.float32), SPEC_2D, method="winograd")
    assert (p.state.compiled_transforms is not None) == (transforms == "compiled")

    def padded_input(*args):
        raise AssertionError("a padded copy of a 'valid' channels-last input")

    monkeypatch.setattr(winograd, "_padded_input", padded_input)
    for dtype in (np.float64, np.float32):
        check(x.astype(dtype), w.astype(dtype), SPEC_2D, mode="valid")


def test_nonfinite_values_are_those_of_the_direct_method():
    """A NaN or Inf spreads over its tile in the transforms; the plan redoes the flagged
    items exactly, so the result is the direct method's, NaN for NaN."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 12, 12, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)
    x[1, 5, 6, 2] = np.nan
    x[2, 0, 0, 0] = np.inf
    y = bc.correlate(x, w, SPEC_2D, method="winograd", mode="same")
    ref = bc.correlate(x, w, SPEC_2D, method="direct", mode="same")
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(ref))
    ok = np.isfinite(ref)
    np.testing.assert_allclose(y[ok], ref[ok], rtol=0, atol=1e-4)


def test_auto_picks_winograd_only_where_it_applies():
    """``auto`` weighs winograd by its cost model; the plan says so in ``explain()``."""
    x = np.zeros((8, 28, 28, 128), np.float32)
    w = np.zeros((3, 3, 128, 128), np.float32)
    text = bc.plan(x, w, SPEC_2D, mode="same").explain()
    assert "winograd" in text
    p7 = bc.plan(x[..., :8], np.zeros((7, 7, 8, 8), np.float32), SPEC_2D)
    assert p7.method != "winograd" and "winograd" not in p7.explain().split("candidates")[1]


def test_integers_are_not_computed_with_winograd():
    """Integer inputs are exact with direct: auto never takes winograd for them."""
    x = np.arange(8 * 20 * 20 * 64).reshape(8, 20, 20, 64) % 7
    w = np.ones((3, 3, 64, 64), np.int64)
    assert bc.plan(x, w, SPEC_2D, mode="same").method != "winograd"


@pytest.mark.parametrize(
    "xs, ws, spec, memory, mode",
    [
        ((4, 3, 96, 80), (8, 3, 3, 3), "nchw,kchw->nkhw|hw", 1 << 20, "same"),
        ((4, 3, 96, 80), (8, 3, 3, 3), "nchw,kchw->nkhw|hw", 1 << 20, "valid"),
        ((4, 40, 40, 16), (3, 3, 16, 16), SPEC_2D, 4 << 20, "same"),
        ((2, 20_000, 4), (5, 4, 8), SPEC_1D, 4 << 20, "same"),
        ((2, 20_000, 4), (5, 4, 8), SPEC_1D, 4 << 20, "valid"),
        ((8, 56, 56, 32), (3, 3, 32, 32), SPEC_2D, 64 << 20, "same"),
        ((8, 56, 56, 32), (3, 3, 32, 32), SPEC_2D, 64 << 20, "valid"),
    ],
)
@pytest.mark.parametrize("metric", ["dot", "ncc"])
def test_memory_budget(xs, ws, spec, memory, mode, metric):
    """Everything a plan allocates stays within ``memory`` (tracemalloc), and
    ``explain()``'s peak is the measured one within 25 % (one thread)."""
    from test_budget_property import SLACK, _traced_plan_and_call

    rng = np.random.default_rng(8)
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    opts = dict(spec=spec, mode=mode, metric=metric, method="winograd", memory=memory, workers=1)
    p, peak = _traced_plan_and_call(x, w, opts)
    assert p is not None and p.method == "winograd"
    explain = p.explain()
    assert peak <= p.memory + SLACK, f"peak {peak} over the budget {p.memory}\n{explain}"
    assert peak <= 1.25 * p.peak_bytes + SLACK, explain
    assert p.peak_bytes <= 1.25 * peak + SLACK, explain


@pytest.mark.xfail(strict=True, reason="known limitation of the transform methods (fft too)")
@pytest.mark.parametrize("method", ["winograd", "fft"])
def test_edge_spikes_known_limitation(method):
    """A transform mixes every sample of its tile (winograd) or item (fft) into every
    output, where its rounding error scales with the sample. A sample within a kernel's
    width of the edge meets only some taps in the kept windows (the corner sample of a
    'valid' correlation only the corner tap), so the window scale S of the contract need
    not count it: a spike there, against the small taps that see it, breaks
    |y - ref| <= tol * S where the direct method holds (fft: a corner spike, 35x tol * S;
    winograd: a spike one sample in from the corner, whose taps do not include the large
    one, 16x; 'valid' tiles read from the input start at its first sample and end at
    its last, which the edge samples' transforms leave apart: a corner spike stays
    within 0.05x there, where every output axis is at least a tile long; on a buffer
    padded to whole tiles (channels-first data with the compiled transforms) 55x).
    Documented in docs/guide/accuracy.rst; ``method="direct"`` is the exact choice for
    such data."""
    if method == "fft":
        rng = np.random.default_rng(1)
        x = rng.random((2, 13, 12, 1)) * 1e-3
        x[0, 0, 0, 0], x[-1, -1, -1, -1] = 1e5, -1e5
        w = rng.standard_normal((3, 3, 1, 3))
    else:
        rng = np.random.default_rng(10)
        x = rng.random((2, 13, 12, 1)) * 1e-3
        x[0, 1, 1, 0] = 1e5
        w = rng.random((3, 3, 1, 3)) * 1e-3
        w[2, 2] = 1.0
    check(x.astype(np.float32), w.astype(np.float32), SPEC_2D, mode="valid", method_=method)


def test_overflow_in_a_transform_is_redone_directly():
    """Finite data near float32's largest values overflows in the transforms: those
    items get the direct method's answer, not NaN."""
    x = np.full((2, 16, 1), 3e38, np.float32)
    x[1] = 1.0
    w = np.full((3, 1, 2), 0.1, np.float32)
    y = bc.correlate(x, w, SPEC_1D, method="winograd")
    np.testing.assert_array_equal(y, bc.correlate(x, w, SPEC_1D, method="direct"))


@pytest.mark.parametrize("method", ["winograd", "fft"])
def test_no_warnings_from_the_threads(method):
    """An Inf in x is redone quietly with several workers too (errstate is per thread)."""
    rng = np.random.default_rng(9)
    x = rng.random((2, 12, 12, 4)).astype(np.float32)
    x[1, 3, 3, 1] = np.inf
    w = rng.random((3, 3, 4, 4)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = bc.correlate(x, w, SPEC_2D, method=method, workers=2)
    ref = bc.correlate(x, w, SPEC_2D, method="direct")
    np.testing.assert_array_equal(np.isfinite(y), np.isfinite(ref))


def test_gradients_with_method_winograd():
    """The backward's correlations that winograd does not take (the filter gradient's
    kernel is the cotangent) are planned by auto."""
    rng = np.random.default_rng(10)
    x, w = rng.random((2, 12, 12, 3)), rng.random((3, 3, 3, 4))
    g = rng.random((2, 10, 10, 4))
    got = bc.vjp(x, w, SPEC_2D, cotangent=g, method="winograd")
    ref = bc.vjp(x, w, SPEC_2D, cotangent=g, method="direct")
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_tile_padding_is_zero_beyond_the_mode_padding():
    """The buffer padded to whole tiles holds cval only where the mode pads, zeros
    beyond (rounding noise stays that of the data)."""
    plan = bc.plan(np.ones((1, 5, 5, 1)), np.ones((3, 3, 1, 2)), SPEC_2D, mode="same", cval=7.0)
    q = plan.problem
    xc = np.ones((1, 1, 1, 5, 5))
    buf = winograd._padded_input(q, xc)
    padded = [g.padded for g in q.geoms]
    assert (buf[0, 0, padded[0] :] == 0).all() and (buf[0, 0, :, padded[1] :] == 0).all()
    assert buf[0, 0, 0, 0, 0] == 7.0 and buf[0, 0, 1, 1, 0] == 1.0
