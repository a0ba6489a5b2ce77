"""Run every benchmark module and print BENCHMARKS.md's tables (markdown) with the machine
they ran on.

    python benchmarks/run_all.py > /tmp/bench.md
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np
import seed001
import seed003
from _harness import table

import batchconv as bc
from batchconv.config import config


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cfg = config()
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"NumPy {np.__version__}, SciPy {cfg['optional']['scipy']}, "
            f"FFT engine {cfg['fft_engine']}, batchconv {bc.__version__}")


def main() -> None:
    print(f"Machine: {machine()}  \nDate: {time.strftime('%Y-%m-%d')}\n")
    for name, mod in (("seed001", seed001), ("seed003", seed003)):
        print(f"### {name}\n", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        rows = mod.run()
        print(f"### {name}  ({time.perf_counter() - t0:.0f} s)\n")
        print(table(rows, mod.COLUMNS) + "\n")


if __name__ == "__main__":
    main()
