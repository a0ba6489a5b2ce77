"""mode=(lo, hi) per sliding axis (TF's and torch's padding amounts), origin= (ndimage's
window shift) and the refusal of scipy.ndimage's mode names in padding=: against
numpy.pad + 'valid', and against the named modes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import batchconv as bc

PADDINGS = ["constant", "reflect", "symmetric", "edge", "wrap"]


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    padding=st.sampled_from(PADDINGS),
    metric=st.sampled_from(["dot", "ssd", "ncc"]),
    method=st.sampled_from(["direct", "fft"]),
)
def test_padding_amounts_equal_numpy_pad_then_valid(data, padding, metric, method):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    ndim = data.draw(st.sampled_from([1, 2]))
    n = [data.draw(st.integers(3, 12)) for _ in range(ndim)]
    m = [data.draw(st.integers(1, 4)) for _ in range(ndim)]
    dil = data.draw(st.integers(1, 2))
    stride = data.draw(st.integers(1, 3))
    pads = []
    for k, size in zip(m, n, strict=True):
        lo, hi = data.draw(st.integers(0, 5)), data.draw(st.integers(0, 5))
        if padding != "constant":  # numpy.pad's reflect needs one sample at least
            lo, hi = min(lo, size - 1), min(hi, size - 1)
        if size + lo + hi < (k - 1) * dil + 1:
            hi += (k - 1) * dil + 1 - size - lo - hi
            if padding != "constant" and hi > size - 1:
                return
        pads.append((lo, hi))
    x = rng.standard_normal((2, *n))
    w = rng.standard_normal((3, *m))
    kw = {"constant_values": 1.5} if padding == "constant" else {}
    xp = np.pad(x, [(0, 0), *pads], mode=padding, **kw)
    cval = 1.5 if padding == "constant" else 0.0
    mode = tuple(pads) if ndim > 1 or data.draw(st.booleans()) else pads[0]
    letters = "hw"[-ndim:]  # (named: a last axis of 3 or 4 samples looks like channels)
    spec = f"n{letters},k{letters}->nk{letters}|{letters}"
    common = dict(spec=spec, metric=metric, method=method, stride=stride, dilation=dil)
    got = bc.correlate(x, w, mode=mode, padding=padding, cval=cval, **common)
    want = bc.correlate(xp, w, **common)
    np.testing.assert_allclose(got, want, atol=1e-10)


@pytest.mark.parametrize("origin", [-2, -1, 0, 1])
@pytest.mark.parametrize("m", [4, 5])
def test_origin_moves_the_windows(origin, m):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 30)), rng.standard_normal((3, m))
    got = bc.correlate(x, w, mode="same", origin=origin, padding="edge")
    lo = m // 2 + origin
    want = bc.correlate(x, w, mode=(lo, m - 1 - lo), padding="edge")
    np.testing.assert_allclose(got, want, atol=1e-12)
    if origin > 0:  # windows start earlier: the output moves right
        plain = bc.correlate(x, w, mode="same", padding="edge")
        np.testing.assert_allclose(got[..., origin + 5 : -5], plain[..., 5 : -5 - origin])


def test_padding_amounts_on_every_array_type():
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 16, 16)), rng.standard_normal((4, 3, 3, 3))
    spec = "nchw,kchw->nkhw|hw"
    want = bc.correlate(x, w, spec, mode=((1, 2), (0, 1)), stride=2)
    torch = pytest.importorskip("torch")
    got = bc.correlate(
        torch.from_numpy(x),
        torch.from_numpy(w),
        spec,
        mode=((1, 2), (0, 1)),
        stride=2,
        method="torch_direct",
    )
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)
    da = pytest.importorskip("dask.array")
    lazy = bc.correlate(
        da.from_array(x, chunks=(1, 3, 8, 8)), w, spec, mode=((1, 2), (0, 1)), stride=2
    )
    np.testing.assert_allclose(lazy.compute(), want, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"padding": "mirror", "mode": "same"}, "where it is 'reflect'"),
        ({"padding": "nearest", "mode": "same"}, "where it is 'edge'"),
        ({"padding": "grid-wrap", "mode": "same"}, "where it is 'wrap'"),
        ({"mode": (1, 2, 3)}, "padding amounts"),
        ({"mode": ((1, 2), (0, 0))}, "one per sliding axis"),
        ({"mode": (-1, 2)}, "at least 0"),
        ({"mode": (0, 0), "stride": 1}, None),
        ({"mode": "valid", "origin": -1}, "origin must be at least 0"),
        ({"mode": "same", "origin": 1.5}, "origin must be an int"),
    ],
)
def test_errors(kwargs, message):
    x, w = np.ones((1, 10)), np.ones((1, 3))
    if message is None:
        assert bc.correlate(x, w, **kwargs).shape == (1, 1, 8)
        return
    with pytest.raises(ValueError, match=message):
        bc.correlate(x, w, **kwargs)


def test_too_little_padding():
    with pytest.raises(ValueError, match="shorter than the"):
        bc.correlate(np.ones((1, 3)), np.ones((1, 7)), mode=(1, 1))


def test_explain_names_the_amounts():
    text = bc.plan(np.ones((2, 20)), np.ones((3, 4)), mode=(1, 2), origin=1).explain()
    assert "mode=(1, 2), origin=(1,)" in text
