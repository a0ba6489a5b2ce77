"""The benchmark harness: interleaved timing (every contender runs once per round, in a
shuffled order, round after round; each one's median over the rounds is reported, so that
anchors and ours share the same process, inputs and machine state), the correctness check
every benchmark makes, the machine's measured peaks, and the tables."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import compiled


class Timings(dict):
    """Median seconds per contender, with ``spread``: the interquartile range over the
    rounds as a fraction of the median, per contender (how noisy the run was)."""

    spread: dict[str, float]


def interleaved(
    contenders: dict[str, Callable[[], object]], *, rounds: int = 7, max_seconds: float = 60.0
) -> Timings:
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
    out = Timings({k: float(np.median(v)) for k, v in times.items()})
    out.spread = {
        k: float(np.subtract(*np.percentile(v, [75, 25])) / max(np.median(v), 1e-12))
        for k, v in times.items()
    }
    return out


def numpy_only(f: Callable[[], object]) -> Callable[[], object]:
    """``f`` run with the compiled (numba) kernels switched off: what a user with NumPy
    alone gets."""

    def run():
        with compiled.use_numba(False):  # this thread only: the others' calls keep numba
            return f()

    return run


def assert_agree(ours, ref, bound: float, what: str) -> None:
    """A fast wrong answer must not win: ``|ours - ref| <= bound`` everywhere."""
    err = float(
        np.max(
            np.abs(
                np.asarray(ours, dtype=np.complex128 if np.iscomplexobj(ours) else np.float64) - ref
            )
        )
    )
    if not err <= bound:
        raise AssertionError(
            f"{what}: result differs from the anchor by {err:.3g} (allowed {bound:.3g})"
        )


def table(rows: list[dict], columns: list[str]) -> str:
    """A GitHub-markdown table of ``rows`` (dicts) in ``columns`` order."""

    def fmt(v):
        if v is None:
            return ""
        if isinstance(v, bool):
            return "yes" if v else "**no**"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


@dataclass
class Context:
    """What every workload gets: the size of the run, the machine's measured peaks and a
    progress printer (stderr)."""

    quick: bool
    peaks: dict[str, float]
    log: Callable[[str], None]


@dataclass
class Section:
    """One workload's results: a detailed table (``rows`` in ``columns`` order) and the
    lines of the summary table (:func:`summary_row`)."""

    name: str
    title: str
    about: str
    columns: list[str]
    rows: list[dict] = field(default_factory=list)
    summary: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def summary_row(
    workload: str,
    case: str,
    anchor: str | None,
    anchor_s: float | None,
    ours_s: float,
    bar: float | None,
    *,
    flops: float | None = None,
    peak: float | None = None,
    note: str = "",
    spread: tuple[float | None, float | None] = (None, None),
) -> dict:
    """A line of the summary table: times, ratio anchor/ours, the bar on that ratio and
    whether it is met, and the achieved GFLOP/s with its fraction of the machine's peak
    (``peak`` in GFLOP/s, measured at the start of the run)."""
    ratio = anchor_s / ours_s if anchor_s else None
    gflops = flops / ours_s / 1e9 if flops else None
    noise = "/".join(f"{100 * v:.0f}%" for v in spread if v is not None)
    return {
        "workload": workload,
        "case": case,
        "anchor": anchor or "not installed",
        "anchor ms": anchor_s * 1e3 if anchor_s else None,
        "ours ms": ours_s * 1e3,
        "anchor / ours": ratio,
        "bar": bar,
        "met": None if ratio is None or bar is None else bool(ratio >= bar),
        "GFLOP/s": gflops,
        "% of peak": 100 * gflops / peak if gflops and peak else None,
        "IQR anchor/ours": noise or None,
        "note": note,
    }


SUMMARY_COLUMNS = [
    "workload",
    "case",
    "anchor",
    "anchor ms",
    "ours ms",
    "anchor / ours",
    "bar",
    "met",
    "IQR anchor/ours",
    "GFLOP/s",
    "% of peak",
    "note",
]


def measure_peaks(log: Callable[[str], None] = lambda s: None) -> dict[str, float]:
    """This machine's peaks, measured now with every core: float32 and float64 GEMM
    (NumPy's BLAS, 1024x1024) and a real 2-D FFT (the best of 512x512 and 1024x1024, float32
    and float64, on the engine batchconv uses, counted as 2.5 N log2 N flops, the usual
    convention)."""
    from ..xp import fft_engine, get_workers

    def best(f, n=5):
        f()
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    peaks = {}
    for dt in (np.float32, np.float64):
        a = np.random.default_rng(0).random((1024, 1024)).astype(dt)
        peaks[f"gemm_{np.dtype(dt).name}"] = 2 * 1024**3 / best(lambda a=a: a @ a) / 1e9
    eng, rates = fft_engine(), []
    for size in (512, 1024):
        for dt in (np.float32, np.float64):
            img = np.random.default_rng(0).random((size, size)).astype(dt)
            t = best(lambda img=img, size=size: eng.rfftn(img, (size, size), (0, 1), get_workers()))
            rates.append(2.5 * size * size * np.log2(size * size) / t / 1e9)
    peaks["fft"] = float(max(rates))
    log("peaks: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()))
    return peaks


def plan_peak(plan, peaks: dict[str, float]) -> float | None:
    """The peak that bounds a plan's method: FFT for the methods whose cost model is
    an FFT's, else GEMM of its dtype."""
    if plan.module.cost_features(plan.problem, plan.device)[0] in ("fft", "torch_fft"):
        return peaks.get("fft")
    single = plan.problem.dtype in (np.float32, np.complex64)
    return peaks.get("gemm_float32" if single else "gemm_float64")
