"""progress=: a callable told of each block, or a bar on stderr; an exception from it
aborts the call."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rand

import batchconv as bc


def recorder():
    seen: list[tuple[int, int]] = []
    return seen, lambda done, total: seen.append((done, total))


@pytest.mark.parametrize("reduce", [None, "max", bc.peaks(2)])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_every_block_is_reported_once(reduce, method, rng):
    x, w = rand(rng, (16, 2000), np.float64), rand(rng, (12, 9), np.float64)
    want = bc.correlate(x, w, method=method, reduce=reduce)
    seen, f = recorder()
    p = bc.plan(x, w, method=method, reduce=reduce, memory="500KB")
    y = p(x, progress=f)
    blocks = -(-16 // p.chunk[0]) * -(-12 // p.chunk[1])
    assert blocks > 1 or (method, reduce) == ("direct", None)  # (direct: tiles inside)
    assert seen == [(i, blocks) for i in range(1, blocks + 1)]
    pairs = zip(y, want, strict=True) if isinstance(y, bc.PeakResult) else [(y, want)]
    for got, ref in pairs:  # (other blocks: the same values within rounding)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_one_block_calls_and_correlate(rng):
    x, w = rand(rng, (2, 50), np.float64), rand(rng, (3, 5), np.float64)
    for call in (
        lambda f: bc.correlate(x, w, progress=f),
        lambda f: bc.convolve(x, w, progress=f),
        lambda f: bc.plan(x, w)(x, progress=f),
        lambda f: bc.plan(x, w).bind(x)(x, progress=f),
    ):
        for _ in range(2):  # (the second call takes the remembered one-call path)
            seen, f = recorder()
            call(f)
            assert seen == [(1, 1)]


def test_an_exception_aborts_the_call(rng):
    x, w = rand(rng, (16, 2000), np.float64), rand(rng, (12, 9), np.float64)

    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        bc.correlate(x, w, method="fft", memory="500KB", progress=stop)


def test_a_bar_on_stderr(rng, capsys):
    x, w = rand(rng, (16, 2000), np.float64), rand(rng, (12, 9), np.float64)
    want = bc.correlate(x, w, method="fft")
    y = bc.correlate(x, w, method="fft", memory="500KB", progress=True)
    np.testing.assert_array_equal(y, want)
    err = capsys.readouterr().err
    assert "batchconv" in err and "block" in err


def test_torch_tensors(rng):
    torch = pytest.importorskip("torch")
    x, w = rand(rng, (8, 200), np.float64), rand(rng, (6, 9), np.float64)
    seen, f = recorder()
    p = bc.plan(torch.from_numpy(x), torch.from_numpy(w), method="torch_fft", memory="40KB")
    y = p(torch.from_numpy(x), progress=f)
    np.testing.assert_allclose(y.numpy(), bc.correlate(x, w), rtol=1e-10, atol=1e-10)
    assert seen and seen[-1][0] == seen[-1][1] == len(seen)


def test_array_api_strict(rng):
    xps = pytest.importorskip("array_api_strict")
    x, w = rand(rng, (8, 200), np.float64), rand(rng, (6, 9), np.float64)
    seen, f = recorder()
    y = bc.correlate(xps.asarray(x), xps.asarray(w), memory="40KB", progress=f)
    np.testing.assert_allclose(np.asarray(y), bc.correlate(x, w), rtol=1e-10, atol=1e-10)
    assert len(seen) > 1 and seen[-1][0] == seen[-1][1] == len(seen)


def test_bad_progress_and_dask(rng):
    x, w = rand(rng, (2, 50), np.float64), rand(rng, (3, 5), np.float64)
    with pytest.raises(TypeError, match="progress must be"):
        bc.correlate(x, w, progress="yes")
    da = pytest.importorskip("dask.array")
    with pytest.raises(TypeError, match="Dask"):
        bc.correlate(da.from_array(x), w, progress=True)
