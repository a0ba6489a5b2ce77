"""batchconv works with NumPy alone, and importing it imports no optional dependency."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

BLOCK = textwrap.dedent("""
    import sys
    class _Block:
        blocked = ("scipy", "numba", "torch", "dask", "cv2", "threadpoolctl")
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                raise ImportError(f"blocked for this test: {name}")
            return None
    sys.meta_path.insert(0, _Block())
""")


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(
        [sys.executable, "-c", BLOCK + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_everything_runs_without_optional_packages():
    r = _run("""
        import numpy as np, batchconv as bc
        from batchconv.xp import fft_engine, next_fast_len
        assert fft_engine().name == "numpy", fft_engine().name
        rng = np.random.default_rng(0)
        x = rng.standard_normal((3, 2, 20, 19)).astype(np.float32)
        w = rng.standard_normal((4, 2, 5, 4)).astype(np.float32)
        outs = []
        for method in ("direct", "fft", "auto"):
            for mode in ("valid", "same", "full"):
                y = bc.correlate(x, w, "nchw,kchw->nkhw|hw", mode=mode, method=method)
                assert y.dtype == np.float32
                outs.append(y)
        for a, b in zip(outs[:3], outs[3:6]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
        # naive check of one element
        ref = (x[1, :, 3:8, 2:6] * w[2]).sum()
        assert abs(outs[0][1, 2, 3, 2] - ref) < 1e-4
        y = bc.convolve(x[:, 0], w[0, 0], mode="same", padding="reflect", method="fft")
        assert y.shape == (3, 20, 19)
        # one filter, items innermost (seed 001): NumPy's inverse writes a strided buffer
        xs = rng.standard_normal((20, 18, 5))
        a, b = (bc.convolve(xs, w[0, 0], "hwn,hw->hwn|hw", method=m)
                for m in ("fft", "direct"))
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
        assert next_fast_len(97) in (98, 100)
        # the metrics: SAD on the NumPy fallback, the others on both methods
        from batchconv.methods.sad import uses_numba
        assert not uses_numba()
        y = bc.correlate(x, w[0], "nchw,chw->nhw|hw", metric="sad", stride=2)
        assert abs(y[1, 2, 3] - np.abs(x[1, :, 4:9, 6:10] - w[0]).sum()) < 1e-3
        for metric in ("ssd", "ncc", "cosine"):
            a, b = (bc.correlate(x, w, "nchw,kchw->nkhw|hw", metric=metric, method=m)
                    for m in ("direct", "fft"))
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
        bc.show_config()
        assert "scipy" not in sys.modules and "torch" not in sys.modules
        print("OK")
    """)
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout
    assert "scipy         not installed" in r.stdout


def test_import_loads_no_optional_dependency():
    r = _run("""
        import sys
        sys.meta_path.pop(0)  # allow imports, just watch what gets imported
        import batchconv
        heavy = [m for m in ("scipy", "numba", "torch", "dask", "cv2") if m in sys.modules]
        assert not heavy, heavy
        print("OK")
    """)
    assert r.returncode == 0, r.stderr
