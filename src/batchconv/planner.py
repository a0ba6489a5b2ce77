"""The planner: pick a method, size the chunks to the memory budget, and run.

A :class:`Plan` is a value: the :class:`~batchconv.problem.Problem`, the chosen method's
name, chunk sizes and the method's filter state (e.g. spectra). It holds no open
resources, so it pickles, and several threads may call one plan at once.

``method="auto"`` takes the candidate with the lowest estimate from the cost model in
``costs.py`` (coefficients fitted on the development machine); integer inputs go to
``direct``, which is exact. ``method="measure"`` (and ``"auto"`` on a CUDA device) times
the candidates the model cannot tell apart, once per problem (``measure.py``).

>>> import numpy as np, batchconv as bc
>>> p = bc.plan(np.ones((2, 16)), np.ones((3, 4)))
>>> p(np.ones((2, 16))).shape
(2, 3, 13)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from math import prod
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from . import compiled, metrics
from .arrays import from_numpy, is_torch, numpy_dtype, records_grad, to_numpy
from .backends.numpy import NUMPY
from .backends.torch import TorchBackend
from .budget import format_bytes, largest_block, parse_memory
from .costs import estimate, flops, once_estimate
from .measure import timed_choice
from .memo import remembered
from .methods import METHODS, ON_CHANGE, get_method, module_of
from .methods import direct as direct_method
from .metrics.dispatch import method_for, methods_for_metric
from .metrics.dispatch import state_bytes as metric_state_bytes
from .nonfinite import affected_windows, window_values
from .peak_reduce import unpack
from .problem import (
    Problem,
    canonical_w,
    explain_lines,
    final_view,
    problem_cache,
    result_dtype,
    x_layout,
)
from .progress import reporter
from .tensors import canonical_w as tensor_canonical_w
from .tensors import is_cuda, torch_for_numpy, torch_threads
from .xp import get_workers, set_workers

if TYPE_CHECKING:  # torch is optional: named in annotations only
    from numpy.typing import ArrayLike
    from torch import Tensor

__all__ = ["Plan", "BoundPlan", "plan_problem", "choose_method", "parse_memory"]

_MIB = 1 << 20


# the calls a reused plan is expected to serve, over which its filters' preparation is
# spread when plans are ranked: no more than that is known of the future. Where a
# method's time per call ties with one that prepares nothing (7x7 32->32 on 4 x 64x64:
# the FFT and oneDNN, 4.50 and 4.51 ms estimated, 4.3-4.8 and 4.2 measured), the
# FFT's filter transforms (15 ms) decide for the other.
REUSED_CALLS = 16
# how a ranking's reason names its assumption where a candidate prepares its filters
_REUSED = f" per call of a reused plan (filter transforms spread over {REUSED_CALLS} calls)"
_ONE_CALL = " of one call (filter transforms included)"


@dataclass(frozen=True)
class Candidate:
    """One method the planner considered, with its estimates."""

    method: str
    seconds: float
    flops: float
    peak_bytes: int
    chunk: tuple[int, int]
    fits: bool = True  # the smallest block's temporaries fit the memory budget
    once: float = 0.0  # seconds of ``seconds`` spent once, preparing the filters

    def per_call(self, reused: bool) -> float:
        """The estimate that ranks it: for a plan that will be reused, the filters'
        preparation (made once) spread over :data:`REUSED_CALLS` calls."""
        return self.seconds - self.once * (1 - 1 / REUSED_CALLS) if reused else self.seconds


def fastest(cands, reused: bool) -> str:
    """The method of the candidates within the budget (``fits``) with the lowest
    :meth:`Candidate.per_call` estimate: ``reused`` for a plan that will be called again,
    else for one call."""
    return min((c for c in cands if c.fits), key=lambda c: c.per_call(reused)).method


def _block_bytes(p: Problem, mod, b: int, k: int, budget: int) -> int:
    """Temporaries of one (b, k) block: the method's, plus the unreduced block itself when
    a reduction makes it a temporary that the method does not reduce unit by unit
    (without a reduction, it is written in the result)."""
    unreduced = (
        b * k * p.P * prod(p.O) * p.dtype.itemsize
        if p.reduce is not None and not mod.fuses_reduce(p)
        else 0
    )
    # x's block converted to the compute dtype (integers, float16) is alive meanwhile
    converted = b * p.C * p.P * prod(p.S) * p.dtype.itemsize if p.x_dtype is not None else 0
    searched = 0  # a reduction's own temporaries (bc.peaks: a group of maps in float64)
    if hasattr(p.reduce, "workspace_bytes"):
        maps = prod(p.O) // max(p.reduced_size, 1)
        searched = p.reduce.workspace_bytes(b * k * p.P * maps, p.reduced_size)
    return mod.workspace_bytes(p, b, k, budget) + unreduced + converted + searched


def _chunks(p: Problem, mod, budget: int) -> tuple[int, int]:
    """Largest (batch, bank) block whose temporaries fit the budget: halve the batch
    first (filter state is reused across batch chunks), then the bank. A reduction that
    the method does not fuse makes the unreduced block a temporary: such blocks stay
    within ``REDUCED_BLOCK_BYTES`` too (larger ones are no faster, and the memory a
    reduction saves would be spent on them); so do a masked metric's blocks, whose
    float64 temporaries are several times the block's size (ncc with a mask per
    template, 4 x 512x512 against 16 templates 31x31 in one block of 1.1 GiB:
    0.71-1.42 s a call; in blocks of 128 MiB: 0.77-0.89 s)."""
    room = budget
    if (p.reduce is not None and not mod.fuses_reduce(p)) or p.masked:
        room = min(budget, REDUCED_BLOCK_BYTES)
    return largest_block(p.B, p.K, lambda b, k: _block_bytes(p, mod, b, k, budget), room)


# x shapes, dtypes and layouts whose problem and blocks a plan remembers (problem_for)
_KNOWN_PROBLEMS = 16

# the largest block of a call whose reduction the method does not fuse (see _chunks)
REDUCED_BLOCK_BYTES = 128 << 20


def _state_bytes(p: Problem, name: str) -> int:
    return metric_state_bytes(p, module_of(name))


def _room(p: Problem, name: str, budget: int) -> int:
    """What the budget leaves for a call's temporaries once the plan holds the filter
    state of method ``name`` (the budget counts everything beyond the inputs and the
    result)."""
    return max(budget - _state_bytes(p, name), 0)


def refuse_grad(x) -> None:
    """TypeError for a torch tensor that requires grad, in grad mode: a plan's result
    would come back detached, and a model would train without that path."""
    if records_grad(x):
        raise TypeError(
            "x requires grad, and a plan's result is not differentiable; call "
            "bc.correlate / bc.convolve (differentiable, and they reuse the plan they "
            "remember), or run the plan under torch.no_grad() or on x.detach()"
        )


@dataclass(eq=False)
class Plan:
    """A prepared correlation: call it with ``x`` to get the result.

    Attributes: ``problem``, ``method`` (the chosen method's name), ``chunk`` (batch and
    bank items per block), ``memory`` (the budget in bytes), ``candidates``, ``reason``,
    ``reused`` (True: ranked as a plan called again, or one call and a reused plan rank
    alike; False: ranked for one call, as ``correlate``'s first call with new filters;
    None: no ranking chose).

    Plans compare and hash by identity (comparing filter states would mean comparing
    their arrays), so they can be dictionary keys and set members.
    """

    problem: Problem
    method: str
    chunk: tuple[int, int]
    memory: int
    workers: int | None
    candidates: tuple[Candidate, ...]
    reason: str
    state: object = field(repr=False)
    # the canonical filters (an array, or a tensor on the plan's device), kept by plans
    # whose method spreads a NaN/Inf over whole items (an FFT) to keep them local (see
    # _redo_nonfinite)
    filters: Any = field(default=None, repr=False)
    # where a torch method runs ("cpu", "cuda:0"); None for the NumPy methods
    device: str | None = None
    # the filters holding a NaN/Inf (indices; with ``filters``): redone directly
    bad_filters: np.ndarray | None = field(default=None, repr=False, compare=False)
    # the compiled kernels were on when it was planned (compiled.enabled()): its calls
    # run with the same setting, whatever use_numba says then, since the method's
    # choices and the blocks were sized for those kernels; None: not recorded
    compiled: bool | None = None
    # how the estimates ranked the methods: for a plan called again, or alike either way
    # (True); for one call where that picked another method (False: correlate's first
    # call with these filters, re-ranked when they come back); None where no ranking
    # chose (method= named one, integer inputs, timed candidates)
    reused: bool | None = None

    def __post_init__(self) -> None:
        if self.filters is not None and self.bad_filters is None:
            self.bad_filters = self.backend.nonfinite_filters(self.filters)

    @property
    def _shortcuts(self) -> dict:
        """One-call paths per input layout, learned and run by the plan's backend
        (``one_block``, ``run_shortcut``). Kept in the plan's memo
        (``memo.py``), not in the plan: a plan is a value that calls do not change; not
        pickled (they hold modules and bound calls), relearned on the first call."""
        return remembered(self, "shortcuts", dict)

    @property
    def module(self):
        """The method module that computes this plan (registered, or since unregistered:
        ``methods.module_of``)."""
        return module_of(self.method)

    @property
    def flops(self) -> float:
        """Estimated floating-point operations of one call."""
        return flops(self.problem, self.method)

    @property
    def peak_bytes(self) -> int:
        """Estimated peak bytes beyond the inputs and the result (temporaries + filter
        state)."""
        mod = method_for(self.problem, self.method, self.device)
        room = _room(self.problem, self.method, self.memory)
        # (the estimates count work per thread, and the kernels the calls run)
        with set_workers(self.workers), self._planned_kernels():
            block = _block_bytes(self.problem, mod, *self.chunk, room)
        return block + _state_bytes(self.problem, self.method)

    @property
    def state_bytes(self) -> int:
        """Bytes the plan holds for the filters (e.g. their spectra)."""
        return _state_bytes(self.problem, self.method)

    @overload
    def __call__(self, x: Tensor) -> Tensor: ...

    @overload
    def __call__(self, x: ArrayLike) -> np.ndarray: ...

    def __call__(self, x: Any, progress=None) -> np.ndarray | Tensor:
        """Run the plan on ``x``: the planned shape, or another size of the batch axes
        (e.g. a last, smaller minibatch); a dtype that does not need a wider type. A
        tensor gives a tensor (on ``x``'s device), anything else a NumPy array.
        ``progress``: ``f(done, total)`` after each block, or True for a bar on stderr
        (``progress.py``). A tensor that requires grad (in grad mode) is refused: a
        plan's result is not differentiable, ``bc.correlate`` is (and reuses the plan it
        remembers)."""
        refuse_grad(x)
        if self.device is not None:  # a torch method, on the tensors' device
            be = self.backend
            xt, give_back = be.take(x)
            y = self._run(xt, be.layout_of(xt), None, be, progress)
            y = y if give_back is None else give_back(y)
        else:
            x, kind = to_numpy(x, "x")
            y = self._run(x, NUMPY.layout_of(x), None, None, progress)
            y = y if kind is None else from_numpy(y, kind)
        return self._returned(y)

    def _returned(self, y):
        """A call's result as the caller gets it: ``bc.peaks``' packed result unpacked
        into a ``PeakResult``, anything else as it is."""
        p = self.problem
        return y if p.reduce_tail == () else unpack(p.reduce, y, p.dtype)

    def bind(self, x_like: Any) -> BoundPlan:
        """This plan made ready for inputs laid out as ``x_like`` (an array or tensor, or
        ``(shape, dtype)`` for a C-ordered one): the problem for that shape, dtype and
        strides, and its block sizes, are worked out here once instead of on every call
        (see :class:`BoundPlan`). Raises as a call with such an ``x`` would.

        >>> import numpy as np, batchconv as bc
        >>> x = np.ones((4, 100))
        >>> f = bc.plan(x, np.ones((3, 5)), reduce="max").bind(x)
        >>> f(x).shape, f.chunk
        ((4, 3), (4, 3))
        """
        if isinstance(x_like, tuple):  # (shape, dtype)
            shape, dtype = tuple(int(n) for n in x_like[0]), np.dtype(x_like[1])
            layout = ("numpy", shape, _c_strides(shape, dtype.itemsize), dtype.str)
        elif self.module.ON_TENSORS and is_torch(x_like):
            layout = self.backend.layout_of(x_like)
            shape, dtype = layout[1], numpy_dtype(x_like.dtype)
        else:  # (a torch CPU tensor: as the NumPy array it is read as)
            a, _ = to_numpy(x_like, "x_like")
            shape, dtype = a.shape, a.dtype
            layout = ("numpy", shape, a.strides, dtype.str)
        elements = None if layout[0] == "torch" else tuple(n // dtype.itemsize for n in layout[2])
        problem, chunk = self.problem_for(shape, dtype, elements)
        return BoundPlan(self, layout, problem, chunk)

    @property
    def backend(self):
        """The backend its calls run on: torch tensors on the plan's device for a torch
        method (only those have a device), else NumPy arrays (``backends/numpy.py``,
        ``backends/torch.py``)."""
        return NUMPY if self.device is None else TorchBackend.on(self.device)

    def _run(self, x, layout: tuple, resolved=None, be=None, progress=None):
        """A call on ``x`` (an array or tensor of the plan's backend) laid out as
        ``layout``: the remembered one-block path for that layout, or the block loop
        (``resolved``: its problem and block sizes, when a :class:`BoundPlan` has them),
        with the kernels it was planned for."""
        be = be or self.backend
        if self.compiled is not None and self.compiled != compiled.enabled():
            with self._planned_kernels():  # (where numba is gone, the NumPy code runs)
                return self._reported(x, layout, resolved, be, progress)
        return self._reported(x, layout, resolved, be, progress)

    def _reported(self, x, layout: tuple, resolved, be, progress):
        """The block loop, telling ``progress`` (``progress.py``) block by block."""
        rep = reporter(progress, 1)  # (None for progress None or False)
        if rep is None:
            return self._run_blocks(x, layout, resolved, be)
        with rep:
            return self._run_blocks(x, layout, resolved, be, rep)

    def _run_blocks(self, x, layout: tuple, resolved, be, rep=None):
        """The block loop, for every backend: blocks of (items, filters) sized to the
        budget, each computed into the result or reduced into it; the items whose FFT
        results a NaN/Inf spread over redone exactly; one retry with half the block where
        the backend ran out of device memory, never a partial result. ``rep``: told of
        each block done (:class:`~batchconv.progress.Reporter`)."""
        retried = False
        shortcut = self._shortcuts.get(layout)
        if shortcut is not None:
            try:
                y = be.run_shortcut(self, shortcut, x)
                if rep is not None:
                    rep.step()
                return y
            except Exception as e:  # out of memory: the loop below runs half blocks
                if not be.is_out_of_memory(e):
                    raise
                retried = True
        p, (cb, ck) = resolved or self.problem_for(*be.problem_args(x))
        mod = method_for(p, self.method, self.device)
        xc = be.canonical_x(p, x)
        be.check_result_fits(p, self.memory)
        computes = p.window_size and prod(p.canonical_out_shape)
        if not retried and p.reduce is None and cb >= p.B and ck >= p.K and computes:
            try:
                y = be.one_block(self, layout, p, mod, x, xc)
            except Exception as e:
                if not be.is_out_of_memory(e):
                    raise
                y, retried = None, True
            if y is not None:
                if rep is not None:
                    rep.step()
                return y
        if retried:  # the one block did not fit: halve it, once
            cb, ck = be.halved(cb, ck)
        if rep is not None:
            rep.set_total(-(-p.B // cb) * -(-p.K // ck) if computes else 1)
        final, canon = be.result(p)
        axes = tuple(3 + i for i in p.reduced_axes)
        reduce = None if p.reduce is None else lambda block: be.reduce(p.reduce, block, axes)
        if prod(canon.shape) and not p.window_size:  # sums over nothing
            zeros = be.zeros((p.B, p.K, p.P, *p.O), p.dtype)
            canon[...] = zeros if reduce is None else reduce(zeros)
        check = self.checks_nonfinite(p)
        flagged: set[int] = set()
        with be.scope(self.workers):
            b0 = 0
            while b0 < p.B and computes:
                xb = None  # (a converted block: freed before the next is made)
                xb = be.batch_block(p, xc, b0, b0 + cb)
                k0 = 0
                while k0 < p.K:
                    k1 = min(k0 + ck, p.K)
                    dest = canon[b0 : b0 + cb, k0:k1]
                    try:
                        local = self._compute_block(p, mod, xb, k0, k1, dest, reduce, check)
                    except Exception as e:
                        if not be.is_out_of_memory(e) or retried or (cb == 1 and ck == 1):
                            raise
                        retried = True  # never a partial result: a second failure raises
                        cb, ck = be.halved(cb, ck)
                        xb = None
                        xb = be.batch_block(p, xc, b0, b0 + cb)
                        if rep is not None:  # the rest of this row, the rows after it
                            rows = -(-max(p.B - b0 - cb, 0) // cb)
                            left = -(-(p.K - k0) // ck) + rows * -(-p.K // ck)
                            rep.set_total(rep.done + left)
                        continue
                    flagged.update(b0 + i for i in local)
                    k0 = k1
                    if rep is not None:
                        rep.step()
                b0 = min(b0 + cb, p.B)
            if check:
                self._redo_nonfinite(be, p, xc, canon, reduce, flagged)
        if rep is not None and not computes:
            rep.step()
        return final if final is not None else final_view(p, canon)

    def _compute_block(self, p, mod, xb, k0: int, k1: int, dest, reduce, check) -> set[int]:
        """One (items, filters) block into ``dest``: written by the method, reduced unit
        by unit by it (a method that fuses the reduction), or reduced here. Returns the
        items (block positions) whose results a NaN/Inf spread over (``check``)."""
        local: set[int] = set()
        kw = {"nonfinite": local} if check else {}
        if reduce is None:  # the method writes straight into the result
            mod.compute(p, self.state, xb, k0, k1, out=dest, **kw)
        elif mod.fuses_reduce(p):  # ... reducing unit by unit
            mod.compute(p, self.state, xb, k0, k1, out=dest, reduce=reduce, **kw)
        else:  # the unreduced block is a temporary, freed before the next
            dest[...] = reduce(mod.compute(p, self.state, xb, k0, k1, **kw))
        return local

    def problem_for(
        self, shape: tuple[int, ...], dtype, strides: tuple[int, ...] | None = None
    ) -> tuple[Problem, tuple[int, int]]:
        """The problem and (batch, bank) block size for an ``x`` of ``shape``, ``dtype``
        (a NumPy dtype) and element ``strides`` (None: laid out as planned; the torch
        methods do not depend on it): the planned one, or the same with other sizes of
        the batch axes, or another layout. Raises for any other shape, or a dtype that
        needs a wider type; MemoryError where the budget does not fit this x (another
        layout or dtype may need a copy the planned x did not: Winograd copies
        channels-first data that it reads in place channels-last, and a block of x to be
        converted is a copy). Remembered per x (shape, dtype, strides, workers)."""
        p, chunk = self.problem, self.chunk
        shape, dtype = tuple(shape), np.dtype(dtype)
        if dtype.kind not in "iufc":  # booleans, strings, objects: as correlate says
            result_dtype(dtype, p.dtype)
        if np.result_type(dtype, p.dtype) != p.dtype and not (
            dtype.kind in "iu" and p.dtype == np.float64
        ):
            raise TypeError(
                f"this plan computes in {p.dtype}; x of dtype {dtype} would need "
                f"{np.result_type(dtype, p.dtype)}: make a new plan"
            )
        # (remembered per x: another layout's blocks are sized once, not on every call)
        key = (shape, dtype.str, None if strides is None else tuple(strides), get_workers())
        known = remembered(self, "problems", dict)
        found = known.get(key)
        if found is not None:
            return found
        x_dtype = None if dtype == p.dtype else dtype
        if x_dtype != p.x_dtype:  # another conversion copy (or none)
            p = replace(p, x_dtype=x_dtype)
        if strides is not None and len(shape) == len(p.x_shape):  # (else refused below)
            layout = x_layout(p.spec, shape, strides)
            if layout != (p.x_unit_axis, p.x_contiguous, p.x_channels_adjacent):  # other copies
                unit, contiguous, adjacent = layout
                p = replace(
                    p, x_unit_axis=unit, x_contiguous=contiguous, x_channels_adjacent=adjacent
                )
        if shape != p.x_shape:
            p = p.with_batch_shape(shape)
            if p is None:
                batch = "".join(self.problem.spec.batch) or "none"
                raise ValueError(
                    f"this plan was made for x of shape {self.problem.x_shape}, "
                    f"got {shape}; only the batch axes ({batch!r}) may differ"
                )
        if p is not self.problem:  # other blocks for it
            room = _room(self.problem, self.method, self.memory)
            with set_workers(self.workers), self._planned_kernels():  # (as calls run)
                mod = method_for(p, self.method, self.device)
                chunk = _chunks(p, mod, room)
                need = _block_bytes(p, mod, *chunk, room)
            if need > room:  # (a conversion or a layout may need a copy the planned x did not)
                planned = self.problem
                raise MemoryError(
                    f"this plan's memory budget of {format_bytes(self.memory)} does not fit "
                    f"x {shape} of dtype {dtype} with element strides {strides} even one "
                    f"item against one filter at a time ({self.method} needs "
                    f"{format_bytes(need)} beside its filter state; the plan was made for "
                    f"x {planned.x_shape} of dtype {planned.x_dtype or planned.dtype}): "
                    f"pass x in the planned dtype and layout, or make a new plan with a "
                    f"larger memory="
                )
        if len(known) >= _KNOWN_PROBLEMS:  # (many batch sizes: start again)
            known.clear()
        known[key] = (p, chunk)
        return p, chunk

    def checks_nonfinite(self, p: Problem) -> bool:
        """Whether a call of ``p`` follows the NaN/Inf policy (:meth:`_redo_nonfinite`):
        the plan's method spreads a NaN/Inf over whole items (it keeps ``filters``) and
        the data are floating point. The method then flags the items whose results are
        not all finite, and the plan redoes them."""
        return self.filters is not None and p.dtype.kind in "fc"

    def _redo_nonfinite(self, be, p: Problem, xc, canon, reduce, flagged: set[int]) -> None:
        """The NaN/Inf policy of a method that declares ``SPREADS_NONFINITE`` (an FFT, in
        which one NaN or Inf reaches every output of its item), for every backend: the
        items it flagged are transformed again with zeros in place of their NaN/Inf
        (and of a non-finite ``cval``), and the windows that cover one are summed
        directly on the host (``nonfinite.py``: a few short sums); the filters that hold
        a NaN or Inf (the method's spectra were made with zeros there) are redone by the
        method's ``exact_method`` (direct; on CUDA torch_direct)."""
        if flagged:
            self._redo_items(be, p, xc, canon, reduce, np.array(sorted(flagged), np.intp))
        if self.bad_filters.size:  # a bank of their own: the exact method's best kernel
            exact = getattr(self.module, "exact_method", None)
            exact = direct_method if exact is None else exact(p, self.device)
            bad = self.bad_filters
            q = replace(p, K=bad.size, bank_shape=(bad.size,))
            state = remembered(
                self, "exact", lambda: exact.prepare(q, self.filters[be.index(bad)], self.memory)
            )
            dcb, dck = _chunks(q, exact, self.memory)
            for b0 in range(0, p.B, dcb):
                xb = None  # (freed before the next block is converted)
                xb = be.batch_block(p, xc, b0, b0 + dcb)
                for k0 in range(0, q.K, dck):
                    r = exact.compute(q, state, xb, k0, min(k0 + dck, q.K))
                    where = be.index(bad[k0 : k0 + dck])
                    canon[b0 : b0 + dcb, where] = r if reduce is None else reduce(r)

    def _redo_items(self, be, p: Problem, xc, canon, reduce, items: np.ndarray) -> None:
        """The flagged ``items`` (see :meth:`_redo_nonfinite`), ``chunk`` at a time."""
        cb, ck = self.chunk
        zeros = p if np.isfinite(p.cval) else replace(p, cval=0.0)
        filters = remembered(self, "host filters", lambda: be.to_host(self.filters))
        for i in range(0, items.size, cb):
            it = be.index(items[i : i + cb])
            xb = be.batch_block(p, xc[it], 0, len(it))
            xh = be.to_host(xb)
            where = affected_windows(p, (~np.isfinite(xh)).any(axis=1))
            xz = be.zero_nonfinite(xb)
            for k0 in range(0, p.K, ck):
                k1 = min(k0 + ck, p.K)
                block = self.module.compute(zeros, self.state, xz, k0, k1)
                for index, values in window_values(p, xh, filters, where, k0, k1, self.memory):
                    be.put(block, index, values)
                canon[it, k0:k1] = block if reduce is None else reduce(block)

    def _planned_kernels(self) -> compiled.use_numba:
        """The compiled kernels switched as they were when the plan was made."""
        return compiled.use_numba(self.compiled)

    def explain(self) -> str:
        """A readable account of the problem, the candidates and why the winner won."""
        with self._planned_kernels():
            return self._explain()

    def _explain(self) -> str:
        p = self.problem
        lines = [*explain_lines(p, "batchconv plan"), "  candidates:"]
        for c in self.candidates:
            mark = "*" if c.method == self.method else " "
            lines.append(
                f"   {mark} {c.method:<12} ~{c.seconds * 1e3:10.2f} ms  "
                + (f"(filters {c.once * 1e3:.2f} ms once)  " if c.once else "")
                + f"{c.flops / 1e9:9.3f} GFLOP  peak {c.peak_bytes / _MIB:9.1f} MiB  "
                f"chunk (batch {c.chunk[0]}, bank {c.chunk[1]})"
                + ("" if c.fits else "  over the memory budget")
            )
        computing = method_for(p, self.method, self.device)
        room = _room(p, self.method, self.memory)
        described = computing.describe(p, self.state, room, self.device)
        lines += ["  " + line for line in described.splitlines()]
        n_blocks = -(-p.B // self.chunk[0]) * -(-p.K // self.chunk[1])
        lines.append(
            f"  chosen: {self.method} ({self.reason}); {n_blocks} block(s) within "
            f"a budget of {format_bytes(self.memory)}"
        )
        return "\n".join(lines)


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Byte strides of a C-ordered array of ``shape``."""
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


@dataclass(frozen=True, eq=False)
class BoundPlan:
    """A :class:`Plan` bound to one input layout (:meth:`Plan.bind`), like opt_einsum's
    ``ContractExpression``: calling it skips working out the problem and the block sizes
    for ``x``, which a plan does on each call that takes no remembered one-block path
    (e.g. with a reduction). ``x`` must have the bound shape, strides and dtype (call
    the plan itself for others). A value, as the plan is.

    Attributes: ``plan``, ``layout`` (the array library, shape, strides, dtype),
    ``problem`` (the :class:`~batchconv.problem.Problem` for that layout) and ``chunk``
    (batch and bank items per block).
    """

    plan: Plan
    layout: tuple
    problem: Problem
    chunk: tuple[int, int]

    @overload
    def __call__(self, x: Tensor) -> Tensor: ...

    @overload
    def __call__(self, x: ArrayLike) -> np.ndarray: ...

    def __call__(self, x: Any, progress=None) -> np.ndarray | Tensor:
        """The plan's result for ``x``, laid out as bound (``progress`` as
        :meth:`Plan.__call__`'s)."""
        refuse_grad(x)
        if self.layout[0] == "torch":
            be = self.plan.backend
            self._check(be.layout_of(x) if is_torch(x) else ("other", type(x).__name__))
            xt, _ = be.take(x)
            y = self.plan._run(xt, self.layout, (self.problem, self.chunk), None, progress)
        else:
            a, kind = to_numpy(x, "x")
            layout = NUMPY.layout_of(a)
            self._check(layout)
            if self.plan.device is None:
                y = self.plan._run(a, layout, (self.problem, self.chunk), None, progress)
            else:  # a torch method on the CPU: the array shared with it, both ways
                be = self.plan.backend
                xt, give_back = be.take(a)
                y = give_back(self.plan._run(xt, layout, (self.problem, self.chunk), be, progress))
            y = y if kind is None else from_numpy(y, kind)
        return self.plan._returned(y)

    def _check(self, layout: tuple) -> None:
        if layout != self.layout:
            _, shape, strides, dtype = self.layout
            got = layout[1:] if len(layout) == 4 else (layout[1], "?", "?")
            raise ValueError(
                f"this plan is bound to x of shape {shape}, strides {strides} and dtype "
                f"{dtype}; got shape {got[0]}, strides {got[1]}, dtype {got[2]}: call the "
                f"plan itself, or bind it to this layout"
            )

    def explain(self) -> str:
        """The plan's :meth:`Plan.explain`, and the problem and blocks of this layout."""
        p = self.problem
        blocks = -(-p.B // self.chunk[0]) * -(-p.K // self.chunk[1])
        return (
            f"{self.plan.explain()}\n  bound to x {p.x_shape} ({self.layout[0]}, "
            f"strides {self.layout[2]}, {self.layout[3]}): {blocks} block(s) of "
            f"(batch {self.chunk[0]}, bank {self.chunk[1]})"
        )


@problem_cache(maxsize=512)
def _candidates(
    p: Problem,
    names: tuple[str, ...],
    budget: int,
    workers: int,
    compiled_kernels: bool,
    device: str | None,
) -> tuple[Candidate, ...]:
    """Estimates and chunks per method; they depend only on the problem, the budget, the
    thread count and whether the compiled kernels run, so repeated calls with the same
    shapes skip this work."""
    cands = []
    with set_workers(workers):
        for n in names:
            mod = method_for(p, n, device)
            room = _room(p, n, budget)  # for temporaries, beside the filter state
            chunk = _chunks(p, mod, room)
            block = _block_bytes(p, mod, *chunk, room)
            state = _state_bytes(p, n)
            cands.append(
                Candidate(
                    n,
                    estimate(p, n, device),
                    flops(p, n),
                    block + state,
                    chunk,
                    block + state <= budget,
                    once_estimate(p, n, device),
                )
            )
    return tuple(cands)


ON_CHANGE.append(_candidates.cache_clear)  # (its keys name methods and metrics)
metrics.ON_CHANGE.append(_candidates.cache_clear)


def _method_names(p: Problem, method: str, device: str | None) -> tuple[str, ...]:
    """The candidates for ``method`` on ``device`` (None: NumPy data; "cpu": torch CPU
    tensors, which the NumPy methods read without a copy; "cuda...": torch methods
    only, where "direct" and "fft" mean their torch forms)."""
    on_gpu = is_cuda(device)
    if method != "auto":
        if not on_gpu:
            get_method(method)  # a registered name (unknown names list the valid ones)
        if on_gpu and not getattr(METHODS.get(method), "ON_TENSORS", False):
            twin = [n for n, m in METHODS.items() if m.ON_TENSORS and m.STANDS_FOR == method]
            if twin:
                return (twin[0],)
            on_tensors = [n for n, m in METHODS.items() if m.ON_TENSORS]
            raise ValueError(
                f"method {method!r} runs on the CPU; x is on {device}: use 'auto', "
                f"'measure', one of {on_tensors} or the names they stand for there"
            )
        return (method,)
    numpy_names = () if on_gpu else methods_for_metric(p.metric)
    numpy_names = tuple(n for n in numpy_names if get_method(n).applies(p, device) is None)
    if callable(p.reduce) and not on_gpu:  # it gets NumPy blocks
        return numpy_names
    if device is None:  # NumPy arrays: torch's CPU methods join where they say they may
        return numpy_names + _joining_numpy(p)
    # every problem has a torch method: torch_fft all but SAD, torch_direct SAD
    on_tensors = methods_for_metric(p.metric, on_tensors=True)
    return numpy_names + tuple(n for n in on_tensors if get_method(n).applies(p, device) is None)


def _joining_numpy(p: Problem) -> tuple[str, ...]:
    """The torch methods that are candidates for NumPy arrays of ``p`` now: none unless
    the program imported torch (``bc.use_torch``) and torch's CPU threads fit in the
    call's ``workers`` (torch keeps its own count: inside a task with ``workers=1`` its
    threads would oversubscribe the cores), then those whose ``joins_numpy(p)`` says
    their cost model holds there (see ``methods/__init__.py``)."""
    if not torch_for_numpy() or torch_threads() > get_workers():
        return ()
    joining = []
    for n in methods_for_metric(p.metric, on_tensors=True):
        mod = get_method(n)
        joins = getattr(mod, "joins_numpy", None)
        if joins is not None and joins(p) and mod.applies(p, "cpu") is None:
            joining.append(n)
    return tuple(joining)


def choose_method(
    p: Problem,
    method: str = "auto",
    memory=None,
    workers: int | None = None,
    device: str | None = None,
    reused: bool = False,
):
    """``(method name, reason, candidates, budget)``: what :func:`plan_problem` picks for
    ``p``, without touching the filters. ``device``: where torch tensors live (None for
    NumPy data); ``reused``: the plan will be called again, so its filters' preparation
    (the FFT methods' transforms) is spread over :data:`REUSED_CALLS` calls. Raises as
    it does (unknown method, bad ``memory``/``workers``, ``MemoryError`` when no method
    fits the budget)."""
    return _choose(p, method, memory, workers, device, reused)[:4]


def _choose(p: Problem, method: str, memory, workers, device, reused: bool):
    """:func:`choose_method`'s answer and a fifth value, the plan's ``reused``: how the
    estimates ranked the methods (None where no ranking chose)."""
    budget = parse_memory(memory, device)
    if method == "measure":  # the model's candidates; plan_problem times them
        method = "auto"
    with set_workers(workers):
        names = _method_names(p, method, device)
        for n in names:
            method_for(p, n, device)  # unknown names and impossible combinations raise here
        cands = _candidates(p, names, budget, get_workers(), compiled.enabled(), device)
    fitting = [c for c in cands if c.fits]
    if not fitting:
        need = ", ".join(f"{c.method} {format_bytes(c.peak_bytes)}" for c in cands)
        raise MemoryError(
            f"no method fits a memory budget of {format_bytes(budget)} for x {p.x_shape} and "
            f"w {p.w_shape}, even one item against one filter at a time (filter state and "
            f"temporaries needed: {need}); raise memory= or use a smaller problem"
        )
    ranked = None
    if method != "auto":
        chosen, reason = names[0], "asked for by method="
    elif p.integer_inputs and any(get_method(c.method).EXACT_FOR_INTEGERS for c in fitting):
        chosen = next(c.method for c in fitting if get_method(c.method).EXACT_FOR_INTEGERS)
        reason = f"integer inputs: {chosen} is exact"
    else:
        chosen = fastest(fitting, reused)
        # (where the other assumption picks the same, the choice holds for either)
        either = chosen == fastest(fitting, not reused)
        ranked = True if either else reused
        reason = _ranking_reason(cands, None if either else reused, device)
    return chosen, reason, cands, budget, ranked


def _ranking_reason(cands, reused: bool | None, device: str | None) -> str:
    """Why the estimates' ranking of ``cands`` chose (a plan's ``reason``); ``reused``:
    the assumption that decided, None where one call and a reused plan rank alike."""
    fitting = [c for c in cands if c.fits]
    reason = "lowest estimated time" + {None: "", True: _REUSED, False: _ONE_CALL}[reused]
    if len(fitting) < len(cands):
        reason += " among the methods within the memory budget"
    if device is None and any(get_method(c.method).ON_TENSORS for c in cands):
        reason += (
            "; oneDNN (torch's CPU convolution) was a candidate for these NumPy "
            "arrays (bc.use_torch(False) leaves it out)"
        )
    return reason


def as_reused(plan: Plan, max_state_bytes: float = float("inf")) -> Plan | None:
    """What a plan cache keeps for filters that came back, given ``plan``, made for
    their first call: ``plan`` itself where a ranking for reuse picks the same (always,
    unless ``plan.reused`` is False: that marks a one-call ranking that differed); None
    where it prefers a method whose filter state is at most ``max_state_bytes`` (plan
    again, with ``reused=True``); else ``plan``, its reason saying why (a cache that
    cannot keep that plan would make it on every call: 7x7 32->32 on 1 x 128x128, 68 MB
    of FFT spectra, 96 ms a call against the direct GEMM's 14)."""
    if plan.reused is not False:
        return plan
    method = fastest(plan.candidates, reused=True)
    held = _state_bytes(plan.problem, method)
    if held <= max_state_bytes:
        return None
    return replace(
        plan,
        reason=f"{plan.reason}; a reused plan's {method} would hold {format_bytes(held)} of "
        f"filter state, more than correlate's plan cache keeps ({format_bytes(max_state_bytes)}; "
        "bc.plan keeps it)",
    )


def plan_problem(
    p: Problem,
    w,
    method: str = "auto",
    memory=None,
    workers: int | None = None,
    device: str | None = None,
    mask: np.ndarray | None = None,
    reused: bool = False,
) -> Plan:
    """Choose the method and chunks for ``p`` and prepare the filters ``w`` (a NumPy
    array, or a tensor; ``device``: where torch tensors live, None for NumPy data) with
    the ``mask`` of a masked problem (float64 weights of ``w``'s shape:
    ``metrics.masked.check_mask``).
    ``method="measure"``, and ``"auto"`` on a CUDA device, time the close candidates
    (see ``measure.py``). ``reused``: see :func:`choose_method`."""
    timed = method == "measure" or (method == "auto" and is_cuda(device))
    chosen, reason, cands, budget, ranked = _choose(p, method, memory, workers, device, reused)
    if timed:
        choice = timed_choice(
            p,
            [c for c in cands if c.fits],
            lambda name: _prepare(p, w, name, cands, budget, workers, device, reason, mask),
            device,
            workers,
        )
        if choice is not None:
            plan, reason = choice
            return replace(plan, reason=reason)
    return _prepare(p, w, chosen, cands, budget, workers, device, reason, mask, ranked)


def _prepare(
    p: Problem,
    w,
    chosen: str,
    cands,
    budget: int,
    workers: int | None,
    device: str | None,
    reason: str,
    mask: np.ndarray | None = None,
    reused: bool | None = None,
) -> Plan:
    """The plan of method ``chosen``: the filters (and mask) prepared on its device
    (``reused``: the plan's attribute)."""
    cand = next(c for c in cands if c.method == chosen)
    made = (p, chosen, cand.chunk, budget, workers, cands, reason)
    on_tensors = get_method(chosen).ON_TENSORS
    dev = (device or "cpu") if on_tensors else None
    be = NUMPY if dev is None else TorchBackend.on(dev)
    if on_tensors:
        wc = tensor_canonical_w(p, w, dev)
    else:
        wc = canonical_w(p, to_numpy(w, "w")[0])
    computing = method_for(p, chosen, dev)
    if p.masked:  # the mask laid out as the filters, in float64 (metrics/masked.py)
        q = replace(p, dtype=np.dtype(np.float64), conj=False)
        m = np.ascontiguousarray(mask)
        mc = tensor_canonical_w(q, m, dev) if on_tensors else canonical_w(q, m)
        with set_workers(workers):
            state = computing.prepare(p, (wc, mc), _room(p, chosen, budget))
        return Plan(*made, state, device=dev, compiled=compiled.enabled(), reused=reused)
    # where a NaN/Inf would spread over the items' results, the plan redoes them exactly
    # (Plan._redo_nonfinite): the method gets zeros in place of the filters' NaN/Inf
    spreads = getattr(computing, "SPREADS_NONFINITE", False)
    bad = be.nonfinite_filters(wc) if spreads else None
    with set_workers(workers):
        state = computing.prepare(
            p,
            be.zero_nonfinite(wc) if bad is not None and bad.size else wc,
            _room(p, chosen, budget),
        )
    return Plan(
        *made,
        state,
        filters=wc if spreads else None,
        device=dev,
        bad_filters=bad,
        compiled=compiled.enabled(),
        reused=reused,
    )
