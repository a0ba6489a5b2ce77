"""Edge cases a library inside other pipelines meets: empty and size-1 axes, odd memory
layouts and byte orders, float16, long signals, several threads at once, forked children,
and size arithmetic past 2**31."""

import multiprocessing as mp
import sys
import threading

import numpy as np
import pytest
from naive import naive_correlate

import batchconv as bc

METHODS = ["direct", "fft"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "xs, ws, out",
    [
        ((0, 10), (3, 3), (0, 3, 8)),  # empty batch
        ((2, 10), (0, 3), (2, 0, 8)),  # empty bank
        ((1, 1, 1), (1, 1, 1), (1, 1, 1, 1)),  # size-1 everything
    ],
)
def test_empty_and_size_one_axes(method, xs, ws, out):
    x, w = np.ones(xs), np.ones(ws)
    y = bc.correlate(x, w, method=method)
    assert y.shape == out
    if y.size:
        np.testing.assert_allclose(y, naive_correlate(x, w))


@pytest.mark.parametrize("method", METHODS)
def test_empty_batch_with_reduce(method):
    y = bc.correlate(np.zeros((0, 12, 12)), np.ones((2, 3, 3)), method=method, reduce="max")
    assert y.shape == (0, 2)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("order", [">", "<"])
def test_byte_orders_and_float16(method, order):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 30)), rng.standard_normal((2, 4))
    y = bc.correlate(x.astype(order + "f8"), w.astype(order + "f8"), method=method)
    np.testing.assert_allclose(y, naive_correlate(x, w), atol=1e-12)
    h = bc.correlate(x.astype(np.float16), w.astype(np.float16), method=method)
    assert h.dtype == np.float32
    ref = naive_correlate(x.astype(np.float16), w.astype(np.float16))
    np.testing.assert_allclose(h, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("bad", [np.float64(3.0), np.ones(5)])
def test_wrong_rank_is_an_error_that_says_what_is_expected(bad):
    with pytest.raises(ValueError, match=r"x must be \(N, \*S\)"):
        bc.correlate(bad, np.ones((2, 3)))


def test_long_signal_short_kernel():
    """10**7 samples against a short kernel: the FFT's overlap-save tiles, within the
    default budget, equal to the direct sum."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 10**7)).astype(np.float32)
    w = rng.standard_normal((9,)).astype(np.float32)
    p = bc.plan(x, w, method="fft")
    assert p.state.tiles is not None
    got = p(x)
    ref = bc.correlate(x[:, :200_000], w, method="direct")
    np.testing.assert_allclose(
        got[:, : ref.shape[1]], ref, rtol=0, atol=1e-5 * 9 * np.abs(x).max() * np.abs(w).max()
    )
    assert got.shape == (1, 10**7 - 8)


@pytest.mark.parametrize("method", METHODS)
def test_many_threads_at_once_give_right_answers(method):
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((3, 40, 40)) for _ in range(8)]
    w = rng.standard_normal((2, 5, 5))
    refs = [naive_correlate(x, w, mode="same") for x in xs]
    results, errors = [None] * 8, []

    def work(i):
        try:
            for _ in range(3):
                results[i] = bc.correlate(xs[i], w, mode="same", method=method, workers=1)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, ref in zip(results, refs):
        np.testing.assert_allclose(got, ref, atol=1e-10)


def _child(q):
    x = np.arange(200.0).reshape(2, 100)
    q.put(bc.correlate(x, np.ones((1, 9)), method="fft").sum())


@pytest.mark.skipif(sys.platform != "linux", reason="the fork start method")
def test_works_in_a_forked_child():
    x = np.arange(200.0).reshape(2, 100)
    expected = bc.correlate(x, np.ones((1, 9)), method="fft").sum()  # parent's pool exists
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(q,))
    proc.start()
    got = q.get(timeout=60)
    proc.join(timeout=60)
    assert proc.exitcode == 0
    assert got == pytest.approx(expected)


def test_size_arithmetic_past_2_31_elements():
    """Shapes, output sizes and byte estimates are Python ints: no overflow for inputs
    of more than 2**31 elements (checked without allocating them)."""
    from batchconv.costs import estimate
    from batchconv.methods import direct, fft
    from batchconv.planner import _block_bytes
    from batchconv.problem import make_problem

    p = make_problem((3, 50_000, 50_000), np.float32, (2, 5, 5), np.float32)
    assert p.B * prod_of(p.S) == 3 * 50_000**2 > 2**31
    assert p.out_shape == (3, 2, 49_996, 49_996)
    assert np.prod(p.out_shape, dtype=object) * 4 > 2**34
    for mod in (direct, fft):
        assert _block_bytes(p, mod, 3, 2, 1 << 30) > 0
    assert estimate(p, "direct") > 0 and estimate(p, "fft") > 0
    x = np.broadcast_to(np.float32(0), (3, 50_000, 50_000))  # no memory behind it
    with pytest.raises(MemoryError, match="needs .* but .* are available"):
        bc.correlate(x, np.ones((2, 5, 5), np.float32), method="direct")


def prod_of(t):
    out = 1
    for v in t:
        out *= v
    return out


def test_large_integers_exact_below_2_53():
    """Window sums up to about 2**48: exact with auto (direct) and with direct; the
    integer reference is computed in Python integers."""
    rng = np.random.default_rng(6)
    x = rng.integers(-(2**22), 2**22, size=(2, 12, 12), dtype=np.int64)
    w = rng.integers(-(2**22), 2**22, size=(3, 3), dtype=np.int64)
    ref = np.zeros((2, 10, 10), dtype=object)
    for n in range(2):
        for i in range(10):
            for j in range(10):
                ref[n, i, j] = sum(
                    int(x[n, i + a, j + b]) * int(w[a, b]) for a in range(3) for b in range(3)
                )
    for method in ("auto", "direct"):
        got = bc.correlate(x, w, method=method)
        assert got.dtype == np.float64
        assert (got.astype(np.int64) == ref.astype(np.int64)).all()


def test_empty_summed_axis_gives_zeros():
    """No channels: every window sums nothing (shift-and-add writes its first product
    instead of adding it, so the no-tap case must still be zeroed)."""
    for method in ("direct", "fft"):
        y = bc.correlate(np.ones((2, 0, 10)), np.ones((3, 0, 3)), "ncl,kcl->nkl|l", method=method)
        assert y.shape == (2, 3, 8) and (y == 0).all()
        y = bc.correlate(np.ones((2, 0, 10)), np.ones((0, 3)), "ncl,cl->nl|l", method=method)
        assert y.shape == (2, 8) and (y == 0).all()


@pytest.mark.parametrize("numba", [True, False])
@pytest.mark.parametrize("method", ["direct", "fft", "winograd"])
@pytest.mark.parametrize(
    "xs, ws, spec",
    [
        ((2, 8, 8, 0), (3, 3, 0, 4), "nhwc,hwck->nhwk|hw"),  # no channels
        ((2, 8, 8, 0), (3, 3, 0, 32), "nhwc,hwck->nhwk|hw"),
        ((2, 8, 8, 3), (3, 3, 3, 0), "nhwc,hwck->nhwk|hw"),  # no filters
        ((2, 8, 8, 32), (3, 3, 32, 0), "nhwc,hwck->nhwk|hw"),
        ((2, 0, 3, 8, 8), (4, 0, 3, 3), "npchw,kphw->nkphw|hw"),  # no pairs
        ((2, 10, 0), (3, 0, 2), "nlc,lck->nlk|l"),
    ],
)
def test_empty_channels_filters_and_pairs_with_a_bank(xs, ws, spec, method, numba):
    """Empty summed, bank or paired axes with 3x3 filters (where the direct method's GEMM
    and Winograd apply): zeros or an empty result, not a reshape error when the filters
    are prepared (Winograd for all three, the direct GEMM with no pairs)."""
    x, w = np.ones(xs, np.float32), np.ones(ws, np.float32)
    with bc.use_numba(numba):
        for mode in ("valid", "same"):
            y = bc.correlate(x, w, spec, method=method, mode=mode)
            ref = bc.correlate(x.astype(np.float64), w.astype(np.float64), spec, mode=mode)
            assert y.shape == ref.shape and (y == 0).all()


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
def test_empty_kernel_axis_gives_an_empty_result(mode, method):
    """A kernel axis of length 0 has no windows in any mode (it crashed in 'full')."""
    y = bc.correlate(np.zeros((2, 12, 10)), np.ones((3, 0, 3)), mode=mode, method=method)
    assert y.shape == (2, 3, 0, {"valid": 8, "same": 10, "full": 12}[mode])


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_a_reduce_callback_may_call_batchconv(method, rng):
    """A callable reduce runs while its block may sit in this thread's work buffers; a
    batchconv call made from it must not overwrite them."""
    x, w = rng.standard_normal((3, 64, 64)), rng.standard_normal((2, 15, 15))

    def nested_sum(block, axis):
        bc.correlate(
            rng.standard_normal((1, 24, 24)), rng.standard_normal((1, 5, 5)), method=method
        )  # smaller: it would fit in the buffers in use
        return block.sum(axis=axis)

    got = bc.correlate(x, w, "nhw,khw->nk|hw", method=method, reduce=nested_sum)
    np.testing.assert_array_equal(
        got, bc.correlate(x, w, "nhw,khw->nk|hw", method=method, reduce="sum")
    )
