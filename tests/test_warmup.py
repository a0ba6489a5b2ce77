"""First calls after ``batchconv warmup``: the warm-up compiles every kernel once into
numba's cache, and later processes load them instead of compiling; where the package's
folder is read-only, the kernels are cached in a folder of ours.

Run in subprocesses with a cache folder of their own (a new process is what a user's
first call is). No timing is asserted: numba's own counters say whether anything was
compiled. The times are printed (``pytest -s``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

pytest.importorskip("numba")

from batchconv import compiled  # noqa: E402

# first calls of every kind, with shapes, layouts and options the warm-up does not use
FIRST_CALLS = r"""
import json, os, sys, time
import numpy as np
import batchconv as bc
from batchconv import compiled

if os.environ.get("PRETEND_READ_ONLY"):  # the package's folder as if read-only
    here = os.path.join(os.path.dirname(compiled.__file__), "__pycache__")
    writable = compiled._writable
    compiled._writable = lambda path: path != here and writable(path)
rng = np.random.default_rng(0)
times = {}
for dt in (np.float32, np.float64):
    x = rng.random((3, 100, 90)).astype(dt)
    for name, call in [
        ("dot", lambda: bc.correlate(x, rng.random((11, 11)).astype(dt))),
        ("dot hwn", lambda: bc.convolve(np.moveaxis(x, 0, -1), rng.random((7, 7)).astype(dt),
                                        "hwn,hw->hwn|hw", stride=2)),
        ("dot stride", lambda: bc.correlate(x, rng.random((7, 7)).astype(dt), stride=(2, 3))),
        ("sad", lambda: bc.correlate(x, rng.random((2, 9, 9)).astype(dt), metric="sad")),
        ("ncc", lambda: bc.correlate(x, rng.random((2, 15, 15)).astype(dt), metric="ncc",
                                     mode="same", padding="reflect")),
        ("cosine", lambda: bc.correlate(x, rng.random((2, 15, 15)).astype(dt), metric="cosine")),
        ("ssd 3-D", lambda: bc.correlate(rng.random((2, 16, 16, 16)).astype(dt),
                                         rng.random((2, 11, 11, 11)).astype(dt), metric="ssd")),
        # (5 items against 32 filters: the compiled per-bin products, not BLAS)
        ("fft channels", lambda: bc.correlate(rng.random((5, 21, 19, 6)).astype(dt),
                                              rng.random((9, 9, 6, 32)).astype(dt),
                                              "nhwc,hwco->nhwo|hw", method="fft")),
        ("winograd", lambda: bc.correlate(rng.random((3, 20, 17, 8)).astype(dt),
                                          rng.random((5, 5, 8, 6)).astype(dt),
                                          "nhwc,hwco->nhwo|hw", mode="same",
                                          method="winograd")),
    ]:
        t = time.perf_counter()
        call()
        times[f"{name} {np.dtype(dt).name}"] = round(time.perf_counter() - t, 3)
compiled_, loaded = compiled._compile_counts()
print(json.dumps({"compiled": compiled_, "loaded": loaded, "times": times,
                  "cache_dir": compiled.cache_dir(), "enabled": compiled.enabled()}))
"""


def _env(**extra: str) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NUMBA_CACHE_DIR", "BATCHCONV_DISABLE_NUMBA", "XDG_CACHE_HOME")
    }
    env.update(extra)
    return env


def _first_calls(env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", FIRST_CALLS], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def warmed(tmp_path_factory) -> tuple[Path, str]:
    """A user cache folder (``XDG_CACHE_HOME``) whose batchconv folder ``batchconv
    warmup`` has filled, and what the warm-up printed."""
    root = tmp_path_factory.mktemp("cache")
    folder = root / "batchconv" / "numba"
    out = subprocess.run(
        [sys.executable, "-m", "batchconv", "warmup"],
        env=_env(NUMBA_CACHE_DIR=str(folder)),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    print(out.stdout)
    return root, out.stdout


@pytest.mark.slow
def test_warmup_fills_the_cache(warmed):
    root, printed = warmed
    folder = root / "batchconv" / "numba"
    assert str(folder) in printed
    assert "kernels compiled" in printed
    assert list(folder.rglob("*.nbi")) and list(folder.rglob("*.nbc"))


@pytest.mark.slow
def test_first_calls_after_warmup_compile_nothing(warmed):
    root, _ = warmed
    got = _first_calls(_env(NUMBA_CACHE_DIR=str(root / "batchconv" / "numba")))
    print(got["times"])
    assert got["enabled"]
    assert got["compiled"] == 0, "a first call compiled a kernel the warm-up left out"
    assert got["loaded"] > 0


@pytest.mark.slow
def test_read_only_package_caches_in_our_folder(warmed):
    """The package's folder not writable (a system or container installation): the
    kernels go to (and come from) ~/.cache/batchconv/numba, here the warmed one."""
    root, _ = warmed
    got = _first_calls(_env(XDG_CACHE_HOME=str(root), PRETEND_READ_ONLY="1"))
    assert got["cache_dir"] == str(root / "batchconv" / "numba")
    assert got["compiled"] == 0 and got["loaded"] > 0


@pytest.mark.slow
def test_warmup_again_loads(warmed):
    root, _ = warmed
    out = subprocess.run(
        [sys.executable, "-m", "batchconv", "warmup"],
        env=_env(NUMBA_CACHE_DIR=str(root / "batchconv" / "numba")),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert " 0 kernels compiled" in out.stdout


@pytest.fixture
def fresh_cache_dir(monkeypatch):
    """cache_dir() found again (it is found once per process); restored afterwards."""
    monkeypatch.setattr(compiled, "_cache_dir", compiled._UNSET)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    return monkeypatch


def test_cache_dir_order(fresh_cache_dir, tmp_path):
    mp = fresh_cache_dir
    here = os.path.join(os.path.dirname(compiled.__file__), "__pycache__")
    writable = set()
    mp.setattr(compiled, "_writable", lambda path: path in writable)
    mp.setattr(compiled, "_private_temp", lambda: str(tmp_path / "temp"))
    mp.setenv("XDG_CACHE_HOME", str(tmp_path / "home"))
    ours = str(tmp_path / "home" / "batchconv" / "numba")
    for allowed, expect in [
        ({here, ours}, here),  # numba's default: next to the package
        ({ours}, ours),  # a read-only installation
        (set(), str(tmp_path / "temp")),  # a read-only home too
    ]:
        writable.clear()
        writable.update(allowed)
        mp.setattr(compiled, "_cache_dir", compiled._UNSET)
        assert compiled.cache_dir() == expect
    mp.setattr(compiled, "_cache_dir", compiled._UNSET)
    mp.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert compiled.cache_dir() == str(tmp_path / "mine")  # the user's setting first


def test_no_writable_folder_runs_numpy_code(fresh_cache_dir):
    mp = fresh_cache_dir
    mp.setattr(compiled, "_writable", lambda path: False)
    mp.setattr(compiled, "_private_temp", lambda: None)
    mp.setattr(compiled, "USE_NUMBA", True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert compiled.cache_dir() is None
    assert any("NUMBA_CACHE_DIR" in str(w.message) for w in caught)
    assert not compiled.enabled()


def test_private_temp_is_ours_alone(monkeypatch, tmp_path):
    if not hasattr(os, "getuid"):
        pytest.skip("POSIX permissions")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    folder = compiled._private_temp()
    assert folder == str(tmp_path / f"batchconv-{os.getuid()}" / "numba")
    os.chmod(tmp_path / f"batchconv-{os.getuid()}", 0o777)  # others could plant code
    assert compiled._private_temp() is None
