"""What one NaN in x, or one Inf tap in a filter, costs an FFT plan: NumPy's ``fft`` and,
when torch is installed, ``torch_fft`` on CPU tensors; 16 images of 256x256 float32 in
'same' mode against a bank of K filters of MxM. Run it once per source tree to compare
versions (each in its own process):

    git worktree add /tmp/before <commit>
    for d in /tmp/before .; do python benchmarks/nonfinite_cost.py $d 8 41; done

Prints one line per case: the engine, the input, milliseconds per call (median of 7).
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path


def per_call(f, rounds: int = 7) -> float:
    f()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    tree = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    k, m = (int(a) for a in sys.argv[2:4]) if len(sys.argv) > 3 else (8, 41)
    sys.path.insert(0, str(tree / "src"))
    warnings.simplefilter("ignore")  # (inf * 0 in the direct sums: the loop's NaN)
    import numpy as np

    import batchconv as bc

    print(f"# batchconv from {Path(bc.__file__).parent}; {k} filters {m}x{m}")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 1, 256, 256)).astype(np.float32)
    w = rng.standard_normal((k, 1, m, m)).astype(np.float32)
    xn, wn = x.copy(), w.copy()
    xn[3, 0, 100, 100] = np.nan
    wn[min(2, k - 1), 0, 3, 3] = np.inf
    cases = (("finite", x, w), ("one NaN in x", xn, w), ("one Inf filter", x, wn))
    engines = [("numpy fft", "fft", lambda a: a)]
    try:
        import torch

        torch.set_num_threads(2)
        engines.append(("torch_fft", "torch_fft", torch.from_numpy))
    except ImportError:
        pass
    spec = "nchw,kchw->nkhw|hw"
    for engine, method, wrap in engines:
        for name, xx, ww in cases:
            p = bc.plan(wrap(xx), wrap(ww), spec, method=method, mode="same")
            xt = wrap(xx)
            print(f"{engine}\t{name}\t{per_call(lambda p=p, xt=xt: p(xt)):.1f} ms")


if __name__ == "__main__":
    main()
