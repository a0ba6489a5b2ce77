"""Per-call cost of small calls, for comparing two versions of batchconv: run it once
per source tree (each in its own process), alternating, and compare the medians.

    git worktree add /tmp/before <commit>
    for i in 1 2; do for d in /tmp/before .; do python benchmarks/overhead_ab.py $d; done; done

Prints one line per call: its name and microseconds per call (median of 15 rounds).
Needs torch (the CPU build) for the tensor rows.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path


def per_call(f, calls: int = 200, rounds: int = 15) -> float:
    """Median microseconds per call of ``f`` over ``rounds`` loops of ``calls`` calls."""
    f()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls):
            f()
        times.append((time.perf_counter() - t) / calls * 1e6)
    return statistics.median(times)


def main(root: str) -> None:
    sys.path.insert(0, str(Path(root).resolve() / "src"))
    import numpy as np
    import torch

    import batchconv as bc

    print(f"# batchconv from {Path(bc.__file__).parent}")
    rng = np.random.default_rng(0)
    out = {}
    xt, wt = torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3)
    spec = "nchw,kchw->nkhw|hw"
    p = bc.plan(xt, wt, spec, method="torch_direct")
    out["torch plan 1x4x8x8"] = per_call(lambda: p(xt))
    out["torch correlate 1x4x8x8"] = per_call(
        lambda: bc.correlate(xt, wt, spec, method="torch_direct")
    )
    x, w = rng.standard_normal((5, 100, 100)), rng.standard_normal((11, 11))
    for method in ("direct", "fft"):
        q = bc.plan(x, w, method=method)
        out[f"numpy plan {method} 5x100x100 11x11"] = per_call(lambda q=q: q(x), 50)
    x2, w2 = rng.standard_normal((2, 64)), rng.standard_normal((3, 5))
    q = bc.plan(x2, w2)
    out["numpy plan 2x64 3x5"] = per_call(lambda: q(x2))
    r = bc.plan(x2, w2, reduce="max")
    out["numpy plan reduce=max 2x64"] = per_call(lambda: r(x2))
    out["numpy correlate 2x64"] = per_call(lambda: bc.correlate(x2, w2))
    out["numpy correlate ncc 2x64"] = per_call(lambda: bc.correlate(x2, w2, metric="ncc"))
    for name, us in out.items():
        print(f"{name}\t{us:.1f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
