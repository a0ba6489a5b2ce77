"""Issue 20, findings 3, 7 and 8: what threads leave behind. A finished thread's work
buffers go with it; overlapping calls give BLAS its own thread count back when the last
ends; ``workers`` is capped at the cores and all calls share one bounded pool."""

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import batchconv as bc
from batchconv import xp
from batchconv.xp import get_workers, parallel_for, set_workers

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _run_python(code: str, timeout: float = 120) -> str:
    """Run ``code`` in a fresh interpreter (its memory and threads are its own)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# --- finding 3: work buffers of finished threads ---------------------------------------


def test_a_finished_threads_work_buffers_are_released():
    x = np.random.default_rng(0).standard_normal((2, 64, 64))
    before = len(xp._registry)
    t = threading.Thread(target=lambda: bc.correlate(x, np.ones((2, 5, 5)), method="fft"))
    t.start()
    t.join()
    assert len(xp._registry) == before


def test_clear_work_buffers_still_reaches_live_threads():
    def use():
        xp.work_buffer((1000,), np.float64, "test-slot")
        used.set()
        cleared.wait(10)
        found.append(dict(xp._work.bufs))

    used, cleared, found = threading.Event(), threading.Event(), []
    t = threading.Thread(target=use)
    t.start()
    used.wait(10)
    xp.clear_work_buffers()
    cleared.set()
    t.join()
    assert found == [{}]


def test_short_lived_threads_leave_rss_as_one_thread_does():
    """100 threads calling correlate one after another (a thread-per-request server)
    leave RSS within 50 MiB of one thread making the same calls. Measured in a
    subprocess, so that other tests' memory does not count."""
    out = _run_python(
        """
        import os, threading
        import numpy as np
        import batchconv as bc

        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

        rng = np.random.default_rng(0)
        x, w = rng.standard_normal((2, 128, 128)), rng.standard_normal((2, 9, 9))

        def calls():
            bc.correlate(x, w, method="fft")
            bc.correlate(x, w, metric="ncc")

        one = threading.Thread(target=lambda: [calls() for _ in range(100)])
        one.start()
        one.join()
        base = rss()
        for _ in range(100):
            t = threading.Thread(target=calls)
            t.start()
            t.join()
        print((rss() - base) / 2**20)
        """
    )
    growth = float(out.split()[-1])
    assert growth < 50, f"100 finished threads left {growth:.0f} MiB more than one thread"


# --- finding 7: the BLAS limit after overlapping calls ---------------------------------


def _blas_limits(threadpoolctl) -> list[int]:
    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


@pytest.fixture
def blas():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if CORES < 2:
        pytest.skip("one core: workers=1 sets no BLAS limit")
    info = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    original = [i["num_threads"] for i in info]
    if not original or max(original) < 2:
        pytest.skip("BLAS runs one thread already")
    yield threadpoolctl, original
    if _blas_limits(threadpoolctl) != original:  # a failure here: not for the next tests
        threadpoolctl.threadpool_limits(
            [{"filepath": i["filepath"], "num_threads": i["num_threads"]} for i in info]
        )


def test_blas_limit_is_back_after_blocks_that_end_out_of_order(blas):
    """8 threads open a workers=1 block one after another and close them in the same
    order (overlapping, not nested): BLAS holds one thread while any is open and has
    its own setting back after the last."""
    threadpoolctl, original = blas
    n = 8
    entered = [threading.Event() for _ in range(n)]
    leave = [threading.Event() for _ in range(n)]
    left = [threading.Event() for _ in range(n)]
    seen = []

    def block(i):
        with set_workers(1), xp.blas_threads():
            entered[i].set()
            leave[i].wait(10)
        left[i].set()

    threads = [threading.Thread(target=block, args=(i,)) for i in range(n)]
    for i, t in enumerate(threads):
        t.start()
        entered[i].wait(10)
    for i in range(n):
        seen.append(_blas_limits(threadpoolctl))
        leave[i].set()
        left[i].wait(10)
    for t in threads:
        t.join()
    assert all(s == [1] * len(original) for s in seen)
    assert _blas_limits(threadpoolctl) == original


def test_blas_limit_is_back_after_overlapping_correlate_calls(blas):
    threadpoolctl, original = blas
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((4, 20, 20, 3)), rng.standard_normal((3, 3, 3, 5))
    expected = bc.correlate(x, w, "nhwc,hwck->nhwk|hw", method="direct")
    start = threading.Barrier(8)
    results = []

    def run():
        start.wait(10)
        for _ in range(50):
            y = bc.correlate(x, w, "nhwc,hwck->nhwk|hw", method="direct", workers=1)
        results.append(y)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    for y in results:
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    assert _blas_limits(threadpoolctl) == original


def _child_blas_limits() -> list[int]:
    import threadpoolctl

    return _blas_limits(threadpoolctl)


@pytest.mark.skipif(sys.platform != "linux", reason="the fork start method")
def test_a_child_forked_during_a_limit_gets_the_blas_setting_back(blas):
    import multiprocessing as mp

    threadpoolctl, original = blas
    entered, leave = threading.Event(), threading.Event()

    def block():
        with set_workers(1), xp.blas_threads():
            entered.set()
            leave.wait(10)

    t = threading.Thread(target=block)
    t.start()
    try:
        entered.wait(10)
        assert _blas_limits(threadpoolctl) == [1] * len(original)
        with mp.get_context("fork").Pool(1) as pool:
            in_child = pool.apply(_child_blas_limits)
    finally:
        leave.set()
        t.join()
    assert in_child == original


# --- finding 8: workers beyond the cores -----------------------------------------------


@pytest.mark.parametrize("workers", [CORES + 1, 10**6])
def test_workers_beyond_the_cores_are_capped(workers):
    with set_workers(workers):
        assert get_workers() == CORES
    with set_workers(1), set_workers(workers):
        assert get_workers() == CORES


def test_huge_workers_give_the_same_result_without_memory_error():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 20, 20)), rng.standard_normal((3, 3))
    for method in ("fft", "direct", "auto"):
        a = bc.correlate(x, w, method=method, workers=10**6)
        b = bc.correlate(x, w, method=method, workers=CORES)
        np.testing.assert_array_equal(a, b)
        huge = bc.plan(x, w, method=method, workers=10**6).explain()
        assert huge == bc.plan(x, w, method=method, workers=CORES).explain()


def test_distinct_worker_counts_share_one_bounded_pool():
    w = np.ones((3, 3))
    x = np.random.default_rng(0).standard_normal((64, 64, 64))
    for k in range(2, 24):
        parallel_for(lambda i: None, range(100), k)
        bc.correlate(x, w, workers=k)
    ours = [t for t in threading.enumerate() if t.name.startswith("batchconv")]
    assert len(ours) <= max(1, CORES - 1)


@pytest.mark.parametrize("workers", [2, 3, 64])
def test_parallel_for_nested_in_the_pool_finishes(workers):
    """A parallel_for inside another one's items (the pool's threads busy) finishes:
    helpers still queued when the caller has taken every item are dropped, not waited
    for. In a subprocess, so that a deadlock fails the test instead of hanging it."""
    out = _run_python(
        f"""
        import threading
        from batchconv.xp import parallel_for

        seen, lock = [], threading.Lock()

        def inner(i):
            with lock:
                seen.append(i)

        parallel_for(lambda j: parallel_for(inner, range(j * 10, j * 10 + 10), {workers}),
                     range(8), {workers})
        print(sorted(seen) == list(range(80)))
        """,
        timeout=60,
    )
    assert out.split()[-1] == "True"


def test_a_cancelled_helper_keeps_nothing_alive():
    """A helper still queued when the caller has done every item is cancelled, but stays
    in the pool's queue until a thread pops it: it must not keep the work's arrays alive
    until then (they were a block's padded copy, counted as freed: a call measured 6.1
    MiB against a 3.8 MiB budget)."""
    import gc
    import weakref

    from batchconv import xp

    pool = xp._shared_pool()
    busy, release = threading.Event(), threading.Event()
    blockers = [pool.submit(lambda: (busy.set(), release.wait(10))) for _ in range(8)]
    busy.wait(10)  # the pool's threads are all waiting (and the queue holds the rest)
    try:
        data = np.zeros(1 << 20)
        gone = weakref.ref(data)

        def work(i, data=data):
            data[i] += 1

        parallel_for(work, range(4), 2)  # the caller does it all; the helper is cancelled
        del work, data
        gc.collect()
        assert gone() is None, "the cancelled helper keeps the work's arrays alive"
    finally:
        release.set()
        for b in blockers:
            b.result(10)
