"""Array types at the boundary: NumPy arrays, torch tensors on the CPU, and how Dask arrays
(``dask_arrays.py`` handles them) and array-API arrays (JAX, CuPy, array-api-strict:
``portable/`` computes on them) are recognised.

A torch CPU tensor is viewed as a NumPy array without a copy (``Tensor.numpy()``; bfloat16
is widened to float32 first, since NumPy has no bfloat16), and a result computed for one
comes back as a torch tensor sharing the NumPy result's memory (``torch.from_numpy``).
CUDA tensors never come here: they go to the torch methods (``tensors.py``), and
:func:`to_numpy` refuses one with a message saying so. torch is never imported here; a
tensor is recognised by its type's module.

>>> import numpy as np
>>> a, kind = to_numpy(np.ones(3), "x")
>>> kind is None and a.shape == (3,)
True
"""

from __future__ import annotations

import sys
from functools import lru_cache

import numpy as np

__all__ = [
    "records_grad",
    "is_jax",
    "to_numpy",
    "from_numpy",
    "is_torch",
    "is_dask",
    "is_array_api",
    "numpy_dtype",
    "plain_tensor",
]


def _library(obj) -> str:
    """The top-level package of ``obj``'s type (``"torch"``, ``"dask"``, ``"numpy"``...),
    found without importing anything."""
    return _library_of_type(type(obj))


@lru_cache(maxsize=256)
def _library_of_type(cls: type) -> str:
    return cls.__module__.split(".")[0]


def numpy_dtype(dtype) -> np.dtype:
    """A NumPy dtype from a NumPy or torch dtype (``torch.float32`` -> float32; bfloat16,
    which NumPy lacks, computes as float32)."""
    if _library(dtype) == "torch":
        return _from_torch(dtype)
    return np.dtype(dtype)


@lru_cache(maxsize=64)
def _from_torch(dtype) -> np.dtype:
    name = str(dtype).removeprefix("torch.")
    return np.dtype("float32" if name == "bfloat16" else name)


def is_torch(a) -> bool:
    """True for a torch tensor (without importing torch)."""
    return _library(a) == "torch" and hasattr(a, "device")


def records_grad(*arrays) -> bool:
    """Whether torch autograd records a call on ``arrays``: one of them is a tensor that
    requires grad, in grad mode (torch is not imported for the question).

    >>> records_grad(np.ones(3))
    False
    """
    if not any(getattr(a, "requires_grad", False) is True for a in arrays):
        return False
    torch = sys.modules.get("torch")
    return torch is not None and torch.is_grad_enabled()


def is_jax(a) -> bool:
    """True for a JAX array (without importing jax)."""
    return _library(a) in ("jax", "jaxlib")


def is_dask(a) -> bool:
    """True for a Dask array (without importing dask)."""
    return _library(a) == "dask" and hasattr(a, "chunks") and hasattr(a, "dask")


# libraries whose arrays go to the portable engine (portable/), by their type's top-level
# module; besides them, any type with __array_namespace__ that has no path of its own
_ARRAY_API_LIBRARIES = frozenset({"jax", "jaxlib", "cupy", "array_api_strict"})
_OWN_PATHS = frozenset({"numpy", "torch", "dask", "builtins"})


def is_array_api(a) -> bool:
    """True for an array that batchconv computes on with its portable engine: a JAX,
    CuPy or array-api-strict array, or any other array whose type has
    ``__array_namespace__`` (NumPy arrays, torch tensors and Dask arrays have paths of
    their own). Recognised by its type, without importing anything.

    >>> is_array_api(np.ones(3)), is_array_api([1.0, 2.0])
    (False, False)
    """
    return _is_array_api_type(type(a))


@lru_cache(maxsize=256)
def _is_array_api_type(cls: type) -> bool:
    lib = _library_of_type(cls)
    if lib in _OWN_PATHS:
        return False
    return lib in _ARRAY_API_LIBRARIES or hasattr(cls, "__array_namespace__")


def plain_tensor(t):
    """The tensor ``t`` detached from autograd, with its lazy conjugate or negation (views
    such as ``c.conj().imag``) applied."""
    t = t.detach()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():  # a lazily negated view (e.g. the imaginary part of a conjugate)
        t = t.resolve_neg()
    return t


def to_numpy(a, name: str):
    """``(array, kind)``: ``a`` as a NumPy array, and ``"torch"`` when it was a torch CPU
    tensor (None otherwise). Raises TypeError for CUDA tensors and for an array-API
    array (JAX, CuPy...) other than the filters ``w`` (read through DLPack), with what to
    do instead."""
    if isinstance(a, np.ndarray):
        if type(a) is not np.ndarray and isinstance(a, np.ma.MaskedArray):
            raise TypeError(
                f"{name} is a NumPy masked array; batchconv does not read masks, and "
                f"would lose this one silently: pass {name}.filled(value) with the value "
                f"masked samples should take, or {name}.data to ignore the mask"
            )
        return a, None
    if is_torch(a):
        if a.device.type != "cpu":
            raise TypeError(
                f"{name} is a torch tensor on {a.device}, but this computation "
                f"runs on the CPU (x's device decides, and a plan keeps the "
                f"device it was made for): pass a CPU tensor, or x and w "
                f"both on {a.device}"
            )
        t = plain_tensor(a)
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        if str(t.dtype) == "torch.bool":
            raise TypeError(
                f"{name} has dtype torch.bool; batchconv accepts integer, float "
                f"and complex tensors. Convert with {name}.float()."
            )
        return t.numpy(), "torch"
    lib = _library(a)
    if lib == "dask":  # bc.correlate / convolve take them; a Plan runs on one block
        raise TypeError(
            f"{name} is a Dask array: pass it to bc.correlate or bc.convolve, "
            f"which return a lazy Dask array; a Plan runs on in-memory arrays"
        )
    if is_array_api(a):
        return _array_api_to_numpy(a, name), None
    return np.asarray(a), None


def _array_api_to_numpy(a, name: str) -> np.ndarray:
    """The filters ``w`` of another array library read once into NumPy (through DLPack)
    when ``x`` is a NumPy array (x's library decides where a call runs); any other
    argument of such a type is refused: the portable engine computes on it when it is
    ``x``, and a plan made for NumPy arrays computes on NumPy arrays."""
    what = f"{type(a).__module__}.{type(a).__name__}"
    if name != "w":
        raise TypeError(
            f"{name} is a {what}, but this plan computes on NumPy arrays: give the array "
            f"to bc.correlate, bc.convolve or bc.plan as x, which compute on its own "
            f"library (see the README's 'JAX and array-API arrays'), or pass "
            f"np.asarray({name})"
        )
    try:
        return np.from_dlpack(a)
    except (BufferError, TypeError, ValueError, RuntimeError) as e:
        raise TypeError(
            f"w is a {what} that NumPy cannot read in place ({e}); x is a NumPy array "
            f"and x's library decides where the call runs: pass w as a NumPy array, or "
            f"x as an array of w's library"
        ) from None


def from_numpy(result: np.ndarray, kind: str | None):
    """The result in the caller's array type: a torch tensor (sharing memory) when the
    input ``x`` was one."""
    if isinstance(result, tuple):  # (a PeakResult: each array)
        return type(result)(*(from_numpy(r, kind) for r in result))
    if kind == "torch":
        import torch

        # torch wants writeable memory; our results are fresh arrays, so this rarely copies
        return torch.from_numpy(result if result.flags.writeable else result.copy())
    return result
