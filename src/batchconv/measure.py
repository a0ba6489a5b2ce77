"""Measured planning: time the candidates that the cost model cannot tell apart, once per
problem and device, and keep the fastest.

``method="measure"`` asks for it anywhere; ``method="auto"`` does it on CUDA devices,
whose cost model is not fitted (cuDNN's speed jumps between kernel sizes: with 16
channels and a bank of 128 on an H100 it took 8 ms at 5x5 and 1026 ms at 63x63, where
an FFT stayed at 11.5 ms). Each candidate whose estimate is within ``CLOSE`` times the
best runs as a real plan on random input with at most ``SAMPLE_ITEMS`` batch items:
once to warm up (cuFFT plans, cuDNN's algorithm search, numba's compilation), then
``REPEATS`` times; its best time counts. The choice is remembered for the problem
(shapes, dtypes, options), the device, the thread count and the budget, so a loop of
calls times once. Integer inputs are not timed: ``direct`` is exact for them.

>>> import numpy as np, batchconv as bc
>>> p = bc.plan(((8, 64, 64), np.float32), np.ones((4, 9, 9), np.float32), method="measure")
>>> p.reason.startswith("fastest when timed")
True
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from math import prod

import numpy as np

from .problem import Problem
from .tensors import is_cuda, to_device

__all__ = ["timed_choice", "sample_input", "CLOSE", "SAMPLE_ITEMS", "REPEATS"]

CLOSE = 10.0  # time the candidates estimated within this factor of the best
SAMPLE_ITEMS = 4  # batch items in the timed input (the methods scale linearly in them)
REPEATS = 3
_choices: dict[tuple, tuple[str, str]] = {}
_lock = threading.Lock()


def sample_input(p: Problem, device: str | None):
    """Random input of ``p``'s shape with at most ``SAMPLE_ITEMS`` batch items (the batch
    axes shrunk in spec order), in the compute dtype; a tensor on ``device`` when given."""
    sp = p.spec
    shape, left = list(p.x_shape), SAMPLE_ITEMS
    for letter in sp.batch:
        i = sp.x.index(letter)
        shape[i] = min(shape[i], max(left, 1))
        left //= max(shape[i], 1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    if p.dtype.kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    x = x.astype(p.dtype)
    return x if device is None else to_device(x, device)


def _seconds(plan, x, device: str | None) -> float:
    """Best of ``REPEATS`` runs of ``plan(x)`` after one warm-up run."""
    if is_cuda(device):
        import torch

        def sync():
            torch.cuda.synchronize(device)
    else:
        def sync():
            pass
    plan(x)
    sync()
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        plan(x)
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def timed_choice(p: Problem, estimates: dict[str, float], build: Callable[[str], object],
                 device: str | None, key: tuple, force: bool = False):
    """``(plan, reason)`` of the fastest candidate when timed, or None when there is
    nothing to time (one close candidate, or integer inputs). ``estimates``: the model's
    seconds per fitting candidate; ``build(name)``: a plan for that method; ``key``:
    what else the choice depends on (threads, budget); ``force``: time every candidate,
    however far apart their estimates."""
    best_estimate = min(estimates.values())
    close = [n for n, s in estimates.items() if force or s <= CLOSE * best_estimate]
    if len(close) < 2 or p.integer_inputs:
        return None
    full_key = (p, device, tuple(sorted(close)), *key)
    with _lock:
        known = _choices.get(full_key)
    if known is not None:
        return build(known[0]), known[1]
    x = sample_input(p, device)
    items = prod(x.shape[p.spec.x.index(c)] for c in p.spec.batch)
    best, times, error = None, {}, None
    for name in close:
        try:
            plan = build(name)
            times[name] = _seconds(plan, x, device)
        except (MemoryError, RuntimeError) as e:  # out of memory, a cuDNN refusal: skip
            error = e
            continue
        if best is None or times[name] < times[best[0]]:
            best = (name, plan)
    if best is None:
        raise error
    where = device or "the CPU"
    reason = (f"fastest when timed on {where} with {items} item(s): "
              + ", ".join(f"{n} {t * 1e3:.3g} ms" for n, t in sorted(times.items(),
                                                                    key=lambda kv: kv[1])))
    with _lock:
        _choices[full_key] = (best[0], reason)
    return best[1], reason


def forget() -> None:
    """Drop the remembered choices (e.g. after the machine's load changed)."""
    with _lock:
        _choices.clear()
