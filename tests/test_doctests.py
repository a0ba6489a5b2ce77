"""Every docstring example in the installed package runs and prints what it shows (run
from here rather than with --doctest-modules so that it tests the installed package,
editable or not)."""

import doctest
import importlib
import pkgutil

import pytest

import batchconv

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(batchconv.__path__, "batchconv.")
    if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", ["batchconv", *MODULES])
def test_docstring_examples(name):
    if name == "batchconv.dask_arrays":
        pytest.importorskip("dask.array")
    if name == "batchconv.tensors":  # its examples make tensors
        pytest.importorskip("torch")
    if name.startswith(("batchconv.portable", "batchconv.backends")):  # array-api-strict
        pytest.importorskip("array_api_strict")  # (arrays; no JAX in this process: it forks)
    if name == "batchconv._triton_kernels":  # the GPU kernels: Triton ships with CUDA torch
        pytest.importorskip("triton")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
