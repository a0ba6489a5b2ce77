"""Bad input gives a ValueError/TypeError whose message names the argument and the sizes."""

from __future__ import annotations

import numpy as np
import pytest

import batchconv as bc

x = np.ones((2, 8, 8))
w = np.ones((3, 3, 3))


@pytest.mark.parametrize(
    "kwargs,exc,needle",
    [
        (dict(mode="circular"), ValueError, "mode must be one of"),
        (dict(padding="zeros", mode="same"), ValueError, "padding must be one of"),
        (
            dict(method="no_such_method"),
            ValueError,
            "method must be 'auto', 'measure' or one of ['direct', 'fft', 'torch_direct'",
        ),
        (dict(metric="l7"), ValueError, "metric must be one of"),
        (dict(metric="sad", method="fft"), ValueError, "metric 'sad' has no 'fft' form"),
        (dict(metric="dot", mode="same", cval=1j), ValueError, "cval=1j is complex"),
        (dict(reduce="median"), ValueError, "reduce must be None"),
        (dict(stride=0), ValueError, "axis 'h' got 0"),
        (dict(stride=(1, 2, 3)), ValueError, "stride has 3 values but there are 2 sliding axes"),
        (dict(dilation=1.5), ValueError, "dilation must be a positive int"),
        (dict(memory="lots"), ValueError, "memory must be a byte count"),
        (dict(memory=-5), ValueError, "memory must be a positive"),
        (dict(workers=0), ValueError, "workers must be"),
    ],
)
def test_bad_options(kwargs, exc, needle):
    with pytest.raises(exc) as e:
        bc.correlate(x, w, **kwargs)
    assert needle in str(e.value)


def test_kernel_larger_than_input_in_valid():
    with pytest.raises(ValueError, match=r"axis 'h': input 8, kernel 9"):
        bc.correlate(x, np.ones((1, 9, 3)))
    with pytest.raises(ValueError, match="extent 9"):
        bc.correlate(x, np.ones((1, 5, 3)), dilation=2)


def test_mismatched_summed_and_paired_axes():
    with pytest.raises(ValueError, match="summed axis 'c' .* size 3 in x but 4 in w"):
        bc.correlate(np.ones((2, 3, 8, 8)), np.ones((5, 4, 3, 3)), "nchw,kchw->nkhw|hw")
    with pytest.raises(ValueError, match="paired axis 'c' .* size 3 in x but 2 in w"):
        bc.correlate(np.ones((2, 3, 8, 8)), np.ones((2, 3, 3)), "nchw,chw->nchw|hw")


def test_rank_mismatch_with_spec_and_default():
    with pytest.raises(ValueError, match=r"gives x 4 axes \('nchw'\) but x has shape \(2, 8, 8\)"):
        bc.correlate(x, w, "nchw,kchw->nkhw|hw")
    with pytest.raises(ValueError, match="Give a spec"):
        bc.correlate(x, np.ones(3))
    with pytest.raises(ValueError, match="Give a spec"):
        bc.correlate(np.ones(5), np.ones(3))


@pytest.mark.parametrize(
    "bad", [np.ones((2, 8, 8), bool), np.array([["a"]]), np.empty((2, 3), object)]
)
def test_bad_dtypes(bad):
    with pytest.raises(TypeError, match="accepts integer, float"):
        bc.correlate(bad, np.ones(bad.shape[1:], np.float64) if bad.ndim > 1 else w)


def test_extended_precision_rejected():
    if np.dtype(np.longdouble).itemsize <= 8:
        pytest.skip("longdouble is float64 here")
    with pytest.raises(TypeError, match="extended precision"):
        bc.correlate(x.astype(np.longdouble), w)


def test_convolve_with_a_metric():
    with pytest.raises(ValueError, match="convolve computes metric 'dot' only"):
        bc.convolve(x, w, metric="ssd")


def test_reduce_needs_a_reduced_axis():
    with pytest.raises(ValueError, match="keeps every sliding axis"):
        bc.correlate(x, w, "nhw,khw->nkhw|hw", reduce="max")


def test_max_of_complex():
    with pytest.raises(TypeError, match="needs real data"):
        bc.correlate(x + 0j, w, reduce="max")


def test_plan_called_with_wrong_shape_or_dtype():
    p = bc.plan(((2, 8, 8), np.float32), w.astype(np.float32))
    with pytest.raises(ValueError, match=r"made for x of shape \(2, 8, 8\)"):
        p(np.ones((2, 9, 8), np.float32))
    with pytest.raises(TypeError, match="make a new plan"):
        p(np.ones((2, 8, 8), np.complex128))


def test_memory_strings():
    from batchconv.planner import parse_memory

    assert parse_memory("2GB") == 2 * 10**9
    assert parse_memory("512MiB") == 512 * 2**20
    assert parse_memory("1.5e6") == 1_500_000
    assert parse_memory(1000) == 1000


def test_result_too_large_raises_memory_error_before_allocating():
    x = np.broadcast_to(np.zeros(1), (200_000, 200_000))  # a view: no memory
    with pytest.raises(MemoryError, match=r"needs .* GiB but .* are available"):
        bc.correlate(x, np.ones(3), method="direct")


def test_budget_too_small_for_any_block_raises_memory_error():
    with pytest.raises(MemoryError, match=r"no method fits a memory budget of 1000 B"):
        bc.plan(((4, 64, 64), np.float64), np.ones((2, 5, 5)), memory=1000)


def test_auto_skips_a_method_over_the_budget():
    # whole-item FFT buffers for one 400x400 item exceed 1 MB; direct tiles shrink to fit
    p = bc.plan(((1, 400, 400), np.float64), np.ones((1, 41, 41)), memory="1MB")
    assert p.method == "direct"
    assert "over the memory budget" in p.explain()
    assert "within the memory budget" in p.explain()
    with pytest.raises(MemoryError, match="no method fits"):
        bc.plan(((1, 400, 400), np.float64), np.ones((1, 41, 41)), memory="1MB", method="fft")


@pytest.mark.parametrize(
    "bad, name, hint",
    [
        (np.zeros((2, 8), bool), "x", "Convert booleans with x.astype"),
        (np.array([["a"] * 8] * 2), "x", "batchconv accepts integer"),
    ],
)
def test_dtype_errors_name_the_argument(bad, name, hint):
    with pytest.raises(TypeError, match=hint):
        bc.correlate(bad, np.ones(3))
    with pytest.raises(TypeError, match="^w has dtype"):
        bc.correlate(np.ones((2, 8)), bad[0, :3])


def test_cval_rules():
    x = np.ones((1, 8))
    with pytest.raises(ValueError, match="applies to padding='constant' only"):
        bc.correlate(x, np.ones(3), mode="same", padding="reflect", cval=2.0)
    with pytest.raises(ValueError, match="cval=1j is complex but x and w are real"):
        bc.correlate(x, np.ones(3), mode="same", cval=1j)
    got = bc.correlate(x + 0j, np.ones(3), mode="same", cval=1j)
    assert got[0, 0] == 2 + 1j


@pytest.mark.parametrize(
    "spec, xs, ws, match",
    [
        (
            "nchw,kchw->nkhw|hw",
            (2, 3, 8, 8),
            (4, 2, 3, 3),
            r"summed axis 'c' .* has size 3 in x but 2 in w; they must match",
        ),
        (
            "nphw,phw->nphw|hw",
            (2, 3, 8, 8),
            (4, 3, 3),
            r"paired axis 'p' .* has size 3 in x but 4 in w; they must match",
        ),
        (
            "nhw,khw->nkhw|hw",
            (2, 8, 8),
            (1, 9, 3),
            r"mode='valid' needs the input at least as long as the \(dilated\) kernel on sliding "
            r"axis 'h': input 8, kernel 9",
        ),
    ],
)
def test_size_mismatches_name_the_axis_and_sizes(spec, xs, ws, match):
    with pytest.raises(ValueError, match=match):
        bc.correlate(np.ones(xs), np.ones(ws), spec)


# issue: internal exceptions where a clear error naming the argument was due


@pytest.mark.parametrize(
    "kwargs,exc,needle",
    [
        (dict(mode="same", dilation=10**18), ValueError, "dilation 1000000000000000000 on"),
        (dict(mode="full", dilation=10**12, method="fft"), ValueError, "use a smaller dilation"),
        (dict(mode="same", cval=[1, 2]), TypeError, "cval must be one number"),
        (dict(mode="same", cval="a"), TypeError, "cval must be one number"),
        (dict(mode="same", cval=None), TypeError, "cval must be one number"),
    ],
)
def test_bad_geometry_and_cval(kwargs, exc, needle):
    with pytest.raises(exc) as e:
        bc.correlate(np.ones((2, 10)), np.ones(3), **kwargs)
    assert needle in str(e.value)


@pytest.mark.parametrize("cval", [np.array(2.0), np.float32(2.0), 2])
def test_cval_numpy_scalars_are_numbers(cval):
    got = bc.correlate(np.ones((1, 4)), np.ones(3), mode="same", cval=cval)
    np.testing.assert_array_equal(got, [[4.0, 3.0, 3.0, 4.0]])


def test_plan_call_rejects_booleans_like_correlate():
    xb = np.ones((2, 8)) > 0
    p = bc.plan(np.ones((2, 8)), np.ones(3))
    for f in (lambda: bc.correlate(xb, np.ones(3)), lambda: p(xb)):
        with pytest.raises(TypeError, match="x has dtype bool"):
            f()


def test_nested_tuples_of_numbers_are_data_not_a_signature():
    data = ((1.0, 2.0, 3.0), (4.0, 5.0, 6.0))
    p = bc.plan(data, np.ones(2))
    assert p.problem.x_shape == (2, 3)
    np.testing.assert_array_equal(p(np.array(data)), [[3.0, 5.0], [9.0, 11.0]])
    assert bc.plan(((2, 3), np.float32), np.ones(2)).problem.x_shape == (2, 3)
    assert bc.plan(((2, 3), "float64"), np.ones(2)).problem.dtype == np.float64


def test_masked_arrays_are_refused_not_unmasked():
    m = np.ma.masked_array(np.ones((2, 8)), mask=np.eye(2, 8, dtype=bool))
    with pytest.raises(TypeError, match="x is a NumPy masked array"):
        bc.correlate(m, np.ones(3))
    with pytest.raises(TypeError, match="x is a NumPy masked array"):
        bc.plan(np.ones((2, 8)), np.ones(3))(m)
    with pytest.raises(TypeError, match="w is a NumPy masked array"):
        bc.correlate(np.ones((2, 8)), np.ma.masked_array(np.ones(3), [0, 1, 0]))


def test_many_sliding_axes_with_a_nan_under_fft():
    """11 sliding axes and a NaN: the FFT plan's exact redo of the windows over the NaN
    named its taps with 10 letters and failed inside np.einsum."""
    rng = np.random.default_rng(0)
    x, w = rng.random((1, *([2] * 11))), rng.random([1] * 11)
    x.flat[3] = np.nan
    got, ref = bc.correlate(x, w, method="fft"), bc.correlate(x, w, method="direct")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12, equal_nan=True)  # S <= 1
