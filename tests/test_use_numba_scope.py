"""``batchconv.use_numba``: the compiled kernels switched on or off for the calling thread
only, over ``compiled.USE_NUMBA`` (the process's default), restored on leaving the block
(an exception too), nested; plans and correlate's plan cache follow the setting where
the plan is made."""

import threading

import numpy as np
import pytest

import batchconv as bc
from batchconv import api, compiled, xp


@pytest.fixture(autouse=True)
def _fresh_cache():
    bc.clear_plan_cache()
    yield
    bc.clear_plan_cache()


def test_exported():
    assert bc.use_numba is compiled.use_numba
    assert "use_numba" in bc.__all__


def test_block_switches_off_and_back(monkeypatch):
    monkeypatch.setattr(compiled, "USE_NUMBA", True)
    before, count = compiled.enabled(), compiled._switched
    with bc.use_numba(False) as scope:
        assert isinstance(scope, bc.use_numba)
        assert not compiled.numba_switch()
        assert not compiled.enabled()
    assert compiled.numba_switch()
    assert compiled.enabled() == before
    assert compiled._switched == count  # no setting left counted: the fast path is back


def test_restored_on_an_exception(monkeypatch):
    monkeypatch.setattr(compiled, "USE_NUMBA", True)
    before, count = compiled.enabled(), compiled._switched
    with pytest.raises(RuntimeError, match="inside"), bc.use_numba(False):
        assert not compiled.enabled()
        raise RuntimeError("inside")
    assert compiled.numba_switch()
    assert compiled.enabled() == before
    assert compiled._switched == count


def test_blocks_nest_over_the_default(monkeypatch):
    monkeypatch.setattr(compiled, "USE_NUMBA", False)
    assert not compiled.numba_switch()
    with bc.use_numba(True):
        assert compiled.numba_switch()
        with bc.use_numba(False):
            assert not compiled.numba_switch()
            with bc.use_numba(None):  # keeps the current setting
                assert not compiled.numba_switch()
            assert not compiled.numba_switch()
        assert compiled.numba_switch()
    assert not compiled.numba_switch()
    # the default, assigned inside a block, is what the thread finds on leaving it
    with bc.use_numba(False):
        monkeypatch.setattr(compiled, "USE_NUMBA", True)
        assert not compiled.numba_switch()
    assert compiled.numba_switch()


def test_leaving_a_block_twice_counts_it_once():
    count = compiled._switched
    scope = bc.use_numba(False)
    with scope:
        pass
    scope.__exit__(None, None, None)
    assert compiled._switched == count


def test_only_bools():
    with pytest.raises(TypeError, match="True, False or None"):
        bc.use_numba(0)
    with pytest.raises(TypeError, match="True, False or None"):
        bc.use_numba("off")


def test_other_threads_keep_their_setting(monkeypatch):
    monkeypatch.setattr(compiled, "USE_NUMBA", True)
    entered, seen, done = threading.Event(), threading.Event(), threading.Event()
    got = {}

    def other():
        assert entered.wait(10)
        got["other, during ours"] = compiled.numba_switch()
        with bc.use_numba(False):
            got["other, in its own"] = compiled.numba_switch()
            seen.set()
            assert done.wait(10)
        got["other, after"] = compiled.numba_switch()

    t = threading.Thread(target=other)
    t.start()
    try:
        with bc.use_numba(True):
            entered.set()
            assert seen.wait(10)  # both blocks are open now
            with bc.use_numba(True):
                got["ours, during theirs"] = compiled.numba_switch()
        got["ours, theirs still open"] = compiled.numba_switch()
    finally:
        done.set()
        t.join(10)
    assert got == {
        "other, during ours": True,
        "other, in its own": False,
        "ours, during theirs": True,
        "ours, theirs still open": True,
        "other, after": True,
    }

    # and the other way round: ours switched off, theirs at the default
    entered.clear(), seen.clear()
    got.clear()

    def reader():
        assert entered.wait(10)
        got["reader"] = (compiled.numba_switch(), compiled.enabled() == expect)
        seen.set()

    expect = compiled.enabled()
    t = threading.Thread(target=reader)
    t.start()
    try:
        with bc.use_numba(False):
            entered.set()
            assert seen.wait(10)
            got["ours"] = compiled.enabled()
    finally:
        t.join(10)
    assert got == {"reader": (True, True), "ours": False}


def test_parallel_for_helpers_take_the_callers_setting(monkeypatch):
    """The items a helper thread of parallel_for runs follow the caller's use_numba (a
    Winograd chunk reads compiled.enabled() on the thread that runs it: a plan made inside
    `use_numba(True)`, numba off by default, ran the NumPy transforms on the helpers)."""
    if xp._cpu_count() < 2:
        pytest.skip("one core: parallel_for runs every item in the caller")
    monkeypatch.setattr(compiled, "USE_NUMBA", False)
    both = threading.Barrier(2, timeout=10)  # the caller and a helper hold an item each
    seen = {}

    def item(i):
        both.wait()
        seen[threading.current_thread().name] = compiled.numba_switch()

    with bc.use_numba(True):
        xp.parallel_for(item, range(2), workers=2)
    assert len(seen) == 2 and all(seen.values()), seen
    seen.clear()
    xp.parallel_for(item, range(2), workers=2)  # the helper is back at the default
    assert len(seen) == 2 and not any(seen.values()), seen
    assert compiled._switched == 0


def _data():
    rng = np.random.default_rng(7)
    return rng.random((2, 3000)), rng.random(31)


def test_plan_made_in_the_block_runs_numpy(monkeypatch):
    monkeypatch.setattr(compiled, "USE_NUMBA", True)
    x, w = _data()
    with bc.use_numba(False):
        inside = bc.plan(x, w, method="direct")
        text = inside.explain()
        y_inside = inside(x)
    assert "shift-and-add" in text
    assert "window-rows" not in text
    pytest.importorskip("numba")
    outside = bc.plan(x, w, method="direct")
    assert "window-rows" in outside.explain()
    np.testing.assert_allclose(outside(x), y_inside, rtol=1e-12)


def test_plan_cache_does_not_serve_the_compiled_plan_in_the_block(monkeypatch):
    """correlate's cached plans are keyed by whether the compiled kernels run in the
    calling thread (api._cached_plan): the block gets its own plan."""
    pytest.importorskip("numba")
    monkeypatch.setattr(compiled, "USE_NUMBA", True)
    made = []
    real = api._make_plan

    def spy(*a, **k):
        p = real(*a, **k)
        made.append((p, p.explain()))  # explained where it is made
        return p

    monkeypatch.setattr(api, "_make_plan", spy)
    x, w = _data()
    y_out = bc.correlate(x, w, method="direct")
    with bc.use_numba(False):
        y_in = bc.correlate(x, w, method="direct")
        y_in_again = bc.correlate(x, w, method="direct")  # its own plan, cached
    y_out_again = bc.correlate(x, w, method="direct")  # the compiled plan, cached
    assert len(made) == 2
    assert "window-rows" in made[0][1]
    assert "shift-and-add" in made[1][1]
    np.testing.assert_allclose(y_in, y_out, rtol=1e-12)
    np.testing.assert_array_equal(y_in_again, y_in)
    np.testing.assert_array_equal(y_out_again, y_out)


def test_a_plan_runs_with_the_kernels_it_was_planned_for(rng):
    """A plan's method and blocks are sized for the kernels on when it was made: a call
    under another use_numba setting still runs those kernels (here: the compiled
    one-filter kernel, whose explain() line it kept), with the same answer."""
    pytest.importorskip("numba")
    from naive import naive_correlate

    from batchconv.methods import direct

    x, w = rng.standard_normal((2, 300)), rng.standard_normal(31)
    with bc.use_numba(True):
        plan = bc.plan(x, w, method="direct")
    described = plan.explain()
    assert plan.compiled and "(numba)" in described
    seen = []
    real = direct.compute

    def spy(*a, **k):
        seen.append(compiled.enabled())
        return real(*a, **k)

    direct_compute = direct.compute
    direct.compute = spy
    try:
        with bc.use_numba(False):
            y = plan(x)
            assert not compiled.enabled()  # (the caller's setting is left as it was)
            assert plan.explain() == described
    finally:
        direct.compute = direct_compute
    assert seen == [True]
    np.testing.assert_allclose(y, naive_correlate(x, w), atol=1e-12)


def test_a_compiled_plan_runs_the_numpy_code_where_numba_is_gone(rng, monkeypatch):
    """E.g. a plan pickled to a Dask worker without numba: the NumPy kernels, no loop."""
    pytest.importorskip("numba")
    from naive import naive_correlate

    x, w = rng.standard_normal((2, 300)), rng.standard_normal(31)
    with bc.use_numba(True):
        plan = bc.plan(x, w, method="direct")
    monkeypatch.setattr(compiled, "cache_dir", lambda: None)
    assert plan.compiled and not compiled.enabled()
    np.testing.assert_allclose(plan(x), naive_correlate(x, w), atol=1e-12)
