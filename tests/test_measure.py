"""Measured planning (``measure.py``): ``method="measure"`` anywhere, ``"auto"`` on CUDA
(tests/test_cuda.py): the close candidates are timed once per problem and device, the
fastest wins, the choice is remembered, and the result keeps the accuracy contract."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rand
from helpers import check

import batchconv as bc
from batchconv import measure
from batchconv.problem import make_problem


@pytest.fixture(autouse=True)
def _fresh_choices():
    measure.forget()
    yield
    measure.forget()


def _fake_times(monkeypatch, times: dict[str, float]) -> list[str]:
    """Replace the clock: each method takes ``times[method]``; returns the methods timed."""
    timed = []

    def seconds(plan, x, device, best_so_far=float("inf")):
        timed.append(plan.method)
        plan(x)  # still runs: the sample input must fit the plan
        return times[plan.method]

    monkeypatch.setattr(measure, "_seconds", seconds)
    return timed


def _cands(**seconds):
    from batchconv.planner import Candidate

    return [Candidate(m, s, 0.0, 0, (4, 2)) for m, s in seconds.items()]


def test_measure_picks_the_fastest_timed_and_remembers(monkeypatch, rng):
    # (6x6: a kernel winograd does not take, so that two methods are timed)
    x, w = rand(rng, (6, 40, 40), np.float64), rand(rng, (3, 6, 6), np.float64)
    model = bc.plan(x, w).method
    other = "fft" if model == "direct" else "direct"
    timed = _fake_times(monkeypatch, {model: 2.0, other: 1.0})
    p = bc.plan(x, w, method="measure")
    assert p.method == other and sorted(timed) == ["direct", "fft"]
    assert p.reason.startswith("fastest when timed on the CPU with 4 item(s)")
    assert f"{other} 1e+03 ms" in p.reason and p.reason in p.explain()
    again = bc.plan(x, w, method="measure")  # remembered: nothing timed again
    assert again.method == other and len(timed) == 2 and again.reason == p.reason
    check(x, w, method="measure")


def test_auto_on_numpy_and_cpu_tensors_is_the_model(monkeypatch, rng):
    timed = _fake_times(monkeypatch, {})
    x, w = rand(rng, (4, 30), np.float32), rand(rng, (2, 5), np.float32)
    assert bc.plan(x, w).reason.startswith("lowest estimated time")  # (the model's)
    torch = pytest.importorskip("torch")
    tensors = bc.plan(torch.from_numpy(x), torch.from_numpy(w))
    assert tensors.reason.startswith("lowest estimated time")
    assert timed == []


def test_measure_on_real_clocks_keeps_the_contract(rng):
    for spec, xs, ws, kw in (
        (None, (5, 50), (3, 7), dict(mode="same")),
        ("nchw,kchw->nkhw|hw", (3, 2, 20, 18), (4, 2, 3, 5), dict(stride=2)),
        ("nhw,khw->nk|hw", (3, 20, 18), (2, 4, 5), dict(reduce="max")),
    ):
        check(rand(rng, xs, np.float32), rand(rng, ws, np.float32), spec, method="measure", **kw)


def test_what_is_not_timed(monkeypatch, rng):
    timed = _fake_times(monkeypatch, {"direct": 1.0, "fft": 1.0})
    ints = bc.plan(np.arange(60).reshape(2, 30), np.ones((2, 3), int), method="measure")
    assert ints.method == "direct" and ints.reason == "integer inputs: direct is exact"
    sad = bc.plan(
        rand(rng, (2, 30), np.float64),
        rand(rng, (2, 4), np.float64),
        metric="sad",
        method="measure",
    )  # one candidate: nothing to compare
    assert sad.reason.startswith("lowest estimated time") and timed == []


def test_only_close_estimates_are_timed(monkeypatch, rng):
    """Candidates estimated over 10x slower than the best are not timed, with "measure"
    as with "auto" on CUDA."""
    p = make_problem((4, 64), np.float64, (2, 5), np.float64)
    built = []

    def build(name):
        built.append(name)
        return bc.plan(((4, 64), np.float64), np.ones((2, 5)), method=name)

    _fake_times(monkeypatch, {"direct": 3.0, "fft": 1.0})
    assert measure.timed_choice(p, _cands(direct=1.0, fft=100.0), build, None) is None
    plan, reason = measure.timed_choice(p, _cands(direct=1.0, fft=9.0), build, None)
    assert plan.method == "fft" and built == ["direct", "fft"]
    timed = _fake_times(monkeypatch, {"direct": 1.0, "fft": 1.0})
    x, w = rand(rng, (2, 100_000), np.float64), rand(rng, (1, 8000), np.float64)
    far = bc.plan(x, w, method="measure")  # direct is estimated ~30x slower
    assert timed == [] and far.method == "fft" and far.reason.startswith("lowest estimated time")


def test_a_slow_candidate_is_not_repeated(monkeypatch):
    calls = []
    clock = iter([0.0, 0.001] * 3 + [1.0, 2.0])  # three fast runs, then a 1 s run
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(clock))

    def plan(x):
        calls.append(x)

    assert measure._seconds(plan, 0, None) == pytest.approx(0.001)
    assert len(calls) == 1 + measure.REPEATS  # an untimed warm-up, then the timed runs
    n = len(calls)
    assert measure._seconds(plan, 1, None, best_so_far=0.001) == pytest.approx(1.0)
    assert len(calls) == n + 2  # the warm-up and one timed run


def test_the_warm_up_is_not_timed(monkeypatch):
    """A warm-up's one-off costs (cuFFT plans, compilation) do not count: the first call
    is slow, the timed ones are not."""
    calls = []
    clock = iter([0.0, 0.002] * 3)
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(clock))

    def plan(x):
        calls.append(x)

    assert measure._seconds(plan, 0, None, best_so_far=0.001) == pytest.approx(0.002)
    assert len(calls) == 1 + measure.REPEATS


def test_a_candidate_that_fails_is_skipped(monkeypatch):
    p = make_problem((4, 64), np.float64, (2, 5), np.float64)

    def build(name):
        if name == "fft":
            raise MemoryError("simulated")
        return bc.plan(((4, 64), np.float64), np.ones((2, 5)), method=name)

    plan, reason = measure.timed_choice(p, _cands(direct=1.0, fft=1.0), build, None)
    assert plan.method == "direct" and "fft" not in reason
    with pytest.raises(MemoryError):
        measure.timed_choice(
            make_problem((4, 65), np.float64, (2, 5), np.float64),
            _cands(fft=1.0, x=1.0),
            lambda n: build("fft"),
            None,
        )


def test_the_choice_is_kept_when_the_default_budget_drifts(monkeypatch, rng):
    """The default budget follows the free memory, which moves between calls; the
    remembered choice depends on the chunks it allows, not on its bytes."""
    import itertools

    from batchconv import budget

    free = itertools.count(8_000_000_000, 4096)
    monkeypatch.setattr(budget, "available_memory", lambda: next(free))  # (read there)
    timed = _fake_times(monkeypatch, {"direct": 1.0, "fft": 2.0})
    x, w = rand(rng, (8, 64, 64), np.float32), rand(rng, (4, 9, 9), np.float32)
    for _ in range(3):
        assert bc.plan(x, w, method="measure").method == "direct"
    assert sorted(timed) == ["direct", "fft"]


def test_threads_and_compiled_kernels_are_part_of_the_key(monkeypatch, rng):
    from batchconv import compiled

    timed = _fake_times(monkeypatch, {"direct": 1.0, "fft": 2.0})
    x, w = rand(rng, (8, 64, 64), np.float32), rand(rng, (4, 9, 9), np.float32)
    bc.plan(x, w, method="measure")
    bc.plan(x, w, method="measure", workers=1)
    with bc.set_workers(1):
        bc.plan(x, w, method="measure")  # the same as workers=1: remembered
    monkeypatch.setattr(compiled, "USE_NUMBA", not compiled.USE_NUMBA)
    bc.plan(x, w, method="measure")
    assert len(timed) == 6


def test_threads_planning_the_same_problem_time_it_once(monkeypatch, rng):
    import threading

    timed = _fake_times(monkeypatch, {"direct": 1.0, "fft": 2.0})
    x, w = rand(rng, (8, 64, 64), np.float32), rand(rng, (4, 9, 9), np.float32)
    start = threading.Barrier(4)
    methods = []

    def plan():
        start.wait()
        methods.append(bc.plan(x, w, method="measure").method)

    threads = [threading.Thread(target=plan) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert methods == ["direct"] * 4 and sorted(timed) == ["direct", "fft"]


def test_a_callable_reduce_is_not_timed(monkeypatch, rng):
    timed = _fake_times(monkeypatch, {"direct": 1.0, "fft": 2.0})
    x, w = rand(rng, (4, 40, 40), np.float64), rand(rng, (3, 5, 5), np.float64)
    p = bc.plan(
        x, w, "nhw,khw->nk|hw", method="measure", reduce=lambda block, axis: block.max(axis=axis)
    )
    assert timed == [] and p.reason.startswith("lowest estimated time")


def test_remembered_choices_are_bounded(monkeypatch):
    monkeypatch.setattr(measure, "_REMEMBERED", 3)
    _fake_times(monkeypatch, {"direct": 1.0, "fft": 2.0})
    for n in range(20, 26):
        bc.plan(((4, 400), np.float64), np.ones((2, n)), method="measure")
    assert len(measure._choices) == 3


def test_sample_input_shrinks_the_batch_axes():
    p = make_problem((3, 5, 7, 2, 9), np.float32, (4, 3), np.float32, "abcdh,kh->abcdkh|h")
    x = measure.sample_input(p, None)
    assert x.shape == (3, 1, 1, 1, 9) and x.dtype == np.float32
    q = make_problem((8, 10), np.complex64, (2, 3), np.complex64)
    assert measure.sample_input(q, None).shape == (4, 10)
    assert measure.sample_input(q, None).dtype == np.complex64


def test_measure_with_dask(rng):
    da = pytest.importorskip("dask.array")
    x, w = rand(rng, (6, 40), np.float64), rand(rng, (2, 5), np.float64)
    y = bc.correlate(da.from_array(x, chunks=(3, 40)), w, method="measure").compute()
    np.testing.assert_allclose(y, bc.correlate(x, w, method="direct"), rtol=1e-10, atol=1e-10)
