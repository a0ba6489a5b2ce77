"""Dask arrays in, lazy Dask arrays out (issue #9): every chunking (batch, bank, sliding
axes), mode, stride that does not divide the chunks, dilation, padding, metric and reduce,
checked against the float64 loop under the accuracy contract, with the threaded scheduler,
the processes scheduler and a 2-worker ``LocalCluster``; graphs that compute nothing; the
bank built once per bank block; a worker killed mid-run."""

from __future__ import annotations

import os
import pickle
import time

import numpy as np
import pytest
from conftest import rand
from helpers import check, check_metric
from hypothesis import given, settings
from hypothesis import strategies as st

import batchconv as bc

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

PADDINGS = ("constant", "reflect", "symmetric", "edge", "wrap")

# (spec, x shape, x chunks, w shape, w chunks or None for a NumPy w, reduce)
CASES = {
    "bank, batch+sliding chunks": (None, (3, 23, 19), (2, 8, 7), (4, 4, 5), (3, 4, 5), None),
    "all pairs, max over chunked axes": (
        "nhwd,khwd->nk|hwd",
        (5, 12, 11, 3),
        (2, 5, 4, 3),
        (6, 4, 3, 2),
        (4, 4, 3, 2),
        "max",
    ),
    "NHWC channels": (
        "nhwc,hwco->nhwo|hw",
        (2, 14, 13, 3),
        (1, 6, 5, 2),
        (3, 3, 3, 4),
        (3, 3, 3, 2),
        None,
    ),
    "depthwise (paired)": (
        "nchw,chw->nchw|hw",
        (2, 3, 15, 14),
        (1, 2, 6, 5),
        (3, 4, 3),
        None,
        None,
    ),
    "1-D, two batch axes": ("abt,kt->abkt|t", (2, 3, 50), (1, 2, 13), (2, 7), (1, 7), None),
    "3-D, no batch": ("xyz,kxyz->kxyz|xyz", (9, 8, 10), (4, 4, 5), (2, 3, 3, 4), None, None),
    "argmax over one of two axes": (
        "nhw,khw->nkh|hw",
        (2, 17, 16),
        (1, 6, 5),
        (3, 3, 4),
        None,
        "argmax",
    ),
}
GEOMETRY = [(1, 1), (3, 2), (2, 1)]  # (stride, dilation); 3 divides none of the chunks


def _lazy(x_chunks, w_chunks):
    """A ``call`` for the helpers: chunk x (and w), check the result is lazy, compute."""

    def call(f, x, w, spec, **kw):
        xd = da.from_array(x, chunks=x_chunks)
        wd = w if w_chunks is None else da.from_array(w, chunks=w_chunks)
        y = f(xd, wd, spec, **kw)
        assert isinstance(y, da.Array)
        out = y.compute()
        assert out.shape == y.shape and out.dtype == y.dtype
        return out

    return call


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("geometry", GEOMETRY, ids=["s1d1", "s3d2", "s2d1"])
def test_matches_the_loop(name, mode, geometry, rng):
    spec, xs, xc, ws, wc, reduce = CASES[name]
    stride, dilation = geometry
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    i = list(CASES).index(name) + GEOMETRY.index(geometry) + ["valid", "same", "full"].index(mode)
    padding = PADDINGS[i % len(PADDINGS)]
    kw = dict(mode=mode, stride=stride, dilation=dilation, padding=padding)
    if padding == "constant":
        kw["cval"] = 0.5
    if reduce is not None:
        kw["reduce"] = reduce
    for method in ("direct", "fft"):
        check(x, w, spec, method=method, call=_lazy(xc, wc), **kw)


@pytest.mark.parametrize("metric", ["ssd", "sad", "ncc", "cosine"])
@pytest.mark.parametrize("reduce", [None, "max", "argmax"])
def test_metrics(metric, reduce, rng):
    x = rng.standard_normal((3, 21, 18)) + 2
    w = rng.standard_normal((4, 5, 4))
    spec = "nhw,khw->nk|hw" if reduce else None
    extra = {"reduce": reduce} if reduce else {}
    for method in ("direct", "fft") if metric != "sad" else ("direct",):
        check_metric(
            x,
            w,
            spec,
            metric=metric,
            method=method,
            mode="same",
            stride=2,
            padding="reflect",
            call=_lazy((2, 7, 6), (3, 5, 4)),
            **extra,
        )


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min", "argmax", "argmin"])
@pytest.mark.parametrize("chunks", [(2, 5, 4, 2), (5, 12, 11, 2)], ids=["split", "whole"])
def test_every_reduce(reduce, chunks, rng):
    x, w = rng.standard_normal((5, 12, 11, 2)), rng.standard_normal((3, 4, 3, 2))
    check(
        x,
        w,
        "nhwd,khwd->nk|hwd",
        method="auto",
        mode="same",
        reduce=reduce,
        call=_lazy(chunks, None),
    )


def test_argmax_ties_and_nan_follow_numpy():
    """The first occurrence wins across blocks, and a NaN wins over numbers, as in NumPy:
    equal to the in-memory result exactly."""
    x = np.zeros((2, 40))
    x[0, [5, 25, 33]] = 1.0  # three equal maxima in three chunks
    x[1, 30] = np.nan
    w = np.ones((1, 1))
    for reduce in ("argmax", "argmin"):
        got = bc.correlate(da.from_array(x, chunks=(1, 10)), w, reduce=reduce).compute()
        np.testing.assert_array_equal(got, bc.correlate(x, w, reduce=reduce))


@pytest.mark.parametrize("reduce", ["argmax", "argmin"])
def test_argmax_in_two_passes_when_the_block_does_not_fit(reduce, rng, monkeypatch):
    """Where the unreduced block would take too much of the budget, each block runs the
    fused max and argmax plans instead of one unreduced pass: the same answer."""
    from batchconv import dask_arrays

    monkeypatch.setattr(dask_arrays, "_UNREDUCED_SHARE", 1 << 60)
    x, w = rng.standard_normal((3, 22, 19)), rng.standard_normal((2, 4, 5))
    check(
        x,
        w,
        "nhw,khw->nk|hw",
        method="auto",
        mode="same",
        stride=2,
        reduce=reduce,
        call=_lazy((2, 8, 7), None),
    )


def test_convolve_even_kernels_and_dtypes(rng):
    x32 = rng.standard_normal((2, 30, 27)).astype(np.float32)
    w32 = rng.standard_normal((3, 4, 6)).astype(np.float32)
    for mode in ("same", "full", "valid"):
        y = check(
            x32, w32, method="auto", convolve=True, mode=mode, call=_lazy((1, 9, 8), (2, 4, 6))
        )
        assert y.dtype == np.float32
    xi, wi = rand(rng, (2, 25, 20), np.int16), rand(rng, (2, 3, 3), np.int32)
    y = check(xi, wi, method="auto", mode="same", cval=2, call=_lazy((1, 7, 6), None))
    assert y.dtype == np.float64  # integers: exact


def test_numpy_x_with_a_dask_bank(rng):
    x, w = rng.standard_normal((4, 20, 20)), rng.standard_normal((6, 5, 5))
    y = bc.correlate(
        x, da.from_array(w, chunks=(2, 5, 5)), "nhw,khw->nk|hw", mode="same", reduce="max"
    )
    assert y.chunks == ((4,), (2, 2, 2))
    np.testing.assert_allclose(
        y.compute(), bc.correlate(x, w, "nhw,khw->nk|hw", mode="same", reduce="max"), rtol=1e-12
    )


def test_chunks_align_to_the_stride():
    x = da.zeros((1, 100), chunks=(1, 30))
    y = bc.correlate(x, np.ones((1, 5)), mode="same", stride=3)
    assert y.shape == (1, 1, 34) and sum(y.chunks[2]) == 34
    # output i belongs to the chunk holding its window's centre, sample i * 3
    assert y.chunks[2] == (10, 10, 10, 4)
    y = bc.correlate(x, np.ones((1, 5)), mode="valid", stride=3)  # centre i * 3 + 2
    assert y.chunks[2] == (10, 10, 10, 2)


def test_building_the_graph_computes_nothing(rng):
    def boom(block):
        raise RuntimeError("computed")

    x = da.zeros((4, 64, 64), chunks=(2, 32, 32)).map_blocks(boom, dtype=float)
    w = rng.standard_normal((3, 5, 5))
    for kw in (
        {},
        {"mode": "same", "padding": "wrap"},
        {"reduce": "argmax"},
        {"metric": "ncc", "stride": 2},
    ):
        y = bc.correlate(x, w, **kw)
        assert isinstance(y, da.Array)
    with pytest.raises(RuntimeError, match="computed"):
        y.compute()


def test_bank_is_one_task_per_bank_block(rng):
    """The plan (spectra included) is made by one task per bank block that every output
    block depends on: the bank is not copied into each task."""
    x = da.from_array(rng.standard_normal((8, 32, 32)), chunks=(2, 32, 32))
    w = da.from_array(rng.standard_normal((6, 7, 7)), chunks=(3, 7, 7))
    y = bc.correlate(x, w, method="fft")
    graph = dict(y.__dask_graph__())
    banks = [k for k in graph if isinstance(k, tuple) and k[0].startswith("batchconv-bank")]
    assert len(banks) == 2
    blocks = [k for k in graph if isinstance(k, tuple) and k[0] == y.name]
    assert len(blocks) == 4 * 2
    np.testing.assert_allclose(y.compute(), bc.correlate(x.compute(), w.compute()), atol=1e-10)


def test_errors_are_raised_at_call_time(rng):
    x = da.ones((2, 30, 30), chunks=(1, 10, 10))
    w = np.ones((2, 3, 3))
    with pytest.raises(ValueError, match="mode must be"):
        bc.correlate(x, w, mode="sideways")
    with pytest.raises(ValueError, match="method"):
        bc.correlate(x, w, method="magic")
    with pytest.raises(ValueError, match="workers"):
        bc.correlate(x, w, workers=0)
    with pytest.raises(ValueError, match="callable reduce"):
        bc.correlate(x, w, reduce=lambda b, axis: b.sum(axis=axis))
    with pytest.raises(TypeError, match="Dask array"):
        bc.plan(x, w)
    # a callable reduce is fine when the reduced axes are whole
    whole = x.rechunk((1, 30, 30))
    got = bc.correlate(whole, w, reduce=lambda b, axis: b.sum(axis=axis)).compute()
    np.testing.assert_array_equal(got, np.full((2, 2), 9.0 * 28 * 28))


def test_call_time_errors_match_the_in_memory_ones(rng):
    """Review findings: each of these was silent, late or unclear with Dask input."""
    from batchconv.xp import get_workers

    x = da.from_array(rng.standard_normal((2, 12, 10)), chunks=(1, 6, 5))
    w = rng.standard_normal((3, 3, 3))
    before = get_workers()
    bc.correlate(x, w, workers=1)
    assert get_workers() == before  # workers= is per call, not left on the thread
    with pytest.raises(ValueError, match="convolve computes metric 'dot' only"):
        bc.convolve(x, w, metric="ncc")
    with pytest.raises(MemoryError, match="no method fits"):
        bc.correlate(x, w, memory=10)  # at call time, not inside a task
    unknown = da.arange(40.0).reshape(2, 20)
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        bc.correlate(unknown[unknown[:, 0] >= 0], np.ones(3))
    with pytest.raises(TypeError, match="batchconv accepts"):
        bc.correlate(x, np.array([[["a"]]]))
    got = bc.correlate(x, w.tolist()).compute()  # a nested list is an array, as in memory
    np.testing.assert_allclose(got, bc.correlate(x.compute(), w), atol=1e-12)


def test_one_thread_per_task_unless_asked(rng):
    from batchconv.xp import get_workers

    seen = []

    def record(block, axis):
        seen.append(get_workers())
        return block.max(axis=axis)

    x = da.from_array(rng.standard_normal((4, 20, 20)), chunks=(2, 20, 20))
    w = rng.standard_normal((2, 3, 3))
    bc.correlate(x, w, reduce=record).compute()
    bc.correlate(x, w, reduce=record, workers=2).compute()
    assert set(seen[:2]) == {1} and set(seen[2:]) == {min(2, len(os.sched_getaffinity(0)))}


def test_processes_scheduler(rng):
    x, w = rng.standard_normal((4, 30, 30)), rng.standard_normal((3, 5, 5))
    y = bc.correlate(da.from_array(x, chunks=(2, 15, 15)), w, mode="same", reduce="argmax")
    with dask.config.set(scheduler="processes", num_workers=2):
        got = y.compute()
    np.testing.assert_array_equal(got, bc.correlate(x, w, mode="same", reduce="argmax"))


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
def test_local_cluster(client, name, mode, rng):
    spec, xs, xc, ws, wc, reduce = CASES[name]
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    kw = dict(mode=mode, stride=2, dilation=2 if mode != "valid" else 1, padding="wrap")
    if reduce:
        kw["reduce"] = reduce
    check(x, w, spec, method="auto", call=_lazy(xc, wc), **kw)
    check_metric(x + 3, w, spec, metric="ncc", method="fft", call=_lazy(xc, wc), **kw)


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["dot", "ssd", "sad", "ncc", "cosine"])
def test_local_cluster_every_metric_and_reduce(client, metric, rng):
    x, w = rng.standard_normal((3, 26, 23)) + 1, rng.standard_normal((2, 5, 4))
    for reduce in (None, "sum", "mean", "max", "min", "argmax", "argmin"):
        spec = "nhw,khw->nk|hw" if reduce else None
        kw = dict(mode="same", stride=3, padding="reflect", call=_lazy((2, 9, 8), (1, 5, 4)))
        if reduce:
            kw["reduce"] = reduce
        if metric == "dot":
            check(x, w, spec, method="auto", **kw)
        else:
            check_metric(x, w, spec, metric=metric, method="auto", **kw)


@pytest.mark.slow
def test_local_cluster_scatters_large_numpy_inputs(client, rng):
    """A NumPy bank over 1 MB is scattered to the workers, not embedded in the graph."""
    x = rng.standard_normal((6, 40, 40)).astype(np.float32)
    w = rng.standard_normal((256, 40, 40)).astype(np.float32)  # 1.6 MB
    xd = da.from_array(x, chunks=(2, 40, 40))
    y = bc.correlate(xd, w, "nhw,khw->nk|hw", mode="same", reduce="max")
    graph = dict(y.__dask_graph__())
    embedded = sum(
        len(pickle.dumps(v))
        for k, v in graph.items()
        if not (isinstance(k, tuple) and k[0] == xd.name)
    )
    assert embedded < 1 << 20, embedded
    np.testing.assert_allclose(
        y.compute(),
        bc.correlate(x, w, "nhw,khw->nk|hw", mode="same", reduce="max"),
        rtol=2e-5,
        atol=1e-3,
    )


@pytest.mark.slow
def test_worker_killed_mid_run(client, rng):
    """One worker process dies while the table is computed: Dask reruns its tasks on the
    other (and the restarted) worker, and the table is whole and right."""
    x = rng.standard_normal((64, 96, 96)).astype(np.float32)
    w = rng.standard_normal((32, 11, 11)).astype(np.float32)
    y = bc.correlate(
        da.from_array(x, chunks=(2, 96, 96)),
        w,
        "nhw,khw->nk|hw",
        mode="same",
        reduce="max",
        method="direct",
    )
    future = client.compute(y)
    deadline = time.time() + 30
    while not any(client.processing().values()) and time.time() < deadline:
        time.sleep(0.01)
    victim = next(iter(client.scheduler_info()["workers"]))
    pid = client.run(os.getpid, workers=[victim])[victim]
    assert not future.done()  # the kill lands mid-run
    os.kill(pid, 9)
    got = future.result(timeout=120)
    np.testing.assert_allclose(
        got, bc.correlate(x, w, "nhw,khw->nk|hw", mode="same", reduce="max"), rtol=2e-5, atol=1e-3
    )
    assert not future.cancelled()


@st.composite
def _chunked_problems(draw):
    nd = draw(st.integers(1, 2))
    S = tuple(draw(st.integers(1, 24)) for _ in range(nd))
    T = tuple(draw(st.integers(1, 6)) for _ in range(nd))
    mode = draw(st.sampled_from(["valid", "same", "full"]))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    if mode == "valid":
        S = tuple(max(s, (t - 1) * d + 1) for s, t, d in zip(S, T, dilation))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    chunks = (draw(st.integers(1, 3)),) + tuple(draw(st.integers(1, s)) for s in S)
    return dict(
        S=S,
        T=T,
        mode=mode,
        stride=stride,
        dilation=dilation,
        chunks=chunks,
        padding=draw(st.sampled_from(PADDINGS)),
        reduce=draw(st.sampled_from([None, "sum", "max", "argmin"])),
        metric=draw(st.sampled_from(["dot", "dot", "ssd", "ncc"])),
        bank_chunk=draw(st.integers(1, 3)),
        dtype=draw(st.sampled_from([np.float32, np.float64])),
    )


# (drawn shapes may look like channels-last images: spec=None's reading is meant here)
@pytest.mark.filterwarnings("ignore::batchconv.ChannelsWarning")
@settings(deadline=None)  # examples: the profile's (60 in CI, 2000 with 'long')
@given(_chunked_problems(), st.integers(0, 2**32 - 1))
def test_fuzz_against_the_loop(case, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, *case["S"])).astype(case["dtype"])
    w = rng.standard_normal((3, *case["T"])).astype(case["dtype"])
    kw = {k: case[k] for k in ("mode", "stride", "dilation", "padding")}
    if case["reduce"]:
        kw["reduce"] = case["reduce"]
    call = _lazy(case["chunks"], (case["bank_chunk"], *case["T"]))
    if case["metric"] == "dot":
        check(x, w, method="auto", call=call, **kw)
    else:
        check_metric(x + 2, w, metric=case["metric"], method="auto", call=call, **kw)
