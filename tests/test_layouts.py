"""Plans count the copies that x's memory layout makes them take (issue 20, the estimate).

The compiled window-rows kernel reads x's rows where they are when its last axis has
stride 1 and adjacent samples; cosine reads a C-contiguous x in place. Otherwise they
copy. A plan learns x's layout from the x it is made with (``Problem.x_unit_axis``,
``Problem.x_contiguous``), and each call from its own x (``Plan.problem_for``), so:

- where the plan says the kernel reads in place, it does (no copy in stride phases);
- whatever the layout (axes in any memory order, steps, reversed axes, axes of one
  sample), the measured peak is within the budget and not above ``explain()``'s by more
  than 25 %, and the result is the one of a C-contiguous x.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from helpers import traced_plan_and_call
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import batchconv as bc
from batchconv import compiled
from batchconv.xp import element_strides, reshaped_view

# Python objects, index arrays of a few windows, small per-call buffers (as in
# test_budget_property.py)
SLACK = 1 << 20


@st.composite
def laid_out(draw):
    """(x, w, options): x ``nchw`` (or ``nch``) seen from memory in any axis order,
    maybe with a step or a reversed axis, maybe with axes of one sample."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16), label="seed"))
    one_d = draw(st.booleans(), label="1-D")
    n, c = draw(st.integers(1, 2)), draw(st.sampled_from([1, 2]))
    if one_d:
        s = (draw(st.integers(20_000, 60_000)),)
        t = (draw(st.integers(1, 40)),)
    else:
        s = (draw(st.sampled_from([1, 5, 160, 300])), draw(st.sampled_from([1, 7, 200, 333])))
        t = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    t = tuple(min(a, b) for a, b in zip(t, s, strict=True))  # ('valid' needs n >= m)
    shape = (n, c, *s)
    c_order = st.just(list(range(len(shape))))
    order = draw(st.one_of(c_order, st.permutations(range(len(shape)))), label="memory order")
    step = draw(st.sampled_from([None, *range(len(shape))]), label="axis with a step")
    flip = draw(st.sampled_from([None, *range(len(shape))]), label="reversed axis")
    big = [2 * m if a == step else m for a, m in enumerate(shape)]
    base = rng.standard_normal([big[a] for a in order]).transpose(np.argsort(order))
    x = base[tuple(slice(None, None, 2) if a == step else slice(None) for a in range(len(shape)))]
    if flip is not None:
        x = np.flip(x, flip)
    w = rng.standard_normal((draw(st.integers(1, 2)), c, *t))
    letters = "hw"[: len(s)]
    opts = dict(
        spec=f"nc{letters},kc{letters}->nk{letters}|{letters}",
        mode=draw(st.sampled_from(["valid", "same", "full"]), label="mode"),
        stride=draw(st.integers(1, 2), label="stride"),
        metric=draw(st.sampled_from(["dot", "sad", "cosine"]), label="metric"),
        method="direct",
        memory=draw(st.sampled_from([4 << 20, 64 << 20]), label="memory"),
        workers=1,
    )
    return x, w, opts


def _traced(x, w, opts):
    """(plan, result, peak of plan + call beyond the result, phase copies made by the
    warm-up call and the measured one: the same x, so both or neither copy)."""
    kernels = compiled.kernels() if compiled.enabled() else None
    phases = getattr(kernels, "_phases", None)
    copies = []

    def counted(*args, **kw):
        copies.append(args[0].shape)
        return phases(*args, **kw)

    patch = mock.patch.object(kernels, "_phases", counted) if phases else mock.MagicMock()
    with patch:
        p, y, peak = traced_plan_and_call(x, w, **opts)
    return p, y, peak, len(copies)


@pytest.mark.parametrize("numba", [True, False], ids=["compiled", "numpy"])
@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(case=laid_out())
def test_any_layout_stays_within_the_estimate(case, numba):
    x, w, opts = case
    old = compiled.USE_NUMBA
    compiled.USE_NUMBA = numba and old
    try:
        p, y, peak, copies = _traced(x, w, opts)
        if p is None:
            return
        explain, estimate = p.explain(), p.peak_bytes
        call_problem = p.problem_for(x.shape, x.dtype, element_strides(x))[0]
        in_place = compiled.reads_in_place(call_problem)
        rows = "window-rows kernel" in explain or "compiled SAD kernel" in explain
    finally:
        compiled.USE_NUMBA = old
    event(f"window rows: {rows}, read in place: {rows and in_place}, copies: {bool(copies)}")
    if rows and in_place:
        assert copies == 0, f"the kernel copied rows the plan said it reads in place\n{explain}"
    assert peak <= p.memory + SLACK, f"peak {peak} over the budget {p.memory}\n{explain}"
    assert peak <= 1.25 * estimate + SLACK, f"explain()'s {estimate} under {peak}\n{explain}"
    np.testing.assert_allclose(
        y, bc.correlate(np.ascontiguousarray(x), w, **opts), rtol=1e-10, atol=1e-10
    )


def test_a_plan_reads_rows_in_place_only_for_the_layouts_that_allow_it():
    """Hand-picked layouts: C order in the spec's order reads the rows in place; the
    same x seen through a transpose (channels last in memory), a step, or a stride of 2
    along the last axis does not, and the plan counts the copy."""
    x = np.zeros((2, 3, 64, 300))
    w = np.zeros((1, 3, 3, 3))
    spec = "nchw,kchw->nkhw|hw"

    def plan(a, **kw):
        return bc.plan(a, w, spec, method="direct", **kw).problem

    assert compiled.reads_in_place(plan(x))
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert plan(nhwc).x_unit_axis is None and not plan(nhwc).x_contiguous
    assert not compiled.reads_in_place(plan(nhwc))
    assert not compiled.reads_in_place(plan(np.zeros((2, 3, 64, 600))[..., ::2]))
    assert not compiled.reads_in_place(plan(x, stride=2))
    assert compiled.reads_in_place(plan((x.shape, x.dtype)))  # a signature: C order


@pytest.mark.skipif(not compiled.enabled(), reason="numba not installed")
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("row_tail", [True, False])
@pytest.mark.parametrize("layout", ["c", "trimmed rows", "channels last", "planes apart"])
@pytest.mark.parametrize("threads", [False, True])
def test_stride_phases_hold_every_sample_then_zeros(stride, row_tail, layout, threads, monkeypatch):
    """The window-rows kernel's copy in stride phases: phase ``q`` of a row holds
    ``row[q::s]`` and zeros up to the phase's length, the buffer ends in ``_V`` zeros.
    The compiled split (rows of adjacent samples, leading axes that merge: C order, or
    rows trimmed as a 'valid' plan trims them; on one thread or a share per thread)
    writes only the tails' zeros, into a buffer that held NaN before; NumPy's copies
    take the other layouts (channels last, planes that do not merge)."""
    kernels = compiled.kernels()
    rng = np.random.default_rng(stride)
    x = rng.standard_normal((3, 2, 1, 4, 5, 23)).astype(np.float32)  # (b, C, P, D, H, W)
    if layout == "trimmed rows":
        x = rng.standard_normal((3, 2, 1, 4, 7, 25)).astype(np.float32)[..., 1:6, :23]
        assert reshaped_view(x, (-1, 23)) is None
    elif layout == "channels last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 4, 5, 1)).transpose(0, 5, 1, 2, 3, 4)
    elif layout == "planes apart":
        x = rng.standard_normal((3, 2, 1, 6, 5, 23)).astype(np.float32)[:, :, :, 1:5]
        assert reshaped_view(x, (-1, 5, 23)) is None
    V = kernels._V
    lq = -(-23 // stride) + (V if row_tail else 0)
    expected = np.zeros((*x.shape[:-1], stride, lq), np.float32)
    for q in range(stride):  # (the loops of the definition)
        for j, i in enumerate(range(q, 23, stride)):
            expected[..., q, j] = x[..., i]
    empty = np.empty
    monkeypatch.setattr(np, "empty", lambda *a, **kw: np.full_like(empty(*a, **kw), np.nan))
    if threads:
        monkeypatch.setattr(kernels, "_SPLIT_THREADS", 0)
    with bc.set_workers(2):
        got = kernels._phases(x, stride, row_tail)
    monkeypatch.undo()
    np.testing.assert_array_equal(got[: expected.size].reshape(expected.shape), expected)
    np.testing.assert_array_equal(got[expected.size :], np.zeros(V, np.float32))


def test_reshaped_view_makes_no_copy():
    """None where the axes do not merge, without NumPy's copy (assigning ``.shape``
    copies the whole array before it raises): the direct method's product and the NCC
    normalisation ask before writing in place."""
    import tracemalloc

    a = np.zeros((64, 64, 64), np.float32).transpose(1, 0, 2)
    tracemalloc.start()
    try:
        assert reshaped_view(a, (4096, 64)) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < a.nbytes // 8, peak
    v = reshaped_view(a.transpose(1, 0, 2), (4096, 64))
    assert v is not None and v.shape == (4096, 64) and np.shares_memory(v, a)
