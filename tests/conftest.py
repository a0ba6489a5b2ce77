import os
import sys

import numpy as np
import pytest
from hypothesis import settings

sys.path.insert(0, os.path.dirname(__file__))

settings.register_profile("ci", max_examples=60, deadline=None)
settings.register_profile("long", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# BATCHCONV_TEST_SUBSAMPLE=n: of each parametrised test, run every n-th case by position
# (so that each parameter's values take turns; every test function runs at least once);
# tests/test_array_api.py reruns whole suites on other array libraries that way
_SUBSAMPLE = int(os.environ.get("BATCHCONV_TEST_SUBSAMPLE", "1"))


def pytest_collection_modifyitems(config, items):
    if _SUBSAMPLE <= 1:
        return
    seen: dict = {}
    kept, dropped = [], []
    for item in items:
        group = (item.module.__name__, getattr(item, "originalname", item.name))
        n = seen[group] = seen.get(group, -1) + 1
        (kept if n % _SUBSAMPLE == 0 else dropped).append(item)
    config.hook.pytest_deselected(items=dropped)
    items[:] = kept


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def rand(rng, shape, dtype):
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        return rng.integers(-9 if dt.kind == "i" else 0, 10, size=shape).astype(dt)
    if dt.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dt)
    return rng.standard_normal(shape).astype(dt)


@pytest.fixture(autouse=True, scope="session")
def _numpy_methods_for_numpy_arrays():
    """NumPy arrays go to the NumPy methods in the tests (every thread) whether or not a
    test module has imported torch, which lets torch's CPU methods join
    (``bc.use_torch``); tests/test_torch_for_numpy.py switches it on."""
    from batchconv import tensors

    old, tensors.USE_TORCH = tensors.USE_TORCH, False
    yield
    tensors.USE_TORCH = old
