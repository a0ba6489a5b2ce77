"""``plan.bind(x_like) -> BoundPlan``: a plan made ready for one input layout (issue 21).
It gives the plan's answers, works the problem out once, refuses other layouts, and
leaves the plan as it was."""

from __future__ import annotations

import numpy as np
import pytest
from naive import naive_correlate

import batchconv as bc
from batchconv.planner import Plan


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("reduce", [None, "max", "argmin"])
def test_a_bound_plan_gives_the_plans_answers(method, reduce, rng):
    x, w = rng.standard_normal((3, 20, 18)), rng.standard_normal((4, 5, 5))
    plan = bc.plan(x, w, method=method, reduce=reduce, mode="same")
    f = plan.bind(x)
    assert isinstance(f, bc.BoundPlan) and f.problem.x_shape == x.shape
    for _ in range(2):
        x = rng.standard_normal((3, 20, 18))
        np.testing.assert_array_equal(f(x), plan(x))
    if reduce is None:
        np.testing.assert_allclose(f(x), naive_correlate(x, w, mode="same"), atol=1e-12)


def test_bound_calls_skip_working_out_the_problem(rng, monkeypatch):
    x, w = rng.standard_normal((4, 50)), rng.standard_normal((3, 7))
    plan = bc.plan(x, w, reduce="max")
    f = plan.bind(x)
    calls = []
    real = Plan.problem_for
    monkeypatch.setattr(Plan, "problem_for", lambda *a, **k: calls.append(1) or real(*a, **k))
    f(x), f(x)
    assert calls == []
    plan(x)  # the plan itself works it out on every call that has no one-block path
    assert calls == [1]


def test_bind_to_other_batch_sizes_layouts_and_shapes(rng):
    x, w = rng.standard_normal((4, 30)), rng.standard_normal((2, 5))
    plan = bc.plan(x, w)
    small = rng.standard_normal((2, 30))
    f = plan.bind(small)
    assert f.problem.B == 2
    np.testing.assert_allclose(f(small), naive_correlate(small, w), atol=1e-12)
    wide = np.zeros((4, 60))
    view = wide[:, ::2]
    view[...] = x
    g = plan.bind(view)
    np.testing.assert_allclose(g(view), naive_correlate(x, w), atol=1e-12)
    h = plan.bind(((4, 30), np.float64))
    assert h.layout == plan.bind(x).layout
    with pytest.raises(ValueError, match="bound to x of shape"):
        g(x)  # another layout: strides differ
    with pytest.raises(ValueError, match="only the batch axes"):
        plan.bind(rng.standard_normal((4, 31)))
    assert "bound to x (2, 30)" in f.explain()


def test_bound_plan_on_torch_tensors(rng):
    torch = pytest.importorskip("torch")
    x, w = rng.standard_normal((3, 40)), rng.standard_normal((2, 6))
    xt = torch.from_numpy(x)
    ref = naive_correlate(x, w)
    for method in ("direct", "torch_direct"):
        plan = bc.plan(xt, torch.from_numpy(w), method=method)
        f = plan.bind(xt)
        y = f(xt)
        assert isinstance(y, torch.Tensor)
        np.testing.assert_allclose(y.numpy(), ref, atol=1e-12)
        with pytest.raises(ValueError, match="bound to x of shape"):
            f(torch.from_numpy(rng.standard_normal((2, 40))))


def test_plans_compare_by_identity(rng):
    """(An array field made ``==`` raise before.)"""
    x, w = rng.standard_normal((2, 16)), rng.standard_normal((3, 4))
    p, q = bc.plan(x, w, method="fft"), bc.plan(x, w, method="fft")
    assert p == p and p != q and len({p, q, p}) == 2
