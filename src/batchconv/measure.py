"""Measured planning: time the candidates that the cost model cannot tell apart, once per
problem and device, and keep the fastest.

``method="measure"`` asks for it anywhere; ``method="auto"`` does it on CUDA devices,
whose cost model is not fitted (cuDNN's speed jumps between kernel sizes: with 16
channels and a bank of 128 on an H100 it took 8 ms at 5x5 and 1026 ms at 63x63, where
an FFT stayed at 11.5 ms). Each candidate whose estimate is within ``CLOSE`` times the
best runs as a real plan on random input with at most ``SAMPLE_ITEMS`` batch items:
once to warm up (cuFFT plans, cuDNN's algorithm search, numba's compilation; not
timed), then ``REPEATS`` times; its best time counts (a candidate whose first timed run
took ``GIVE_UP`` times the best so far is not repeated). The choice is remembered for the
problem (shapes, dtypes, options), the device, the chunks the budget allows, the thread
counts and whether numba runs, so a loop of calls times once; threads planning the same
problem wait for the one that times it. Not timed: integer inputs (``direct`` is exact)
and a callable ``reduce`` (it would run on random data).

>>> import numpy as np, batchconv as bc
>>> p = bc.plan(((8, 64, 64), np.float32), np.ones((4, 9, 9), np.float32), method="measure")
>>> p.reason.startswith("fastest when timed")
True
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from math import prod

import numpy as np

from . import compiled
from .problem import Problem
from .tensors import is_cuda, torch_dtype
from .xp import get_workers, set_workers

__all__ = ["timed_choice", "sample_input", "forget", "CLOSE", "SAMPLE_ITEMS", "REPEATS"]

CLOSE = 10.0  # time the candidates estimated within this factor of the best
SAMPLE_ITEMS = 4  # batch items in the timed input (the methods scale linearly in them)
REPEATS = 3
GIVE_UP = 3.0  # a timed run this many times slower than the best so far ends the timing
_REMEMBERED = 256  # choices kept (least recently used dropped first)
_choices: OrderedDict[tuple, tuple[str, str]] = OrderedDict()
_timing: dict[tuple, threading.Lock] = {}  # one lock per key being timed
_lock = threading.Lock()


def sample_input(p: Problem, device: str | None):
    """Random input of ``p``'s shape with at most ``SAMPLE_ITEMS`` batch items (the batch
    axes shrunk in spec order), in the compute dtype; made on ``device`` when given."""
    sp = p.spec
    shape, left = list(p.x_shape), SAMPLE_ITEMS
    for letter in sp.batch:
        i = sp.x.index(letter)
        shape[i] = min(shape[i], max(left, 1))
        left //= max(shape[i], 1)
    if device is not None:
        import torch

        g = torch.Generator(device=device).manual_seed(0)
        return torch.randn(shape, dtype=torch_dtype(p.dtype), device=device, generator=g)
    rng = np.random.default_rng(0)
    if p.dtype.kind == "c":
        real = np.dtype(p.dtype.char.lower())
        return (
            rng.standard_normal(shape, dtype=real) + 1j * rng.standard_normal(shape, dtype=real)
        ).astype(p.dtype)
    return rng.standard_normal(shape, dtype=p.dtype)


def _seconds(plan, x, device: str | None, best_so_far: float = float("inf")) -> float:
    """Best of ``REPEATS`` runs of ``plan(x)`` after an untimed warm-up run (one run
    alone when it took ``GIVE_UP`` times ``best_so_far``: a warm-up's one-off costs
    would otherwise decide against the method that pays them, e.g. cuFFT's plans)."""
    if is_cuda(device):
        import torch

        def sync():
            torch.cuda.synchronize(device)
    else:

        def sync():
            pass

    plan(x)  # warm-up, not timed: cuFFT plans, cuDNN's algorithm search, compilation
    sync()
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        plan(x)
        sync()
        best = min(best, time.perf_counter() - t0)
        if best > GIVE_UP * best_so_far:  # far behind: no need for its best time
            break
    return best


def _threads() -> tuple:
    """What the timings depend on besides the problem: our thread count, torch's (when
    torch is loaded) and whether the compiled kernels run."""
    torch = sys.modules.get("torch")
    return (
        get_workers(),
        torch.get_num_threads() if torch is not None else None,
        compiled.enabled(),
    )


def timed_choice(
    p: Problem,
    candidates,
    build: Callable[[str], object],
    device: str | None,
    workers: int | None = None,
):
    """``(plan, reason)`` of the fastest candidate when timed, or None when there is
    nothing to time (one close candidate, integer inputs, a callable reduce).
    ``candidates``: the planner's fitting candidates (method, estimate, chunk);
    ``build(name)``: a plan for that method; ``workers``: the call's thread count."""
    best_estimate = min(c.seconds for c in candidates)
    close = [c for c in candidates if c.seconds <= CLOSE * best_estimate]
    if len(close) < 2 or p.integer_inputs or callable(p.reduce):
        return None
    with set_workers(workers):
        threads = _threads()
    key = (p, device, tuple((c.method, c.chunk) for c in close), threads)
    with _lock:
        timing = _timing.setdefault(key, threading.Lock())
    with timing:  # another thread timing this problem: wait for its choice
        with _lock:
            known = _choices.get(key)
            if known is not None:
                _choices.move_to_end(key)
        if known is not None:
            return build(known[0]), known[1]
        name, plan, reason = _time_candidates(p, [c.method for c in close], build, device)
        with _lock:
            _choices[key] = (name, reason)
            while len(_choices) > _REMEMBERED:
                _choices.popitem(last=False)
            _timing.pop(key, None)
    return plan, reason


def _time_candidates(p: Problem, names: list[str], build, device: str | None):
    x = sample_input(p, device)
    items = prod(x.shape[p.spec.x.index(c)] for c in p.spec.batch)
    best, times, error = None, {}, None
    for name in names:
        try:
            plan = build(name)
            times[name] = _seconds(plan, x, device, times[best[0]] if best else float("inf"))
        except Exception as e:  # noqa: BLE001 - out of memory, a cuDNN or Triton refusal
            error = e
            continue
        if best is None or times[name] < times[best[0]]:
            best = (name, plan)
    if best is None:
        raise error
    where = "the CPU" if device in (None, "cpu") else device
    reason = f"fastest when timed on {where} with {items} item(s): " + ", ".join(
        f"{n} {t * 1e3:.3g} ms" for n, t in sorted(times.items(), key=lambda kv: kv[1])
    )
    return best[0], best[1], reason


def forget() -> None:
    """Drop the remembered choices (e.g. after the machine's load changed)."""
    with _lock:
        _choices.clear()
