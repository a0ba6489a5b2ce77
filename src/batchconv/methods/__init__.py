"""Method kernels, one module each, all on the canonical layout (see ``problem.py``).

Each method module provides

* ``prepare(problem, w_canonical, budget) -> state``: everything that depends only on
  the filters;
* ``compute(problem, state, x_chunk, k0, k1, out=None) -> block``: the
  ``(b, k, P, *O)`` block for filters ``k0:k1``, written into ``out`` when given; a
  method that fuses reductions also takes ``reduce`` (a function of any
  ``(b', k', P, *O)`` sub-block) and writes the reduced block into ``out``, reducing
  unit by unit while the data is in cache;
* ``workspace_bytes(problem, b, k, budget)``: peak temporaries for one block, not
  counting the block;
* ``fuses_reduce(problem)``: True when ``compute`` reduces unit by unit, so the
  unreduced block is never a temporary (otherwise the planner reduces each block).

The torch methods (``torch_direct``, ``torch_fft``) have the same four functions on
tensors, plus ``applies(problem)`` (None, or why they cannot compute it). As for the
NumPy methods, the metrics wrap them (``metrics.method_for``): SAD with
``torch_direct`` is ``torch_sad.py``, ssd/ncc/cosine ``torch_metrics.TorchMetricMethod``.
"""

from __future__ import annotations

from types import ModuleType

from . import direct, fft, torch_direct, torch_fft

__all__ = ["METHODS", "get_method"]

# the torch methods run on torch tensors' own device (see tensors.py); they import torch
# only when they run
METHODS: dict[str, ModuleType] = {
    "direct": direct,
    "fft": fft,
    "torch_direct": torch_direct,
    "torch_fft": torch_fft,
}


def get_method(name: str) -> ModuleType:
    """The method module called ``name``; unknown names list the valid ones."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"method must be 'auto', 'measure' or one of {sorted(METHODS)}, got {name!r}"
        ) from None
