"""The portable engine: correlations, convolutions and the similarity metrics on any
array-API array (JAX, CuPy, array-api-strict, ...), written once against the backend
protocol (``backends/``) and computed on the array's own library and device, never
through NumPy.

``make_plan`` validates every option exactly as for NumPy (``problem.make_problem``),
picks a method (``methods.py``: ``direct``, ``fft``; ``metrics.py`` wraps them for the
metrics), prepares the filters once and returns a :class:`PortablePlan`. A call runs
(batch, bank) blocks sized to the ``memory=`` budget, reduces each block as it is made
(``reduce.py``) and joins them with ``concat``.

``method="auto"`` picks by flops: ``fft`` when its estimated flops times
``FFT_FLOP_WEIGHT`` are fewer than ``direct``'s, else ``direct``; integer inputs and
metrics with no product form (sad) take ``direct``.

>>> import numpy as np, batchconv as bc
>>> xps = __import__("pytest").importorskip("array_api_strict")  # (JAX: the same)
>>> x = xps.asarray([[0.0, 1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0, 9.0]])
>>> w = xps.asarray([[1.0, 1.0], [1.0, -1.0]])
>>> y = bc.correlate(x, w, reduce="max")   # an array-api-strict array, computed by it
>>> type(y).__module__.split(".")[0], np.from_dlpack(y)
('array_api_strict', array([[ 7., -1.],
       [17., -1.]]))
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any, NamedTuple

import numpy as np

from ..arrays import is_array_api
from ..backends import Backend, backend_of
from ..budget import format_bytes, largest_block
from ..methods import METHODS as REGISTERED
from ..metrics import metric_of
from ..problem import Problem, explain_lines, make_problem, result_dtype
from ..progress import reporter
from ..xp import set_workers
from .blocks import (
    block_fn,
    finish_mean,
    finish_peaks,
    host_reduce,
    oneshot_fn,
    prepare_fn,
    reduce_block,
    whole_fn,
)
from .methods import DIRECT, FFT_METHOD, METHODS, work_budget
from .metrics import SAD_KERNEL, Windowed

__all__ = ["PortablePlan", "BoundPortablePlan", "make_plan", "correlate", "FFT_FLOP_WEIGHT"]

# "auto" takes fft when its flops times this are fewer than direct's: a matmul's flop is
# cheaper than an FFT's (measured with JAX on the 2-core dev machine: see the README's
# "JAX and array-API arrays")
FFT_FLOP_WEIGHT = 4.0


def computer_for(p: Problem, method):
    """The object that computes ``p`` with the portable ``method``: the method itself
    for a plain metric, the SAD kernel for a metric with no product form, else the
    windowed metric around the method."""
    metric = metric_of(p.metric)
    if metric.plain:
        return method
    if not metric.product_form:
        if method is not DIRECT:
            raise ValueError(
                f"metric {metric.name!r} has no {method.name!r} form (it does not factor "
                f"through a product, as an absolute value does not); use method='direct' "
                f"or 'auto'"
            )
        return SAD_KERNEL
    return Windowed(method)


def _named_method(method: str, be: Backend):
    """The portable method called ``method``; ValueError for the NumPy/torch-only names."""
    if method in METHODS:
        return METHODS[method]
    if method == "measure" or method in REGISTERED:
        raise ValueError(
            f"method={method!r} runs on NumPy arrays or torch tensors; {be.name} arrays "
            f"compute with the portable methods: 'auto', {', '.join(map(repr, METHODS))}"
        )
    raise ValueError(
        f"method must be 'auto' or one of {tuple(METHODS)} for {be.name} arrays, got {method!r}"
    )


def _block_bytes(p: Problem, computer, b: int, k: int, budget: int) -> int:
    """A block's temporaries: the computer's, plus the unreduced block when it is
    reduced."""
    unreduced = b * k * p.P * prod(p.O) * p.dtype.itemsize if p.reduce is not None else 0
    return computer.workspace_bytes(p, b, k, budget) + unreduced


def _chunks(p: Problem, computer, room: int) -> tuple[int, int]:
    """The largest (batch, bank) block whose temporaries fit ``room``: the batch halved
    first, then the bank; MemoryError when one item and one filter do not fit."""
    b, k = largest_block(p.B, p.K, lambda b, k: _block_bytes(p, computer, b, k, room), room)
    if _block_bytes(p, computer, b, k, room) > room:
        need = _block_bytes(p, computer, b, k, room) + computer.state_bytes(p)
        raise MemoryError(
            f"the portable {computer.name} method needs {format_bytes(need)} for one item "
            f"against one filter of x {p.x_shape} and w {p.w_shape} (filter state and "
            f"temporaries), more than the memory budget; raise memory="
        )
    return b, k


def _choose(p: Problem, method: str, be: Backend) -> tuple[Any, str]:
    """The portable method for ``method`` ("auto" or a name) and why."""
    if method != "auto":
        return _named_method(method, be), "asked for by method="
    if not metric_of(p.metric).product_form:
        return DIRECT, "the metric has no product form: direct is its only method"
    if p.integer_inputs:
        return DIRECT, "integer inputs: direct is exact"
    direct, fft = DIRECT.flops(p), FFT_METHOD.flops(p)
    if FFT_FLOP_WEIGHT * fft < direct:
        return FFT_METHOD, f"fewer flops ({FFT_FLOP_WEIGHT:g} x fft's < direct's)"
    return DIRECT, f"fewer flops (direct's <= {FFT_FLOP_WEIGHT:g} x fft's)"


@dataclass(frozen=True, eq=False)
class PortablePlan:
    """A prepared correlation on one array-API namespace and device: call it with ``x``
    (an array of that namespace) to get the result there. Nothing in it changes after
    it is made.

    Attributes: ``problem``, ``method`` (the portable method's name), ``chunk`` (batch
    and bank items per block), ``memory`` (the budget in bytes), ``backend``."""

    problem: Problem
    backend: Any  # a backends.Backend
    method: str
    chunk: tuple[int, int]
    memory: int
    reason: str
    state: Any  # the filters prepared by the method (None when nothing is computed)
    computer: Any  # what computes a block: the method, the SAD kernel or a windowed metric

    @property
    def device(self):
        return self.backend.device

    @property
    def flops(self) -> float:
        return self.computer.flops(self.problem)

    @property
    def state_bytes(self) -> int:
        return self.computer.state_bytes(self.problem)

    def __call__(self, x: Any, progress=None) -> Any:
        """The result for ``x``: the planned shape, or another size of the batch axes; a
        dtype that needs no wider type. An array of the plan's namespace, on its
        device. ``progress``: as ``Plan.__call__``'s."""
        be = self.backend
        if not be.owns(x):
            raise TypeError(
                f"this plan computes on {be.name} arrays; x is a "
                f"{type(x).__module__}.{type(x).__name__}: make a plan for it with "
                f"bc.plan(x, w, ...)"
            )
        return self._run(x, *self._problem_for(tuple(x.shape), be.numpy_dtype(x.dtype)), progress)

    def bind(self, x_like: Any) -> BoundPortablePlan:
        """This plan made ready for inputs of ``x_like``'s shape and dtype (an array of
        the plan's namespace, or ``(shape, dtype)`` with a NumPy dtype): their problem and
        block sizes are worked out once (as :meth:`batchconv.Plan.bind` does). Raises as a
        call with such an ``x`` would."""
        if isinstance(x_like, tuple):
            shape, dtype = tuple(int(n) for n in x_like[0]), np.dtype(x_like[1])
        else:
            shape, dtype = tuple(x_like.shape), self.backend.numpy_dtype(x_like.dtype)
        return BoundPortablePlan(self, shape, dtype, *self._problem_for(shape, dtype))

    def _run(self, x: Any, p: Problem, chunk: tuple[int, int], progress=None) -> Any:
        """A call on ``x``, whose problem and block sizes are ``p`` and ``chunk``."""
        rep = reporter(progress, -(-p.B // chunk[0]) * -(-p.K // chunk[1]))
        if rep is None:  # (progress None or False)
            return self._run_blocks(x, p, chunk, None)
        with rep:
            return self._run_blocks(x, p, chunk, rep)

    def _run_blocks(self, x: Any, p: Problem, chunk: tuple[int, int], rep) -> Any:
        be = self.backend
        budget = work_budget(self.memory)
        with be.precise():
            if self._computes(p) and chunk == (p.B, p.K) and not host_reduce(p):
                y, ok = whole_fn(be, self.computer, p, budget)(x, self.state)  # one block
                if ok is None or bool(ok):
                    if rep is not None:
                        rep.step(rep.total)
                    return finish_mean(be, p, y)  # (else NaN/Inf: the blocks again, exactly)
            y = be.final_view(p, self._blocks(p, chunk, be.canonical_x(p, x), rep))
            if rep is not None and not self._computes(p):
                rep.step(rep.total)
            return finish_peaks(be, p, finish_mean(be, p, y))

    def _problem_for(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[Problem, tuple]:
        p, chunk = self.problem, self.chunk
        if dtype.kind not in "iufc":  # booleans...: refused as correlate refuses them
            result_dtype(dtype, p.dtype)
        wider = np.result_type(dtype, p.dtype)
        if wider != p.dtype and not (dtype.kind in "iu" and p.dtype == np.float64):
            raise TypeError(
                f"this plan computes in {p.dtype}; x of dtype {dtype} would need {wider}: "
                f"make a new plan"
            )
        if shape != p.x_shape:
            q = p.with_batch_shape(shape)
            if q is None:
                raise ValueError(
                    f"this plan was made for x of shape {p.x_shape}, got {shape}; only the "
                    f"batch axes ({''.join(p.spec.batch) or 'none'!r}) may differ"
                )
            p = q
            room = max(self.memory - self.state_bytes, 0)
            chunk = _chunks(p, self.computer, room) if self._computes(p) else chunk
        return p, chunk

    @staticmethod
    def _computes(p: Problem) -> bool:
        """False when the result is empty or every window is (then it is zeros)."""
        return prod(p.canonical_out_shape) > 0 and p.window_size > 0 and p.B * p.K > 0

    def _blocks(self, p: Problem, chunk: tuple[int, int], xc, rep=None) -> Any:
        """The canonical result ``(B, K, P, *O_kept[, r])``, block by block."""
        be, xp = self.backend, self.backend.xp
        dt = be.dtype(p.out_dtype)
        if not self._computes(p):
            if prod(p.canonical_out_shape) == 0 or p.B * p.K == 0:
                return be.zeros(p.canonical_out_shape, dt)
            return reduce_block(be, p, be.zeros((p.B, p.K, p.P, *p.O), be.dtype(p.dtype)))
        cb, ck = chunk
        budget = work_budget(self.memory)
        rows = []
        for b0 in range(0, p.B, cb):
            xb = xc[b0 : b0 + cb, ...]
            row = []
            for k0 in range(0, p.K, ck):
                k1 = min(k0 + ck, p.K)
                block, ok = block_fn(be, self.computer, p, k0, k1, budget)(xb, self.state)
                if ok is not None and not bool(ok):  # NaN/Inf: the exact block
                    fixed = self.computer.fix(be, p, self.state, xb, k0, k1, budget)
                    block = reduce_block(be, p, fixed)
                elif host_reduce(p):
                    block = reduce_block(be, p, block)
                row.append(block)
                if rep is not None:
                    rep.step()
            rows.append(be.concat(row, axis=1))
        return xp.astype(be.concat(rows, axis=0), dt, copy=False)

    def explain(self) -> str:
        """A readable account: the problem, the namespace and device, the method and
        why, and the blocks within the memory budget."""
        p, be = self.problem, self.backend
        cb, ck = self.chunk
        narrowed = be.narrowed(p.dtype)
        title, *problem = explain_lines(p, "batchconv portable plan")
        lines = [
            title,
            f"  arrays: {be.name} on {be.device} (the portable engine: array-API functions)"
            + (
                f"; {p.dtype} computes in {be.numpy_dtype(be.dtype(p.dtype))} (the "
                f"namespace has no {p.dtype}: with JAX, enable x64)"
                if narrowed
                else ""
            ),
            *problem,
            f"  flops: direct ~{DIRECT.flops(p) / 1e9:.3f} GFLOP, "
            f"fft ~{FFT_METHOD.flops(p) / 1e9:.3f} GFLOP",
        ]
        if self.state is not None:
            text = self.computer.describe(be, p, self.state, work_budget(self.memory), cb)
            lines += ["  " + line for line in text.splitlines()]
        n_blocks = -(-p.B // cb) * -(-p.K // ck) if self._computes(p) else 0
        lines.append(
            f"  chosen: {self.method} ({self.reason}); {n_blocks} block(s) of (batch {cb}, "
            f"bank {ck}) within a budget of {format_bytes(self.memory)}, filter state "
            f"{format_bytes(self.state_bytes)}"
        )
        return "\n".join(lines)


def _signature(x) -> tuple | None:
    """``(shape, dtype)`` when ``x`` is such a pair (a plan for arrays not made yet)."""
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], tuple | list):
        return x
    return None


class _Parts(NamedTuple):
    """A call's parts before the filters are prepared."""

    problem: Problem
    backend: Any
    w: Any  # the filters, an array of the backend's namespace
    method: Any  # the portable method
    reason: str
    computer: Any
    chunk: tuple[int, int]
    memory: int


@dataclass(frozen=True, eq=False)
class BoundPortablePlan:
    """A :class:`PortablePlan` bound to one input shape and dtype
    (:meth:`PortablePlan.bind`): calls skip working out the problem and the blocks.

    Attributes: ``plan``, ``shape``, ``dtype`` (NumPy's name for it), ``problem``,
    ``chunk``."""

    plan: PortablePlan
    shape: tuple[int, ...]
    dtype: np.dtype
    problem: Problem
    chunk: tuple[int, int]

    def __call__(self, x: Any, progress=None) -> Any:
        """The plan's result for ``x``, of the bound shape and dtype."""
        be = self.plan.backend
        if not be.owns(x):
            return self.plan(x, progress)  # (the plan's own error)
        shape, dtype = tuple(x.shape), be.numpy_dtype(x.dtype)
        if (shape, dtype) != (self.shape, self.dtype):
            raise ValueError(
                f"this plan is bound to x of shape {self.shape} and dtype {self.dtype}; got "
                f"shape {shape}, dtype {dtype}: call the plan itself, or bind it to this x"
            )
        return self.plan._run(x, self.problem, self.chunk, progress)

    def explain(self) -> str:
        """The plan's explain(), and the problem and blocks of the bound shape."""
        p, (cb, ck) = self.problem, self.chunk
        blocks = -(-p.B // cb) * -(-p.K // ck)
        return (
            f"{self.plan.explain()}\n  bound to x {p.x_shape} ({self.dtype}): {blocks} "
            f"block(s) of (batch {cb}, bank {ck})"
        )


def _parts(x, w, spec, flip: bool, options: dict) -> _Parts:
    """Validate the call (as ``make_problem`` does for NumPy), choose the method and
    the blocks."""
    opts = dict(options)
    method, memory, workers = opts.pop("method", "auto"), opts.pop("memory", None), None
    workers = opts.pop("workers", None)
    sig = _signature(x)
    be = backend_of(w if sig is not None and is_array_api(w) else x)
    if be is None:
        raise TypeError("the portable engine computes on array-API arrays (JAX, CuPy, ...)")
    with set_workers(workers):  # (checks it; the array library runs its own threads)
        pass
    if sig is not None:
        shape, dtype = tuple(sig[0]), be.numpy_dtype(sig[1])
    else:
        shape, dtype = tuple(x.shape), be.numpy_dtype(x.dtype)
    w = be.asarray(w, "w")
    p = make_problem(shape, dtype, tuple(w.shape), be.numpy_dtype(w.dtype), spec, flip=flip, **opts)
    budget = be.memory(memory)
    chosen, reason = _choose(p, method, be)
    computer = computer_for(p, chosen)
    chunk = (max(p.B, 1), max(p.K, 1))
    if PortablePlan._computes(p):
        chunk = _chunks(p, computer, max(budget - computer.state_bytes(p), 0))
    return _Parts(p, be, w, chosen, reason, computer, chunk, budget)


def _plan(parts: _Parts) -> PortablePlan:
    p, be = parts.problem, parts.backend
    state = None
    if PortablePlan._computes(p):
        with be.precise():
            state = prepare_fn(be, parts.computer, p)(parts.w)
    return PortablePlan(
        p, be, parts.method.name, parts.chunk, parts.memory, parts.reason, state, parts.computer
    )


def make_plan(x, w, spec: str | None = None, *, flip: bool = False, **options) -> PortablePlan:
    """The plan of ``correlate`` (``flip`` False) or ``convolve`` for ``x`` (an array-API
    array, or ``(shape, dtype)`` with ``w`` one) and ``w`` (an array of the same
    namespace, or NumPy data, moved there once), with ``correlate``'s options.
    ``workers`` is checked and otherwise left to the array library, which runs its own
    threads."""
    return _plan(_parts(x, w, spec, flip, options))


def correlate(
    x, w, spec: str | None = None, *, flip: bool = False, progress=None, **options
) -> Any:
    """``bc.correlate`` (``flip`` False) or ``bc.convolve`` of an array-API ``x``: one
    compiled call that prepares the filters and computes (one block, a named
    reduction), else the plan's block loop (several blocks, a reduce callable, or a
    NaN/Inf to be placed exactly)."""
    parts = _parts(x, w, spec, flip, options)
    p, be = parts.problem, parts.backend
    one = PortablePlan._computes(p) and parts.chunk == (p.B, p.K) and not host_reduce(p)
    if one and (progress is None or progress is False):
        run = oneshot_fn(be, parts.computer, p, work_budget(parts.memory))
        with be.precise():
            y, ok = run(x, parts.w)
        if ok is None or bool(ok):
            return finish_mean(be, p, y)
    return _plan(parts)(x, progress)
