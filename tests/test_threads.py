"""The thread layer: parallel_for runs every item once and re-raises errors; set_workers
scopes the thread count and plans honour an enclosing setting."""

import os
import threading

import numpy as np
import pytest

import batchconv as bc
from batchconv import xp
from batchconv.xp import get_workers, parallel_for, set_workers


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_parallel_for_runs_every_item_once(workers):
    seen, lock = [], threading.Lock()

    def f(i):
        with lock:
            seen.append(i)

    parallel_for(f, range(50), workers)
    assert sorted(seen) == list(range(50))


@pytest.mark.parametrize("workers", [1, 2])
def test_parallel_for_takes_a_counted_generator_one_item_at_a_time(workers):
    """With ``count``, a generator's items are made as the threads take them, never
    listed first (a tight budget's tiles can outnumber what a list of them may take)."""
    made, first_seen, lock = [0], [], threading.Lock()

    def items():
        for i in range(40):
            made[0] += 1
            yield i

    def f(i):
        with lock:
            if not first_seen:
                first_seen.append(made[0])

    parallel_for(f, items(), workers, count=40)
    assert made[0] == 40
    assert first_seen[0] <= workers  # listed first, it would be 40


def test_parallel_for_stops_its_helpers_when_a_generator_raises():
    """An error raised by the items (a generator, taken one at a time) reaches the
    caller once no helper is still running ``fn``: the caller's item returns first and
    meets the error while the helper's item still runs."""
    import time

    running, lock = [0], threading.Lock()
    helper_busy = threading.Event()

    def items():
        yield from range(2)
        raise ZeroDivisionError("item 2")

    def f(i):
        with lock:
            running[0] += 1
        if threading.current_thread() is threading.main_thread():
            helper_busy.wait(5)
        else:
            helper_busy.set()
            time.sleep(0.2)
        with lock:
            running[0] -= 1

    with pytest.raises(ZeroDivisionError, match="item 2"):
        parallel_for(f, items(), 2, count=10)
    assert running[0] == 0


def test_parallel_for_reraises_the_error():
    def f(i):
        if i == 7:
            raise ZeroDivisionError("item 7")

    with pytest.raises(ZeroDivisionError, match="item 7"):
        parallel_for(f, range(20), 2)


def test_set_workers_none_keeps_the_enclosing_setting():
    with set_workers(1):
        with set_workers(None):
            assert get_workers() == 1
        with set_workers(-1):
            assert get_workers() >= 1
        assert get_workers() == 1


def test_plan_honours_enclosing_workers(monkeypatch):
    from batchconv.methods import fft

    used = []
    real = fft.parallel_for
    monkeypatch.setattr(
        fft,
        "parallel_for",
        lambda fn, items, workers=None: (used.append(workers), real(fn, items, workers)),
    )
    x = np.random.default_rng(0).standard_normal((64, 200, 200))
    with bc.set_workers(1):
        bc.correlate(x, np.ones((5, 5)), method="fft")
    assert used and all(w == 1 for w in used)


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2"])
def test_set_workers_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="workers"):
        with set_workers(bad):
            pass


def test_workers_one_limits_blas_too():
    """Under ``workers=1`` the BLAS libraries batchconv limits run one thread: those
    loaded when it first looked, NumPy's among them (its GEMMs call NumPy's). A BLAS
    loaded later, such as SciPy's own by a later ``import scipy.linalg``, is left alone
    (no batchconv computation calls it); checking every loaded library made this test
    fail whenever another test file imported SciPy's linalg after a first call."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from batchconv.xp import _blas_libs, blas_threads

    numpy_dir = os.path.dirname(np.__file__)  # (a wheel's libraries: numpy.libs beside it)
    with set_workers(1), blas_threads():
        ours = {b.lib.filepath for b in _blas_libs()}
        blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
        assert ours or not blas
        assert all(i["num_threads"] == 1 for i in blas if i["filepath"] in ours)
        assert all(i["filepath"] in ours for i in blas if i["filepath"].startswith(numpy_dir))
    x = np.random.default_rng(0).standard_normal((4, 20, 20, 3))
    w = np.random.default_rng(1).standard_normal((3, 3, 3, 5))
    a = bc.correlate(x, w, "nhwc,hwck->nhwk|hw", method="direct", workers=1)
    b = bc.correlate(x, w, "nhwc,hwck->nhwk|hw", method="direct")
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_set_workers_as_a_plain_call_lasts_until_changed():
    try:
        bc.set_workers(1)
        assert get_workers() == 1
        with bc.set_workers(2):
            assert get_workers() == min(2, xp._cpu_count())  # capped at the cores
        assert get_workers() == 1
    finally:
        bc.set_workers(-1)
    assert get_workers() >= 1


def test_parallel_for_helpers_take_the_callers_workers(monkeypatch):
    """A helper thread sees the caller's set_workers (a nested parallel_for or a chunk
    size computed there follows it), not the process's default."""
    monkeypatch.setattr(xp, "_cpu_count", lambda: 4)
    both = threading.Barrier(2, timeout=10)  # the caller and a helper hold an item each
    seen = {}

    def item(i):
        both.wait()
        seen[threading.current_thread().name] = xp.get_workers()

    with xp.set_workers(3):
        xp.parallel_for(item, range(2))
    assert sorted(seen.values()) == [3, 3], seen
