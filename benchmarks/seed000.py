"""Seed 000: every image against every filter, 3-D 'same' correlation, max over the
result ("nhwd,khwd->nk|hwd"), at the seed's full scale (500 images x 1000 filters,
96x96x3) in float32, with the default memory budget and with memory="2GB".

The anchor is the seed's own code (``cdist`` with ``scipy.signal.correlate(method='fft')``
and ``max``), timed on a subset of pairs in the same run; its answer on that subset is
checked against ours. Each full-scale run happens in a fresh subprocess so that its peak
resident memory can be reported.

    python benchmarks/seed000.py            # full scale: about 3-5 minutes on 2 cores
    python benchmarks/seed000.py --quick    # 50 x 100 pairs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

SPEC = "nhwd,khwd->nk|hwd"
SHAPE = (96, 96, 3)


def _data(n: int, k: int):
    rng = np.random.default_rng(0)
    return (rng.random((n, *SHAPE), dtype=np.float32),
            rng.random((k, *SHAPE), dtype=np.float32))


def _ours_in_subprocess(n: int, k: int, memory) -> dict:
    """Time bc.correlate on n x k pairs in a fresh process; its peak RSS too."""
    code = f"""
import json, resource, sys, time
sys.path.insert(0, {sys.path[0]!r})
from seed000 import _data, SPEC
import batchconv as bc
x, w = _data({n}, {k})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
r = bc.correlate(x, w, SPEC, mode="same", reduce="max", memory={memory!r})
t = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
p = bc.plan(x, w, SPEC, mode="same", reduce="max", memory={memory!r})
print(json.dumps(dict(seconds=t, peak_extra_mib=(peak - base) / 1024,
                      plan_peak_mib=p.peak_bytes / 2**20, chunk=p.chunk,
                      budget_mib=p.memory / 2**20, checksum=float(r[:4, :5].sum()))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict]:
    try:
        from scipy.signal import correlate
        from scipy.spatial.distance import cdist
    except ImportError:
        print("scipy not installed: seed000 anchor skipped", file=sys.stderr)
        return []
    import batchconv as bc

    n, k = (50, 100) if quick else (500, 1000)
    x, w = _data(4, 5)
    xd, wd = x.astype(np.float64), w.astype(np.float64)

    def xcorr(u, v):  # the seed's function, float64 as the seed's np.random.random
        return np.max(correlate(u.reshape(SHAPE), v.reshape(SHAPE), mode="same",
                                method="fft"))

    t0 = time.perf_counter()
    ref = cdist(xd.reshape(4, -1), wd.reshape(5, -1), xcorr)
    anchor_per_pair = (time.perf_counter() - t0) / 20
    ours_small = bc.correlate(x, w, SPEC, mode="same", reduce="max")
    err = float(np.max(np.abs(ours_small - ref) / np.abs(ref)))
    assert err < 1e-5, f"seed000: ours differs from the seed's answer by {err:.3g} (rel)"
    rows = []
    for memory in (None, "2GB"):
        print(f"  seed000 {n} x {k}, memory={memory} ...", file=sys.stderr, flush=True)
        r = _ours_in_subprocess(n, k, memory)
        per_pair = r["seconds"] / (n * k)
        rows.append({"pairs": f"{n} x {k}", "memory": memory or "default",
                     "budget MiB": r["budget_mib"], "ours s": r["seconds"],
                     "ours us/pair": per_pair * 1e6, "anchor ms/pair": anchor_per_pair * 1e3,
                     "anchor / ours per pair": anchor_per_pair / per_pair,
                     "peak extra RSS MiB": r["peak_extra_mib"],
                     "plan peak MiB": r["plan_peak_mib"], "max rel err (20 pairs)": err})
        print("  " + ", ".join(f"{a} {b:.4g}" if isinstance(b, float) else f"{a} {b}"
                               for a, b in rows[-1].items()), file=sys.stderr, flush=True)
    return rows


COLUMNS = ["pairs", "memory", "budget MiB", "ours s", "ours us/pair", "anchor ms/pair",
           "anchor / ours per pair", "peak extra RSS MiB", "plan peak MiB",
           "max rel err (20 pairs)"]

if __name__ == "__main__":
    sys.path.insert(0, sys.path[0])
    from _harness import table

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    print(table(run(ap.parse_args().quick), COLUMNS))
