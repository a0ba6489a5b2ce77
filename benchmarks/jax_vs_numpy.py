"""JAX arrays through the portable engine against NumPy arrays through the NumPy engine:
the same ``bc.correlate`` calls, timed interleaved in one process (medians; repeat calls,
so JAX's compilation of each block, done on the first call, is not in them).

    JAX_ENABLE_X64=1 python benchmarks/jax_vs_numpy.py

Prints one line per workload: milliseconds for NumPy and for JAX, and the ratio (NumPy
time / JAX time: above 1, JAX is faster). Needs ``pip install ".[jax]"``; float64 rows
need x64 (the environment variable above).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import batchconv as bc
from batchconv.bench.harness import interleaved

rng = np.random.default_rng(0)


def _f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


WORKLOADS = [
    # (name, x, w, spec, options)
    ("1000 64x64 images, one 5x5 filter, float64", rng.standard_normal((1000, 64, 64)),
     rng.standard_normal((5, 5)), "nhw,hw->nhw|hw", {}),
    ("16 64x64 vs 8 5x5, 'same', float32", _f32(16, 64, 64), _f32(8, 5, 5), None,
     {"mode": "same"}),
    ("8 128x128 vs 4 31x31, float32", _f32(8, 128, 128), _f32(4, 31, 31), None, {}),
    ("NCC, 480x640 frame vs 16 48x40 templates, float32", _f32(1, 480, 640),
     _f32(16, 48, 40), None, {"metric": "ncc"}),
    ("SAD stride 2, 8 x 3x64x64 vs 3x16x16, float32", _f32(8, 3, 64, 64), _f32(3, 16, 16),
     "bchw,chw->bhw|hw", {"metric": "sad", "stride": 2}),
]  # fmt: skip


def main() -> None:
    x64 = jax.config.read("jax_enable_x64")
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, x64 {'on' if x64 else 'off'}")
    print(f"{'workload':<55} {'NumPy ms':>9} {'JAX ms':>9} {'NumPy/JAX':>10}")
    for name, x, w, spec, options in WORKLOADS:
        if x.dtype == np.float64 and not x64:
            print(f"{name:<55} (needs JAX_ENABLE_X64=1)")
            continue
        xj, wj = jnp.asarray(x), jnp.asarray(w)

        def on_numpy(x=x, w=w, spec=spec, options=options):
            return bc.correlate(x, w, spec, **options)

        def on_jax(xj=xj, wj=wj, spec=spec, options=options):
            return bc.correlate(xj, wj, spec, **options).block_until_ready()

        a, b = np.asarray(on_numpy()), np.asarray(on_jax())
        scale = max(float(np.abs(a).max()), 1.0)
        assert np.allclose(a, b, rtol=0, atol=1e-3 * scale), name  # the same answer
        t = interleaved({"numpy": on_numpy, "jax": on_jax}, rounds=9, max_seconds=30)
        print(
            f"{name:<55} {t['numpy'] * 1e3:9.2f} {t['jax'] * 1e3:9.2f} "
            f"{t['numpy'] / t['jax']:10.2f}"
        )


if __name__ == "__main__":
    main()
