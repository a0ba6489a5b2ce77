"""Memory of ``reduce=bc.peaks(5)`` against the stacked unreduced maps it never holds:
S scenes of N x N float32 against T templates of 32x32 (ncc), the traced peak of one
call (tracemalloc: every NumPy allocation) and the process's peak RSS growth, against
S * T * (N - 31)^2 * 4 bytes of maps. Issue 22's size by default:

    python benchmarks/peaks_memory.py            # 20 scenes of 1024x1024, 50 templates
    python benchmarks/peaks_memory.py 4 256 10   # smaller: S N T
"""

from __future__ import annotations

import resource
import sys
import time
import tracemalloc

import numpy as np

import batchconv as bc


def main() -> None:
    s, n, t = (int(a) for a in sys.argv[1:4]) if len(sys.argv) > 3 else (20, 1024, 50)
    rng = np.random.default_rng(0)
    scenes = rng.random((s, n, n), dtype=np.float32)
    templates = np.stack([scenes[i % s, 10 * i % (n - 32) :, :][:32, :32] for i in range(t)]).copy()
    maps = s * t * (n - 31) ** 2 * 4
    spec = "nhw,khw->nk|hw"
    bc.correlate(scenes[:1, :128, :128], templates[:1], spec, metric="ncc", reduce=bc.peaks(5))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    start = time.perf_counter()
    r = bc.correlate(scenes, templates, spec, metric="ncc", reduce=bc.peaks(5))
    seconds = time.perf_counter() - start
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
    plan = bc.plan(scenes, templates, spec, metric="ncc", reduce=bc.peaks(5))
    print(f"{s} scenes {n}x{n}, {t} templates 32x32, ncc, peaks(5): {seconds:.1f} s")
    print(f"stacked maps      {maps / 2**20:10.1f} MiB")
    print(f"traced peak       {traced / 2**20:10.1f} MiB  ({100 * traced / maps:.1f} %)")
    print(f"peak RSS growth   {rss / 2**20:10.1f} MiB  ({100 * rss / maps:.1f} %)")
    print(f"plan: {plan.method}, chunk {plan.chunk}, budget {plan.memory / 2**20:.0f} MiB")
    assert r.scores.shape == (s, t, 5)


if __name__ == "__main__":
    main()
