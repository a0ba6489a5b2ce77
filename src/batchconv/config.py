"""``show_config()``: versions, FFT engine, optional accelerators, threads."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from . import compiled
from .tensors import torch_for_config, torch_for_numpy
from .xp import available_memory, fft_engine, get_workers, has_module

__all__ = ["show_config", "config"]

_OPTIONAL = (
    "scipy",
    "numba",
    "torch",
    "dask",
    "distributed",
    "threadpoolctl",
    # array-API libraries: the portable engine computes on their arrays
    "jax",
    "array_api_strict",
    "array_api_compat",
    "cupy",
)


def _version(name: str) -> str | None:
    if not has_module(name):
        return None
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "installed"


def _array_api() -> str:
    """What the portable engine (JAX, CuPy, any array-API namespace) has here, found
    without importing anything."""
    found = [name for name in ("jax", "cupy", "array_api_strict") if has_module(name)]
    how = (
        "namespaces through array-api-compat"
        if has_module("array_api_compat")
        else "namespaces from x.__array_namespace__() (array-api-compat not installed)"
    )
    return f"{', '.join(found) or 'none installed'}; {how}"


def _torch_details() -> dict | None:
    """torch's CUDA build, device, cuDNN and Triton, when torch is installed (this imports
    torch: only :func:`show_config` and :func:`config` do)."""
    if not has_module("torch"):
        return None
    torch = torch_for_config()

    cuda = torch.cuda.is_available()
    return {
        "cuda_build": torch.version.cuda,
        "device": torch.cuda.get_device_name(0) if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "triton": _version("triton"),
        "used_for": (
            "tensors in and out on their device; torch_direct/torch_fft; "
            + (
                "SAD on CUDA as a Triton kernel"
                if _version("triton")
                else "SAD on CUDA in plain torch (install triton for the kernel)"
            )
        ),
    }


def _compiled() -> str:
    if compiled.enabled():
        return "numba"
    if not has_module("numba"):
        return "none (NumPy code)"
    if not compiled.numba_switch():
        return "off (BATCHCONV_DISABLE_NUMBA)"
    return "off (no writable folder to cache them in: set NUMBA_CACHE_DIR)"


def config() -> dict:
    """The configuration as a dict (what :func:`show_config` prints)."""
    import numpy as np

    from ._version import __version__

    return {
        "batchconv": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "optional": {name: _version(name) for name in _OPTIONAL},
        "torch_for_numpy": torch_for_numpy(),  # (before _torch_details imports it)
        "torch": _torch_details(),
        "array_api": _array_api(),
        "fft_engine": fft_engine().name + ".fft",
        "compiled_kernels": _compiled(),
        "kernel_cache": compiled.cache_dir() if has_module("numba") else None,
        "threads": get_workers(),
        "available_memory_gib": round(available_memory() / (1 << 30), 1),
    }


def show_config() -> None:
    """Print versions, the FFT engine, optional packages found and the thread count.

    Optional packages are found without importing them.
    """
    c = config()
    print(f"batchconv {c['batchconv']}  (python {c['python']}, {c['platform']})")
    print(f"  numpy         {c['numpy']}")
    for name, v in c["optional"].items():
        print(f"  {name:<13} {v or 'not installed'}")
    if c["torch"]:
        t = c["torch"]
        print(
            f"  torch cuda    build {t['cuda_build'] or 'none (CPU build)'}, device "
            f"{t['device'] or 'none'}, cudnn {t['cudnn'] or '-'}, triton "
            f"{t['triton'] or 'not installed'}: {t['used_for']}"
        )
    if c["torch"]:
        joins = (
            "yes: torch is imported"
            if c["torch_for_numpy"]
            else "no: not imported by this program (show_config's import does not count), "
            "BATCHCONV_DISABLE_TORCH=1, or bc.use_torch(False)"
        )
        print(f"  torch, NumPy  {joins}  (oneDNN as a candidate for NumPy CNN layers)")
    print(f"  array API     {c['array_api']}  (arrays in, arrays of their library out)")
    print(f"  fft engine    {c['fft_engine']}")
    print(
        f"  compiled      {c['compiled_kernels']}  (one-filter correlation, SAD, window sums,"
        " Winograd transforms, FFT channel products)"
    )
    if c["kernel_cache"]:
        print(f"  kernel cache  {c['kernel_cache']}  (batchconv warmup fills it)")
    print(f"  threads       {c['threads']}")
    print(f"  memory        {c['available_memory_gib']} GiB available")
