"""reduce=bc.peaks(k, min_distance, threshold): the k best local extrema of each map,
against scikit-image's peak_local_max on the unreduced map (the naive float64 loop's)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from conftest import rand
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import naive_correlate

import batchconv as bc
from batchconv import compiled
from batchconv.peak_search import find_peaks

skimage_feature = pytest.importorskip("skimage.feature")


def reference(maps, k, d, threshold, lowest):
    """scores (M, k) and coords (M, k, n) by peak_local_max, one map at a time."""
    n_maps, shape = maps.shape[0], maps.shape[1:]
    scores = np.full((n_maps, k), np.nan)
    coords = np.full((n_maps, k, len(shape)), -1)
    for i, m in enumerate(maps):
        a = -m if lowest else m
        t = None if threshold is None else (-threshold if lowest else threshold)
        with np.errstate(all="ignore"), pytest.warns() if d == 0 else _nothing():
            found = skimage_feature.peak_local_max(
                a, min_distance=d, threshold_abs=t, num_peaks=k, exclude_border=False
            )
        scores[i, : len(found)] = m[tuple(found.T)]
        coords[i, : len(found)] = found
    return scores, coords


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@settings(max_examples=150, deadline=None)
@given(
    shape=st.lists(st.integers(1, 12), min_size=1, max_size=3).map(tuple),
    k=st.integers(1, 6),
    d=st.integers(0, 4),
    ties=st.booleans(),
    threshold=st.one_of(st.none(), st.floats(-1.5, 1.5)),
    lowest=st.booleans(),
    seed=st.integers(0, 2**31),
    numba=st.booleans(),
    single=st.booleans(),
)
def test_find_peaks_is_peak_local_max(shape, k, d, ties, threshold, lowest, seed, numba, single):
    """Every rule of peak_local_max (exclude_border=False), ties included: plateaus, the
    map's minimum as the default threshold, a constant map with no peak, spacing only
    for min_distance > 1 and kept at exactly min_distance; the compiled search (2-D
    maps with a threshold) and the NumPy one."""
    rng = np.random.default_rng(seed)
    maps = rng.standard_normal((2, *shape))
    if ties:
        maps = np.round(maps)
    if single:
        maps = maps.astype(np.float32)
    with compiled.use_numba(numba):
        scores, coords = find_peaks(maps, k, d, threshold, lowest=lowest)
    want_scores, want_coords = reference(maps, k, d, threshold, lowest)
    np.testing.assert_array_equal(coords, want_coords)
    np.testing.assert_array_equal(scores, want_scores)


@pytest.mark.parametrize("threshold", [None, -1.0])
@pytest.mark.parametrize("numba", [True, False])
def test_constant_map_and_nan(numba, threshold):
    """A constant map has no peak; NaN is never one and does not hide its neighbours."""
    with compiled.use_numba(numba):
        scores, coords = find_peaks(np.ones((1, 5, 5)), 2, threshold=threshold)
        assert np.isnan(scores).all() and (coords == -1).all()
        m = np.zeros((1, 3, 7))
        m[0, 1, 2], m[0, 1, 3] = 5.0, np.nan
        scores, coords = find_peaks(m, 3, threshold=threshold)
    assert scores[0].tolist()[:1] == [5.0] and coords[0, 0].tolist() == [1, 2]
    assert not np.isnan(scores[0, :1]).any() and [1, 3] not in coords[0].tolist()


METRICS = ["dot", "ssd", "sad", "ncc", "cosine"]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(
    "xs, ws, spec, opts",
    [
        ((2, 3, 30, 28), (4, 3, 5, 4), "nchw,kchw->nk|hw", {}),
        ((2, 3, 30, 28), (4, 3, 5, 4), "nchw,kchw->nk|hw", {"stride": 2, "mode": "same"}),
        ((3, 12, 11, 10), (2, 3, 3, 2), "nxyz,kxyz->nk|xyz", {"dilation": (1, 2, 1)}),
        ((2, 40, 30), (3, 6), "nhw,kw->nkh|w", {"mode": "full"}),
    ],
)
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_peaks_are_peak_local_max_of_the_maps(metric, xs, ws, spec, opts, method, rng):
    """bc.peaks on the reduced axes equals peak_local_max on each unreduced map of the
    naive loop (random data: no ties), scores within the accuracy contract."""
    if metric == "sad" and method == "fft":
        pytest.skip("sad has no FFT form")
    x, w = rand(rng, xs, np.float64), rand(rng, ws, np.float64)
    k, d = 4, 2
    lhs, out = spec.split("->")
    out, sliding = out.split("|")
    full = f"{lhs}->{out}{''.join(c for c in sliding if c not in out)}|{sliding}"
    maps = naive_correlate(x, w, full, metric=metric, **opts)
    n_red = len([c for c in sliding if c not in out])
    lead = maps.shape[: maps.ndim - n_red]
    flat = maps.reshape(-1, *maps.shape[maps.ndim - n_red :])
    lowest = bc.problem.metric_of(metric).best == "min"
    want_scores, want_coords = reference(flat, k, d, None, lowest)
    r = bc.correlate(
        x, w, spec, metric=metric, method=method, reduce=bc.peaks(k, min_distance=d), **opts
    )
    assert r.scores.shape == (*lead, k) and r.coords.shape == (*lead, k, n_red)
    assert r.scores.dtype == np.float64 and r.coords.dtype == np.intp
    np.testing.assert_array_equal(r.coords.reshape(want_coords.shape), want_coords)
    np.testing.assert_allclose(
        r.scores.reshape(want_scores.shape), want_scores, rtol=1e-9, atol=1e-9
    )


def test_threshold_and_fewer_peaks(rng):
    """Beyond the threshold only (above for ncc, below for ssd); the rest NaN and -1."""
    x, w = rand(rng, (1, 64), np.float64), rand(rng, (1, 5), np.float64)
    for metric, threshold in (("ncc", 0.5), ("ssd", 2.0)):
        r = bc.correlate(x, w, metric=metric, reduce=bc.peaks(50, threshold=threshold))
        full = bc.correlate(x, w, "ns,ks->nks|s", metric=metric)[0, 0]
        found = r.scores[0, 0][~np.isnan(r.scores[0, 0])]
        assert found.size < 50
        assert (found > threshold).all() if metric == "ncc" else (found < threshold).all()
        np.testing.assert_array_equal(r.coords[0, 0, found.size :], -1)
        np.testing.assert_allclose(full[r.coords[0, 0, : found.size, 0]], found)


def test_blocks_hold_only_a_block_of_maps(rng):
    """The unreduced maps of the whole bank are never held: the traced peak stays under
    10 % of them with a small memory budget (several blocks). (Without numba one item's
    float64 window sums need 2.8 MiB: a larger bank and budget then.)"""
    k, memory = (24, "1MB") if compiled.enabled() else (96, "4MB")
    x = rand(rng, (16, 128, 128), np.float32)
    w = rand(rng, (k, 9, 9), np.float32)
    spec = "nhw,khw->nk|hw"
    stacked = 16 * k * 120 * 120 * 4
    kw = {"method": "direct", "metric": "ncc", "reduce": bc.peaks(5), "memory": memory}
    bc.correlate(x[:1], w[:1], spec, **kw)  # (warm up: compiled kernels, caches)
    tracemalloc.start()
    try:
        r = bc.correlate(x, w, spec, **kw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.scores.shape == (16, k, 5)
    assert peak < 0.1 * stacked, (peak, stacked)


def test_torch_tensors_give_the_same_peaks(rng):
    torch = pytest.importorskip("torch")
    x, w = rand(rng, (2, 3, 30, 28), np.float64), rand(rng, (4, 3, 5, 4), np.float64)
    spec = "nchw,kchw->nk|hw"
    want = bc.correlate(x, w, spec, metric="ncc", reduce=bc.peaks(3, 2))
    for method in ("torch_direct", "torch_fft"):
        r = bc.correlate(
            torch.from_numpy(x),
            torch.from_numpy(w),
            spec,
            metric="ncc",
            method=method,
            reduce=bc.peaks(3, 2),
        )
        assert isinstance(r, bc.PeakResult) and isinstance(r.scores, torch.Tensor)
        assert r.coords.dtype == torch.int64
        np.testing.assert_array_equal(r.coords.numpy(), want.coords)
        np.testing.assert_allclose(r.scores.numpy(), want.scores, rtol=1e-9, atol=1e-9)


def test_a_plan_and_a_bound_plan_give_peaks(rng):
    x, w = rand(rng, (3, 50), np.float64), rand(rng, (2, 4), np.float64)
    p = bc.plan(x, w, reduce=bc.peaks(2))
    want = bc.correlate(x, w, reduce=bc.peaks(2))
    for f in (p, p.bind(x)):
        r = f(x)
        np.testing.assert_array_equal(r.coords, want.coords)
        np.testing.assert_array_equal(r.scores, want.scores)


@pytest.mark.parametrize(
    "args, message",
    [
        ((0,), "k must be a positive integer"),
        ((2.5,), "k must be a positive integer"),
        ((2, -1), "min_distance must be a non-negative integer"),
        ((2, 1, "high"), "threshold must be a number"),
        ((2, 1, float("nan")), "threshold is NaN"),
    ],
)
def test_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        bc.peaks(*args)


def test_refused_where_not_available(rng):
    with pytest.raises(TypeError, match="needs real data"):
        bc.correlate(np.ones((1, 8), complex), np.ones(3), reduce=bc.peaks(1))
    with pytest.raises(ValueError, match="keeps every sliding axis"):
        bc.correlate(np.ones((1, 8)), np.ones(3), "ns,s->ns|s", reduce=bc.peaks(1))


@pytest.mark.parametrize("metric", ["ncc", "ssd"])
def test_array_api_arrays_give_the_numpy_peaks(metric, rng):
    """The portable engine (here array-api-strict; JAX in the suites' subprocess runs the
    same code): peaks found on the host from each block, a PeakResult of its arrays."""
    xps = pytest.importorskip("array_api_strict")
    x, w = rand(rng, (3, 40, 50), np.float64), rand(rng, (2, 5, 5), np.float64)
    spec = "nhw,khw->nk|hw"
    want = bc.correlate(x, w, spec, metric=metric, reduce=bc.peaks(3, 2))
    for r in (
        bc.correlate(xps.asarray(x), xps.asarray(w), spec, metric=metric, reduce=bc.peaks(3, 2)),
        bc.plan(xps.asarray(x), xps.asarray(w), spec, metric=metric, reduce=bc.peaks(3, 2))(
            xps.asarray(x)
        ),
    ):
        assert isinstance(r, bc.PeakResult) and r.coords.dtype == xps.int64
        np.testing.assert_array_equal(np.from_dlpack(r.coords), want.coords)
        np.testing.assert_allclose(np.from_dlpack(r.scores), want.scores, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "chunks, w_chunks, spec",
    [
        ((2, 50, 45), None, "nhw,khw->nk|hw"),  # the reduced axes cut: made whole per task
        ((3, 100, 90), (2, 7, 7), "nhw,khw->nk|hw"),  # bank blocks
        ((2, 50, 45), None, "nhw,kw->nkh|w"),  # a kept sliding axis stays cut
    ],
)
def test_dask_gives_the_in_memory_peaks(chunks, w_chunks, spec, rng):
    """Under Dask each task holds whole maps: global coordinates, a peak by a chunk's
    border found once; the result is a PeakResult of lazy arrays."""
    da = pytest.importorskip("dask.array")
    x = rand(rng, (6, 100, 90), np.float64)
    w = rand(rng, (5, 7, 7) if "khw" in spec else (5, 7), np.float64)
    want = bc.correlate(x, w, spec, metric="ncc", reduce=bc.peaks(4, 3))
    wd = w if w_chunks is None else da.from_array(w, chunks=w_chunks)
    r = bc.correlate(da.from_array(x, chunks=chunks), wd, spec, metric="ncc", reduce=bc.peaks(4, 3))
    assert isinstance(r, bc.PeakResult) and isinstance(r.scores, da.Array)
    np.testing.assert_array_equal(r.coords.compute(), want.coords)
    np.testing.assert_allclose(r.scores.compute(), want.scores, rtol=1e-12, atol=1e-12)


def test_explain_names_the_peaks():
    p = bc.plan(
        np.ones((2, 40, 40)),
        np.ones((3, 5, 5)),
        "nhw,khw->nk|hw",
        metric="ssd",
        reduce=bc.peaks(4, 2, 0.5),
    )
    line = p.explain().splitlines()[3]
    assert "scores (2, 3, 4), coords (2, 3, 4, 2)" in line
    assert "bc.peaks(4, min_distance=2, threshold=0.5; the lowest first)" in line


@pytest.mark.parametrize("numba", [True, False])
def test_a_threshold_is_compared_in_the_maps_precision(numba):
    """A float32 map's threshold is rounded to float32 first, as peak_local_max compares
    (found by hypothesis: 7e-113 against a map of zeros, which is 0.0 in float32)."""
    maps = np.zeros((2, 1, 1), np.float32)
    maps[1] = 1.0
    with compiled.use_numba(numba):
        for lowest, t in ((True, 7.3e-113), (False, -7.3e-113)):
            _, coords = find_peaks(maps[:1], 1, 0, t, lowest=lowest)
            assert (coords == -1).all()
            assert (coords == reference(maps[:1], 1, 0, t, lowest)[1]).all()
        big = np.zeros((1, 9, 9), np.float32)
        big[0, 4, 4] = 1e-45  # (the smallest float32 above 0)
        _, coords = find_peaks(big, 1, 1, 7e-46)  # 7e-46 is 1e-45 in float32: not above
        assert (coords == reference(big, 1, 1, 7e-46, False)[1]).all()
