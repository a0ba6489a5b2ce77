"""correlate/convolve remember small plans keyed by the arguments and w's bytes: a new
filter or any other option gives a new plan, never a stale answer."""

import numpy as np
import pytest
from naive import naive_correlate

import batchconv as bc
from batchconv import api, planner


@pytest.fixture(autouse=True)
def _fresh_cache():
    bc.clear_plan_cache()
    yield
    bc.clear_plan_cache()


def test_same_filter_reuses_the_plan(monkeypatch):
    calls = []
    real = api._make_plan
    monkeypatch.setattr(api, "_make_plan", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 5))
    for _ in range(3):
        x = rng.standard_normal((4, 40))
        np.testing.assert_allclose(bc.correlate(x, w), naive_correlate(x, w), atol=1e-12)
    assert len(calls) == 1


def test_changed_filter_in_place_is_seen():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 30)), rng.standard_normal((2, 4))
    first = bc.correlate(x, w, method="fft")
    w[0, 0] += 1.0  # same object, new content
    again = bc.correlate(x, w, method="fft")
    assert not np.allclose(first, again)
    np.testing.assert_allclose(again, naive_correlate(x, w), atol=1e-12)


@pytest.mark.parametrize(
    "change",
    [
        dict(mode="same"),
        dict(stride=2),
        dict(dilation=2),
        dict(method="direct"),
        dict(padding="wrap", mode="full"),
    ],
)
def test_other_options_get_their_own_plan(change):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 30)), rng.standard_normal((2, 4))
    bc.correlate(x, w)
    got = bc.correlate(x, w, **change)
    opts = {k: v for k, v in change.items() if k != "method"}
    np.testing.assert_allclose(got, naive_correlate(x, w, **opts), atol=1e-12)


def test_convolve_and_correlate_do_not_share_a_plan():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 30)), rng.standard_normal((1, 4))
    c = bc.correlate(x, w)
    v = bc.convolve(x, w)
    np.testing.assert_allclose(v, naive_correlate(x, w[:, ::-1]), atol=1e-12)
    assert not np.allclose(c, v)


def test_the_cache_stays_small():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 20))
    for i in range(3 * api._PLAN_CACHE_SIZE):
        bc.correlate(x, np.full(3, float(i)))
    assert len(api._plan_cache) <= api._PLAN_CACHE_SIZE


def test_list_arguments_still_work_uncached_or_cached():
    x = np.arange(20.0).reshape(2, 10)
    got = bc.correlate(x, [[1.0, 2.0]], stride=[2])
    np.testing.assert_allclose(got, naive_correlate(x, np.array([[1.0, 2.0]]), stride=2))


def test_cache_bounds_the_filter_state_in_all(monkeypatch):
    """Remembered plans hold at most _PLAN_CACHE_TOTAL_BYTES of filter state together (the
    newest plan is always kept)."""
    from batchconv import api

    bc.clear_plan_cache()
    monkeypatch.setattr(api, "_PLAN_CACHE_TOTAL_BYTES", 200_000)
    x = np.ones((2, 64, 64))
    for i in range(6):
        bc.correlate(x, np.full((4, 9, 9), float(i)), method="fft")  # about 135 KB of spectra each
        total = sum(p.state_bytes for p, *_ in api._plan_cache.values())
        assert total <= 200_000 or len(api._plan_cache) == 1
    assert 1 <= len(api._plan_cache) < 6
    bc.clear_plan_cache()


def test_gpu_filters_are_keyed_by_identity_and_version(monkeypatch):
    """Filters on a GPU are not read for the key: the tensor's identity and version
    counter are (faked here: CPU tensors reported as on cuda:0 to the key only). The same
    tensor reuses the plan; an in-place change, another tensor with equal values, or a
    freed and reallocated one plan again."""
    torch = pytest.importorskip("torch")
    import gc

    real_device_of = api.device_of
    monkeypatch.setattr(
        api,
        "device_of",
        lambda a: (
            "cuda:0" if a is not None and getattr(a, "_fake_gpu", False) else real_device_of(a)
        ),
    )
    calls = []
    real = api._make_plan
    monkeypatch.setattr(api, "_make_plan", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((4, 40)))

    def gpu_like(values):
        t = torch.from_numpy(values.copy())
        t._fake_gpu = True
        return t

    w = gpu_like(rng.standard_normal((3, 5)))
    for _ in range(3):
        y = bc.correlate(x, w)
    assert len(calls) == 1
    w.mul_(2)  # in place: the version counter moves
    np.testing.assert_allclose(
        bc.correlate(x, w).numpy(), naive_correlate(x.numpy(), w.numpy()), atol=1e-12
    )
    assert len(calls) == 2
    twin = gpu_like(w.numpy())
    bc.correlate(x, twin)
    assert len(calls) == 3
    del w, twin, y
    gc.collect()
    w2 = gpu_like(rng.standard_normal((3, 5)))
    np.testing.assert_allclose(
        bc.correlate(x, w2).numpy(), naive_correlate(x.numpy(), w2.numpy()), atol=1e-12
    )
    assert len(calls) == 4


def test_cache_key_holds_the_compiled_switch(rng, monkeypatch):
    """auto's choice depends on whether the compiled kernels run: a plan made with them
    off is not served once they are on (and back)."""
    pytest.importorskip("numba")
    from batchconv import compiled

    x, w = rng.standard_normal((200, 64, 64)), rng.standard_normal((5, 5))
    monkeypatch.setattr(compiled, "USE_NUMBA", False)
    off = bc.plan(x, w).method
    bc.correlate(x, w)
    monkeypatch.setattr(compiled, "USE_NUMBA", True)
    on = bc.plan(x, w).method
    before = len(api._plan_cache)
    bc.correlate(x, w)
    assert len(api._plan_cache) == before + 1
    assert (off, on) == ("fft", "direct")


NHWC = "nhwc,hwco->nhwo|hw"


def _layer(rng):
    """11x11 32->8 on one 32x32 image: for one call the direct GEMM is estimated fastest
    (the FFT's 256 filter transforms counted in full), for a reused plan the FFT."""
    x = rng.standard_normal((1, 32, 32, 32)).astype(np.float32)
    w = rng.standard_normal((11, 11, 32, 8)).astype(np.float32)
    return x, w


def _cached():
    ((plan, *_),) = api._plan_cache.values()
    return plan


def test_a_first_call_is_ranked_for_one_call_and_the_next_as_reused(rng):
    x, w = _layer(rng)
    ref = naive_correlate(x.astype(np.float64), w.astype(np.float64), NHWC)
    tol = 1e-5 * np.abs(x).max() * np.abs(w).sum(axis=(0, 1, 2)).max()
    with bc.use_torch(False):
        one_call = api._make_plan(x, w, NHWC, flip=False, reused=False)
        reused = bc.plan(x, w, NHWC)
        assert (one_call.method, reused.method) == ("direct", "fft"), "pick another layer"
        assert "of one call (filter transforms included)" in one_call.explain()
        assert "per call of a reused plan" in reused.explain()
        plans = []
        for _ in range(3):
            np.testing.assert_allclose(bc.correlate(x, w, NHWC), ref, rtol=0, atol=tol)
            plans.append(_cached())
    first, second, third = plans
    assert (first.method, first.reused) == ("direct", False)
    assert (second.method, second.reused) == ("fft", True)
    assert third is second  # settled: no more re-ranking


def test_a_reused_plan_too_large_to_keep_leaves_the_first_call_plan(rng, monkeypatch):
    """Where the reused ranking's method holds more filter state than the cache keeps
    (the FFT's spectra), every call would make that plan again: the first call's plan
    stays, and no call after it plans again."""
    calls = []
    real = api._make_plan
    monkeypatch.setattr(api, "_make_plan", lambda *a, **k: calls.append(k) or real(*a, **k))
    x, w = _layer(rng)
    with bc.use_torch(False):
        fft_bytes = bc.plan(x, w, NHWC).state_bytes  # (the reused ranking's: the FFT)
        monkeypatch.setattr(api, "_PLAN_CACHE_MAX_STATE_BYTES", fft_bytes - 1)
        calls.clear()
        for _ in range(3):
            bc.correlate(x, w, NHWC)
    assert (_cached().method, _cached().reused, len(calls)) == ("direct", False, 1)
    assert "more than correlate's plan cache keeps" in _cached().reason


def test_a_choice_both_rankings_agree_on_is_settled_at_once(rng, monkeypatch):
    calls = []
    real = api._make_plan
    monkeypatch.setattr(api, "_make_plan", lambda *a, **k: calls.append(k) or real(*a, **k))
    x = rng.standard_normal((2, 16, 16, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 4, 8)).astype(np.float32)
    with bc.use_torch(False):
        bc.correlate(x, w, NHWC)
        first = _cached()
        bc.correlate(x, w, NHWC)
    assert first.reused is True and _cached() is first and len(calls) == 1
    assert "of one call" not in first.reason and "reused plan" not in first.reason


def test_as_reused_plans_again_only_what_a_cache_can_keep(rng):
    x, w = _layer(rng)
    with bc.use_torch(False):
        one_call = api._make_plan(x, w, NHWC, flip=False, reused=False)
        named = api._make_plan(x, w, NHWC, flip=False, reused=False, method="direct")
        fft_bytes = bc.plan(x, w, NHWC).state_bytes
    assert planner.as_reused(one_call) is None  # a reused plan takes the FFT: plan again
    assert planner.as_reused(one_call, fft_bytes) is None
    kept = planner.as_reused(one_call, fft_bytes - 1)  # the FFT's spectra too large
    assert kept.method == "direct" and kept.reused is False
    assert kept.state is one_call.state  # (its filters, not prepared again)
    assert kept.reason.startswith(one_call.reason) and "fft would hold" in kept.reason
    assert "bc.plan keeps it" in kept.explain()
    assert named.reused is None and planner.as_reused(named) is named  # no ranking chose


def test_a_slow_first_call_does_not_unsettle_the_key(rng):
    x, w = _layer(rng)
    with bc.use_torch(False):
        for _ in range(2):
            bc.correlate(x, w, NHWC)
        settled = _cached()
        key = next(iter(api._plan_cache))
        late = api._make_plan(x, w, NHWC, flip=False, reused=False)
        api._remember(key, late, None, settled=False)  # (a first call finishing last)
        assert _cached() is settled and api._plan_cache[key][2]
