"""Plans are values (issue #9's groundwork): they pickle with the standard library, and an
unpickled plan gives the same result, in this process and in a fresh worker process
(``spawn``: nothing inherited)."""

from __future__ import annotations

import multiprocessing as mp
import pickle

import numpy as np
import pytest

import batchconv as bc

CASES = [
    ("dot", "direct"),
    ("dot", "fft"),
    ("ssd", "fft"),
    ("ncc", "direct"),
    ("cosine", "fft"),
    ("sad", "direct"),
]


def _run(blob: bytes, x: np.ndarray) -> np.ndarray:
    return pickle.loads(blob)(x)


@pytest.mark.parametrize("metric,method", CASES)
def test_plans_pickle(metric, method, rng):
    x = rng.standard_normal((3, 2, 20, 18)).astype(np.float32)
    w = rng.standard_normal((4, 2, 5, 4)).astype(np.float32)
    spec, reduce = ("nchw,kchw->nk|hw", "max") if metric == "dot" else ("nchw,kchw->nkhw|hw", None)
    p = bc.plan(x, w, spec, metric=metric, method=method, mode="same", reduce=reduce)
    blob = pickle.dumps(p)
    q = pickle.loads(blob)
    np.testing.assert_array_equal(q(x), p(x))
    assert q.method == p.method and q.problem == p.problem


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_plans_pickle_after_use(method, rng):
    """A plan that has run keeps per-layout shortcuts (modules, bound calls): they are
    left out of the pickle and relearned."""
    x, w = rng.standard_normal((5, 30, 30)), rng.standard_normal((7, 7))
    p = bc.plan(x, w, method=method)
    first = p(x)
    assert p._shortcuts
    q = pickle.loads(pickle.dumps(p))
    np.testing.assert_array_equal(q(x), first)
    np.testing.assert_array_equal(q(x), first)  # the relearned shortcut


def test_unpickled_plan_runs_in_a_spawned_worker(rng):
    x = rng.standard_normal((4, 30, 30))
    w = rng.standard_normal((3, 7, 7))
    p = bc.plan(x, w, metric="ncc", method="fft")
    with mp.get_context("spawn").Pool(1) as pool:
        got = pool.apply(_run, (pickle.dumps(p), x))
    np.testing.assert_array_equal(got, p(x))


def test_plans_pickle_with_cloudpickle(rng):
    """Dask's distributed scheduler ships objects with cloudpickle."""
    cloudpickle = pytest.importorskip("cloudpickle")
    x = rng.standard_normal((3, 24, 20)).astype(np.float32)
    w = rng.standard_normal((4, 5, 4)).astype(np.float32)
    for metric in ("dot", "ncc", "sad"):
        p = bc.plan(x, w, metric=metric, mode="same")
        q = cloudpickle.loads(cloudpickle.dumps(p))
        np.testing.assert_array_equal(q(x), p(x))
