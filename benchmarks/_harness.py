"""Interleaved timing: every contender runs once per round, round after round, and each
one's median over the rounds is reported. Anchors and ours share the same process, the
same inputs and the same machine state."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import numpy as np


def interleaved(contenders: dict[str, Callable[[], object]], *, rounds: int = 7,
                max_seconds: float = 60.0) -> dict[str, float]:
    """Median seconds per contender over up to ``rounds`` interleaved rounds (fewer when a
    round is slow: at least 3 rounds, stopping once ``max_seconds`` have passed)."""
    for f in contenders.values():  # warm up: plans, FFT caches, page faults
        f()
    times: dict[str, list[float]] = {k: [] for k in contenders}
    order = list(contenders)
    shuffle = random.Random(0).shuffle  # a fresh order each round: no one always runs cold
    start = time.perf_counter()
    for r in range(rounds):
        shuffle(order)
        for name in order:
            f = contenders[name]
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
        if r >= 2 and time.perf_counter() - start > max_seconds:
            break
    return {k: float(np.median(v)) for k, v in times.items()}


def assert_agree(ours, ref, bound: float, what: str) -> None:
    """A fast wrong answer must not win: ``|ours - ref| <= bound`` everywhere."""
    err = float(np.max(np.abs(np.asarray(ours, dtype=np.complex128 if np.iscomplexobj(ours)
                                         else np.float64) - ref)))
    if not err <= bound:
        raise AssertionError(f"{what}: result differs from the anchor by {err:.3g} "
                             f"(allowed {bound:.3g})")


def table(rows: list[dict], columns: list[str]) -> str:
    """A GitHub-markdown table of ``rows`` (dicts) in ``columns`` order."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
