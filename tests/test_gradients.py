"""Gradients (#23): ``bc.vjp`` on NumPy arrays, torch autograd through ``bc.correlate``,
against the naive float64 loop (directional finite differences), torch's gradcheck,
``torch.nn.functional.conv1d/2d/3d``'s own gradients, and ``jax.grad`` of
``lax.conv_general_dilated`` (in a subprocess: JAX stays out of this process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import naive_correlate, tolerance

import batchconv as bc

PADDINGS = ["constant", "reflect", "symmetric", "edge", "wrap"]
METRICS = ["dot", "ssd", "sad", "ncc", "cosine"]


@st.composite
def problems(draw):
    """A small problem: every role (batch, bank, summed, paired, x-only and w-only
    summed letters), mode, stride, dilation, padding, metric and differentiable reduce."""
    nd = draw(st.integers(1, 3))
    sliding = "hwd"[:nd]
    sizes, xs, ws, out = {}, "", "", ""
    for letter, where, top in (
        ("n", "xo", 2),
        ("k", "wo", 2),
        ("c", "xw", 2),
        ("g", "xwo", 2),
        ("a", "x", 2),
        ("b", "w", 2),
    ):
        if draw(st.booleans()):
            sizes[letter] = draw(st.integers(1, top))
            xs += letter if "x" in where else ""
            ws += letter if "w" in where else ""
            out += letter if "o" in where else ""
    metric = draw(st.sampled_from(METRICS))
    convolve = metric == "dot" and draw(st.booleans())
    kinked = metric == "sad"  # (a subgradient: no window at a kink, see below)
    reduce_axes = draw(st.sets(st.sampled_from(list(sliding)))) if draw(st.booleans()) else set()
    reduce = draw(st.sampled_from(["sum", "mean", "max", "min"])) if reduce_axes else None
    if reduce in ("max", "min"):
        kinked = True
    # where the function has kinks (sad, max/min), 'valid' windows of random data: no
    # ties and no window that padding makes equal to another
    mode = "valid" if kinked else draw(st.sampled_from(["valid", "same", "full"]))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    top = {1: 9, 2: 6, 3: 4}[nd]
    m = [draw(st.integers(1, 3)) for _ in range(nd)]
    n = [draw(st.integers(1, top)) for _ in range(nd)]
    if mode == "valid":
        n = [max(ni, (mi - 1) * di + 1) for ni, mi, di in zip(n, m, dilation)]
    padding = "constant" if kinked else draw(st.sampled_from(PADDINGS))
    cval = draw(st.sampled_from([0.0, 1.5])) if padding == "constant" else 0.0
    kept = "".join(c for c in sliding if c not in reduce_axes)
    perm = "".join(draw(st.permutations(list(out + kept))))
    return dict(
        spec=f"{xs + sliding},{ws + sliding}->{perm}|{sliding}",
        x_shape=tuple(sizes[c] for c in xs) + tuple(n),
        w_shape=tuple(sizes[c] for c in ws) + tuple(m),
        options=dict(
            mode=mode,
            stride=stride,
            dilation=dilation,
            padding=padding,
            cval=cval,
            metric=metric,
            reduce=reduce,
        ),
        convolve=convolve,
        method=draw(st.sampled_from(["auto", "direct"] + ["fft"] * (metric != "sad"))),
        seed=draw(st.integers(0, 2**16)),
    )


def _arrays(pr):
    rng = np.random.default_rng(pr["seed"])
    x, w = rng.standard_normal(pr["x_shape"]), rng.standard_normal(pr["w_shape"])
    spec, opts = pr["spec"], pr["options"]
    y = naive_correlate(x, w, spec, convolve=pr["convolve"], **opts)
    return x, w, rng.standard_normal(y.shape), rng


def _directional_check(f, grad, a, rng, h):
    """``<grad, v>`` against the central difference of ``f`` along random ``v``."""
    for _ in range(2):
        v = rng.standard_normal(a.shape)
        up, down = f(a + h * v), f(a - h * v)
        fd = (up - down) / (2 * h)
        got = float(np.sum(grad * v))
        scale = float(np.sum(np.abs(grad * v))) + abs(fd)
        # the difference's own rounding: a few ulps of the loss over 2h (a cosine of
        # windows of one value, whose derivative is 0, gave fd 1.1e-9 from 20 ulps)
        noise = 64 * np.finfo(np.float64).eps * (abs(up) + abs(down)) / (2 * h)
        assert abs(got - fd) <= 1e-6 * scale + 1e-9 + noise, (got, fd)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_vjp_is_the_derivative_of_the_naive_loop(pr):
    """bc.vjp's gradients are the derivatives of the float64 loop's result, along random
    directions (the loop shares no code with batchconv)."""
    x, w, g, rng = _arrays(pr)
    spec, opts, conv = pr["spec"], pr["options"], pr["convolve"]
    gx, gw = bc.vjp(x, w, spec, cotangent=g, convolve=conv, method=pr["method"], **opts)
    assert gx.shape == x.shape and gw.shape == w.shape
    assert gx.dtype == np.float64 and gw.dtype == np.float64

    def loss_x(a):
        return float(np.sum(g * naive_correlate(a, w, spec, convolve=conv, **opts)))

    def loss_w(b):
        return float(np.sum(g * naive_correlate(x, b, spec, convolve=conv, **opts)))

    linear = opts["metric"] == "dot" and opts["reduce"] in (None, "sum", "mean")
    h = 1.0 if linear else 1e-6  # (an affine function: exact differences)
    _directional_check(loss_x, gx, x, rng, h)
    _directional_check(loss_w, gw, w, rng, h)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_torch_gradcheck(pr):
    """torch.autograd.gradcheck (float64) through bc.correlate / bc.convolve on tensors,
    and bc.vjp on NumPy arrays equal to torch's gradients on the same inputs."""
    torch = pytest.importorskip("torch")
    x, w, g, _ = _arrays(pr)
    spec, opts = pr["spec"], pr["options"]
    f = bc.convolve if pr["convolve"] else bc.correlate
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)

    def call(a, b):
        return f(a, b, spec, method=pr["method"], **opts)

    assert torch.autograd.gradcheck(call, (xt, wt), fast_mode=True)
    gxt, gwt = torch.autograd.grad(call(xt, wt), (xt, wt), torch.tensor(g))
    gx, gw = bc.vjp(x, w, spec, cotangent=g, convolve=pr["convolve"], **opts)
    noise = _rounding_scale(x, w, g, pr)
    np.testing.assert_allclose(gx, gxt.numpy(), rtol=1e-9, atol=noise)
    np.testing.assert_allclose(gw, gwt.numpy(), rtol=1e-9, atol=noise)


def _rounding_scale(x, w, g, pr):
    """A float64 gradient's rounding error scale (tol 1e-12 times the size of its
    terms): ``sum |g|`` times the inputs' scale, and for ncc and cosine times each
    window's conditioning (``s2 / Va``: the cancellation in its spread) and ``1 /
    |A|`` (their gradients grow as a window flattens; at n = 2 samples they are 0 in
    exact arithmetic and rounding noise in any other)."""
    opts = pr["options"]
    size = max(1.0, np.abs(x).max(), np.abs(w).max())
    scale = 1e-12 * np.abs(g).sum() * size * size * max(1, x.size + w.size)
    if opts["metric"] not in ("ncc", "cosine"):
        return scale
    lhs, sliding = pr["spec"].split("|")
    ops, out = lhs.split("->")
    xs, ws = ops.split(",")
    full = out + "".join(c for c in sliding if c not in out)
    spec = f"{xs},{ws}->{full}|{sliding}"
    geo = {k: v for k, v in opts.items() if k not in ("metric", "reduce")}
    ones = np.ones_like(w)
    s1 = naive_correlate(x, ones, spec, **geo)
    s2 = naive_correlate(x * x, ones, spec, **{**geo, "cval": geo["cval"] ** 2})
    n = np.prod([w.shape[ws.index(c)] for c in ws if c in xs and (c in sliding or c not in out)])
    va = s2 - s1 * s1 / n if opts["metric"] == "ncc" else s2
    live = va > 1e-8 * np.maximum(s2, 1e-300)  # (flat windows give exactly 0)
    if not live.any():
        return scale
    cond = (s2[live] / va[live]).max() / np.sqrt(va[live]).min()
    return scale * cond


def _contract(got, ref, bound, dtype):
    """The accuracy contract on a gradient: error at most tol * S, S the gradient of
    the absolute values (the largest sum of |products| into any element)."""
    err = np.abs(np.asarray(got, dtype=np.float64) - ref).max()
    assert err <= tolerance(dtype) * bound.max(), (err, tolerance(dtype) * bound.max())


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize(
    "stride, dilation, pad, padding_mode",
    [(1, 1, 0, "zeros"), (2, 1, 1, "zeros"), (1, 2, 2, "reflect"), (2, 2, 1, "circular")],
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_equals_torch_conv_gradients(nd, groups, stride, dilation, pad, padding_mode, dtype):
    """The gradients of F.conv1d/2d/3d (groups: a paired axis; padding_mode: reflect,
    wrap) and bc.vjp on the same NumPy arrays, within the contract."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(nd * 10 + groups)
    size = {1: 23, 2: 11, 3: 7}[nd]
    n, cg, kg = 3, 2, 3
    x = rng.standard_normal((n, groups * cg, *(size,) * nd)).astype(dtype)
    w = rng.standard_normal((groups * kg, cg, *(3,) * nd)).astype(dtype)
    conv = getattr(F, f"conv{nd}d")
    s = "hwd"[:nd]

    def ref(a, b):
        if padding_mode != "zeros":
            a = F.pad(a, (pad,) * 2 * nd, mode=padding_mode)
            return conv(a, b, stride=stride, dilation=dilation, groups=groups)
        return conv(a, b, stride=stride, dilation=dilation, padding=pad, groups=groups)

    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    y = ref(xt, wt)
    g = rng.standard_normal(tuple(y.shape)).astype(dtype)
    rgx, rgw = (a.double().numpy() for a in torch.autograd.grad(y, (xt, wt), torch.tensor(g)))
    # bounds: the same gradients of |x|, |w|, |g| (in float64)
    xa = torch.tensor(np.abs(x), dtype=torch.float64, requires_grad=True)
    wa = torch.tensor(np.abs(w), dtype=torch.float64, requires_grad=True)
    sx, sw = (
        a.numpy()
        for a in torch.autograd.grad(
            ref(xa, wa), (xa, wa), torch.tensor(np.abs(g), dtype=torch.float64)
        )
    )
    # batchconv: the group axis paired (g), channels summed (c), bank (k)
    spec = f"ngc{s},gkc{s}->ngk{s}|{s}"
    xs = x.reshape(n, groups, cg, *x.shape[2:])
    ws = w.reshape(groups, kg, cg, *w.shape[2:])
    gs = g.reshape(n, groups, kg, *g.shape[2:])
    padding = {"zeros": "constant", "reflect": "reflect", "circular": "wrap"}[padding_mode]
    opts = dict(mode=((pad, pad),) * nd, stride=stride, dilation=dilation, padding=padding)
    gx, gw = bc.vjp(xs, ws, spec, cotangent=gs, **opts)
    assert gx.dtype == np.dtype(dtype) and gw.dtype == np.dtype(dtype)
    _contract(gx.reshape(x.shape), rgx, sx, dtype)
    _contract(gw.reshape(w.shape), rgw, sw, dtype)
    # and through torch autograd: tensors in, bc.correlate's grad_fn
    xt2 = torch.tensor(xs, requires_grad=True)
    wt2 = torch.tensor(ws, requires_grad=True)
    yt = bc.correlate(xt2, wt2, spec, **opts)
    assert yt.grad_fn is not None
    tgx, tgw = torch.autograd.grad(yt, (xt2, wt2), torch.tensor(gs))
    _contract(tgx.numpy().reshape(x.shape), rgx, sx, dtype)
    _contract(tgw.numpy().reshape(w.shape), rgw, sw, dtype)


def test_second_derivative_goes_through_batchconv():
    """create_graph=True: the backward's own calls are recorded (gradgradcheck)."""
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 2, dtype=torch.float64, requires_grad=True)

    def call(a, b):
        return bc.correlate(a, b, "nchw,kchw->nkhw|hw", mode="same", stride=(2, 1))

    assert torch.autograd.gradgradcheck(call, (x, w))


@pytest.mark.parametrize("chunks", [1, 3])
def test_filters_only(chunks):
    """Learned filters on a frozen input (x without grad, a NumPy or integer x): only
    the filters' gradient is computed, in one chunk or several (memory=)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 64, 64))
    w = torch.tensor(rng.standard_normal((3, 5, 5)), requires_grad=True)
    memory = None if chunks == 1 else 1_200_000  # (2 items per chunk)
    want = torch.autograd.grad(
        torch.nn.functional.conv2d(torch.tensor(x)[:, None], w[:, None]).sum(), w
    )[0]
    for xs in (x, torch.tensor(x), torch.tensor(np.round(x * 10), dtype=torch.int64)):
        wt = w.detach().clone().requires_grad_()
        bc.correlate(xs, wt, memory=memory).sum().backward()
        ref = (
            want
            if xs.dtype != torch.int64
            else torch.autograd.grad(
                torch.nn.functional.conv2d(xs.double()[:, None], w[:, None]).sum(), w
            )[0]
        )
        np.testing.assert_allclose(wt.grad.numpy(), ref.numpy(), rtol=1e-10)
    gx, gw = bc.vjp(x, w.detach().numpy(), cotangent=np.ones((6, 3, 60, 60)), memory=memory)
    np.testing.assert_allclose(gw, want.numpy(), rtol=1e-10)


def test_only_what_requires_grad():
    """A tensor without requires_grad gets no gradient; no grad mode, no graph."""
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 3, dtype=torch.float64)
    y = bc.correlate(x, w)
    y.sum().backward()
    assert x.grad is not None and w.grad is None
    with torch.no_grad():
        assert bc.correlate(x, w).grad_fn is None
    # a NumPy w joins x's device; the result is a tensor with a grad_fn
    y = bc.correlate(x, w.numpy(), metric="ncc")
    assert y.grad_fn is not None


@pytest.mark.parametrize(
    "options, error",
    [
        (dict(reduce=lambda b, axis: b.max(axis=axis)), NotImplementedError),
        (dict(mask=np.ones(3)), NotImplementedError),
    ],
)
def test_what_has_no_gradient_says_so(options, error):
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 9, dtype=torch.float64, requires_grad=True)
    w = np.ones((2, 3))
    with pytest.raises(error):
        bc.correlate(x, w, "nh,kh->nk|h", **options)
    with pytest.raises(error):
        bc.vjp(x.detach().numpy(), w, "nh,kh->nk|h", cotangent=np.ones((2, 2)), **options)


@pytest.mark.parametrize("metric", ["dot", "ncc", "ssd"])
@pytest.mark.parametrize(
    "spec, x_shape, w_shape",
    [
        ("nhw,khw->nk|hw", (2, 12, 11), (3, 3, 2)),
        ("nchw,kchw->nkh|hw", (2, 2, 9, 13), (2, 2, 2, 3)),
    ],
)
def test_peak_scores_are_differentiable(metric, spec, x_shape, w_shape):
    """bc.peaks: each score's cotangent goes to its element (the coordinates have none):
    bc.vjp against directional differences of the scores, torch's gradcheck."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(len(spec) + len(metric))
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    opts = dict(metric=metric, reduce=bc.peaks(3, min_distance=2))
    scores = bc.correlate(x, w, spec, **opts).scores
    g = rng.standard_normal(scores.shape)

    def loss(a, b):
        return float(np.nansum(g * bc.correlate(a, b, spec, **opts).scores))

    gx, gw = bc.vjp(x, w, spec, cotangent=g, **opts)
    _directional_check(lambda a: loss(a, w), gx, x, rng, 1e-6)
    _directional_check(lambda b: loss(x, b), gw, w, rng, 1e-6)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    r = bc.correlate(xt, wt, spec, **opts)
    assert r.scores.grad_fn is not None and r.coords.grad_fn is None
    assert r.coords.dtype == torch.int64

    def scores_of(a, b):
        return torch.nan_to_num(bc.correlate(a, b, spec, **opts).scores)

    assert torch.autograd.gradcheck(scores_of, (xt, wt))
    tgx, tgw = torch.autograd.grad(r.scores, (xt, wt), torch.tensor(np.nan_to_num(g)))
    np.testing.assert_allclose(tgx.numpy(), gx, rtol=1e-9, atol=1e-12 * np.abs(g).sum())
    np.testing.assert_allclose(tgw.numpy(), gw, rtol=1e-9, atol=1e-12 * np.abs(g).sum())


def test_argmax_is_an_integer_result_without_gradient():
    """As torch's argmax: integers, no grad_fn, no error; bc.vjp says there is none."""
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 9, dtype=torch.float64, requires_grad=True)
    idx = bc.correlate(x, torch.ones(2, 3, dtype=torch.float64), reduce="argmax")
    assert idx.dtype == torch.int64 and idx.grad_fn is None
    with pytest.raises(TypeError, match="coordinates"):
        bc.vjp(np.ones((2, 9)), np.ones((2, 3)), cotangent=np.ones((2, 2, 1)), reduce="argmax")


def test_complex_and_ragged_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(NotImplementedError, match="complex"):
        bc.vjp(np.ones((2, 5)) + 1j, np.ones(2), cotangent=np.ones((2, 4)))
    with pytest.raises(NotImplementedError, match="complex"):
        bc.vjp(np.ones((2, 5)), np.ones(2), cotangent=np.ones((2, 4)) + 1j)
    with pytest.raises(NotImplementedError, match="ragged"):
        bc.vjp(np.ones((1, 8, 8)), [np.ones((2, 2)), np.ones((3, 3))], cotangent=np.ones(1))
    x = torch.randn(1, 8, 8, requires_grad=True)
    with pytest.raises(NotImplementedError, match="ragged"):
        bc.correlate(x, [torch.ones(2, 2, requires_grad=True), torch.ones(3, 3)])


def test_bfloat16_tensors():
    """bfloat16 computes in float32 (as without grad); its gradient comes back in
    bfloat16, equal to the float32 one rounded."""
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 9).bfloat16().requires_grad_()
    w = torch.randn(3, 3).bfloat16()
    y = bc.correlate(x, w)
    assert y.dtype == torch.float32
    y.sum().backward()
    x32 = x.detach().float().requires_grad_()
    bc.correlate(x32, w.float()).sum().backward()
    assert x.grad.dtype == torch.bfloat16
    assert torch.equal(x.grad, x32.grad.bfloat16())


def test_cotangent_shape_checked():
    with pytest.raises(ValueError, match="cotangent"):
        bc.vjp(np.ones((2, 5)), np.ones(2), cotangent=np.ones((2, 5)))


@pytest.mark.parametrize(
    "options",
    [
        dict(mode="same"),
        dict(mode="same", stride=2, padding="reflect"),
        dict(mode="same", metric="ncc"),
        dict(mode="same", metric="sad", stride=2),
        dict(mode="full", reduce="max"),
    ],
)
def test_backward_keeps_the_memory_budget(options):
    """Everything the backward allocates beyond the inputs and the gradients stays
    within memory= (its correlations within half, its chunks of the batch within the
    other half), and the chunked result equals the unchunked one."""
    import tracemalloc

    from batchconv.xp import clear_work_buffers

    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((16, 48, 48)), rng.standard_normal((8, 7, 7))
    spec = "nhw,khw->nk|hw" if "reduce" in options else None
    y = bc.correlate(x, w, spec, **options)
    g = rng.standard_normal(y.shape)
    full = bc.vjp(x, w, spec, cotangent=g, **options)
    budget = 4_000_000
    with pytest.raises(MemoryError, match="backward"):
        bc.vjp(x, w, spec, cotangent=g, memory=100_000, **options)
    bc.vjp(x, w, spec, cotangent=g, memory=budget, **options)  # (first-call costs)
    bc.clear_plan_cache()
    clear_work_buffers()
    tracemalloc.start()
    try:
        small = bc.vjp(x, w, spec, cotangent=g, memory=budget, **options)
        peak = tracemalloc.get_traced_memory()[1] - sum(a.nbytes for a in small)
    finally:
        tracemalloc.stop()
    assert peak <= budget, (peak, budget)
    for a, b in zip(full, small):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * np.abs(a).max())


def test_jax_grad_equals_lax_conv():
    """jax.grad through bc.correlate on JAX arrays = jax.grad of the same
    lax.conv_general_dilated, and = bc.vjp (JAX runs in its own process)."""
    pytest.importorskip("jax")
    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np, batchconv as bc
        jax.config.update("jax_enable_x64", True)
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.standard_normal((2, 3, 9, 8)))
        w = jnp.asarray(rng.standard_normal((4, 3, 3, 3)))
        c = jnp.asarray(rng.standard_normal((2, 4, 5, 4)))
        spec = "nchw,kchw->nkhw|hw"
        opts = dict(mode=((1, 1), (1, 2)), stride=2, dilation=(1, 2))
        def ours(a, b):
            return jnp.sum(c * bc.correlate(a, b, spec, **opts))
        def ref(a, b):
            y = jax.lax.conv_general_dilated(a, b, (2, 2), ((1, 1), (1, 2)),
                                             rhs_dilation=(1, 2))
            return jnp.sum(c * y)
        got = jax.grad(ours, (0, 1))(x, w)
        want = jax.grad(ref, (0, 1))(x, w)
        numpy_vjp = bc.vjp(np.asarray(x), np.asarray(w), spec, cotangent=np.asarray(c), **opts)
        for a, b, d in zip(got, want, numpy_vjp):
            assert isinstance(a, jax.Array)
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(np.asarray(a), d, rtol=1e-10, atol=1e-12)
        def metric(a, b):
            return jnp.sum(bc.correlate(a, b, "nchw,kchw->nk|hw", metric="ncc", reduce="max"))
        gx = jax.grad(metric)(x, w)
        h = 1e-6
        v = jnp.asarray(rng.standard_normal(x.shape))
        fd = (metric(x + h * v, w) - metric(x - h * v, w)) / (2 * h)
        assert abs(float(jnp.sum(gx * v)) - float(fd)) < 1e-6 * (1 + abs(float(fd)))
        print("ok")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_readme_siamese_head_trains():
    """The README's torch training loop (its code block) runs, its score has a grad_fn,
    every weight of the feature extractor gets a gradient and the loss goes down."""
    pytest.importorskip("torch")
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "SGD(" in b)
    import torch

    torch.manual_seed(0)
    block = block.replace("range(3)", "range(15)")
    block = block.replace("optimiser.step()", "optimiser.step()\n    losses.append(loss.item())")
    space: dict = {"losses": []}
    exec(block, space)  # the README's own code
    assert space["score"].grad_fn is not None
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for p in space["features"].parameters()
    )
    losses = space["losses"]
    assert len(losses) == 15 and losses[-1] < 0.9 * losses[0], losses


@pytest.mark.cuda
def test_cuda_gradients_equal_cpu():
    """On a GPU: the backward runs on the tensors' device (float32 within the contract of
    F.conv2d's float64 gradients; TF32 scoped as in the forward)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gen = torch.Generator().manual_seed(0)
    x64 = torch.randn(4, 8, 40, 40, generator=gen, dtype=torch.float64)
    w64 = torch.randn(16, 8, 5, 5, generator=gen, dtype=torch.float64)
    g64 = torch.randn(4, 16, 20, 20, generator=gen, dtype=torch.float64)
    xr, wr = x64.clone().requires_grad_(), w64.clone().requires_grad_()
    ref = torch.autograd.grad(
        torch.nn.functional.conv2d(xr, wr, stride=2, padding=2), (xr, wr), g64
    )
    bound = torch.autograd.grad(
        torch.nn.functional.conv2d(xr.abs(), wr.abs(), stride=2, padding=2), (xr, wr), g64.abs()
    )
    for method in ("auto", "direct", "fft"):
        x = x64.float().cuda().requires_grad_()
        w = w64.float().cuda().requires_grad_()
        y = bc.correlate(x, w, "nchw,kchw->nkhw|hw", mode="same", stride=2, method=method)
        got = torch.autograd.grad(y, (x, w), g64.float().cuda())
        for a, r, b in zip(got, ref, bound):
            assert a.device.type == "cuda"
            err = (a.double().cpu() - r).abs().max().item()
            assert err <= 1e-5 * b.abs().max().item(), (method, err)


def test_backward_reuses_the_plans_of_unchanged_filters(monkeypatch):
    """Fixed filters (a template, a frozen layer): the input gradient's convolution with
    them is remembered as a forward call's plan is (their spectra made once); the
    filters' gradient, whose filters are the cotangent, gets a plan of its own."""
    from batchconv import api

    made = []
    real = api._make_plan
    monkeypatch.setattr(api, "_make_plan", lambda *a, **k: made.append(1) or real(*a, **k))
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 9, 9))
    bc.clear_plan_cache()
    counts = []
    for _ in range(3):
        x, g = rng.standard_normal((2, 40, 40)), rng.standard_normal((2, 4, 40, 40))
        made.clear()
        bc.vjp(x, w, cotangent=g, mode="same", method="fft")
        counts.append(len(made))
    assert counts[0] == 2 and counts[1:] == [1, 1], counts


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_windows_the_forward_calls_flat_get_no_gradient(dtype):
    """A near-constant stretch beside a loud one: the forward's ncc is exactly 0 there
    (flat within the rounding of its window sums) and so is the gradient, not the
    inverse of a rounding-noise spread (was up to 5e5)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(5).astype(dtype)
    quiet = 5 + 7e-7 * rng.standard_normal(10)
    x = np.concatenate([3 * rng.standard_normal(20), quiet, rng.standard_normal(20)])
    x = x[None].astype(dtype)
    y = bc.correlate(x, w, metric="ncc")
    flat = y == 0
    assert flat.any()
    g = flat.astype(dtype)  # a cotangent on the flat windows only
    gx, gw = bc.vjp(x, w, cotangent=g, metric="ncc")
    assert np.all(gx == 0) and np.all(gw == 0)


def test_ssd_gradient_keeps_float32_digits_far_from_zero():
    """ssd on float32 data around 1e4: computed from centred terms as the forward is,
    within the single-precision contract of the float64 gradient (was 1.9e-3 off)."""
    rng = np.random.default_rng(1)
    x = (1e4 + rng.random((2, 400))).astype(np.float32)
    w = (1e4 + rng.random((3, 15))).astype(np.float32)
    g = rng.standard_normal((2, 3, 386)).astype(np.float32)
    got = bc.vjp(x, w, cotangent=g, metric="ssd")
    want = bc.vjp(
        x.astype(np.float64), w.astype(np.float64), cotangent=g.astype(np.float64), metric="ssd"
    )
    for a, b in zip(got, want):
        assert a.dtype == np.float32
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max()
