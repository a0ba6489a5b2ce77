"""Method kernels, one module each, all on the canonical layout (see ``problem.py``), and
their registry: the planner, the cost model and ``explain()`` ask the registered modules,
never compare their names.

A method module declares what it is (the :class:`Method` protocol):

* ``NAME``: the ``method=`` name;
* ``ON_TENSORS``: it computes on torch tensors on their own device (else NumPy arrays);
  ``STANDS_FOR``: for such a method, the NumPy method's name that means it on a GPU
  (``method="fft"`` with CUDA tensors is ``torch_fft``), or None;
* ``COMPUTES_SAD``: the metrics with no product form (``'sad'``: an absolute value) may
  use it: its ``sad_kernel(device)`` gives the object that computes them in its place
  (``sad.py``, ``torch_sad.py``), with the method interface and ``estimate(problem,
  device)``, its seconds for the cost model;
* ``EXACT_FOR_INTEGERS``: integer inputs give exact integers (``auto`` prefers it there);
* ``SPREADS_NONFINITE``: a NaN/Inf in ``x`` can spread over the whole item's result (an
  FFT), so the plan redoes the flagged items exactly (``Plan._redo_nonfinite``, the one
  NaN/Inf policy, for NumPy arrays and torch tensors): such a method's ``compute``
  takes ``nonfinite=`` (a set) and adds to it the indices, within the chunk, of the
  items whose results are not all finite; it gets zeros in place of the filters'
  NaN/Inf, and the plan redoes those filters, as a bank of their own, with
  ``exact_method(problem, device)`` (a method module; ``direct`` where the module has
  none), and in the flagged items the windows that cover a NaN/Inf (``nonfinite.py``);

and computes:

* ``applies(problem, device=None) -> str | None``: None, or why it cannot compute it;
* ``prepare(problem, w_canonical, budget) -> state``: everything that depends only on
  the filters;
* ``compute(problem, state, x_chunk, k0, k1, out=None) -> block``: the
  ``(b, k, P, *O)`` block for filters ``k0:k1``, written into ``out`` when given; a
  method that fuses reductions also takes ``reduce`` (a function of any
  ``(b', k', P, *O)`` sub-block) and writes the reduced block into ``out``, reducing
  unit by unit while the data is in cache;
* ``workspace_bytes(problem, b, k, budget)``: peak temporaries for one block, not
  counting the block; ``state_bytes(problem)``: the filter state a plan keeps;
* ``fuses_reduce(problem)``: True when ``compute`` reduces unit by unit, so the
  unreduced block is never a temporary (otherwise the planner reduces each block);
* ``flops(problem)`` and ``cost_features(problem, device=None) -> (model, features)``:
  the cost model's name (a row of ``costs.COEFFICIENTS``, or of the module's own
  ``COEFFICIENTS``) and its features;
* ``describe(problem, state, budget, device=None) -> str``: its line in ``explain()``;

and optionally:

* ``held_bytes(problem, b, k, budget)``: the part of ``workspace_bytes`` that stays with
  the threads after a block (``xp.work_buffer``), which a metric's next block finds
  still held (all of it when absent);
* ``block_bytes(problem, b, k) -> (peak, held)`` with ``prepare_bytes(problem, budget)``:
  the same split where the method's temporaries are not all work buffers (the FFT);
* ``bind(problem, state, x_chunk, out)``: a lean call for a repeat call with the same
  input layout (NumPy methods), or ``one_call(problem, state, x_chunk)`` (tensor
  methods: ``(input, call, as_canonical)``, or None);
* ``COEFFICIENTS``: the cost model of its own ``cost_features`` model names;
* ``joins_numpy(problem) -> bool`` (a method ``ON_TENSORS``): whether it is a candidate
  for NumPy arrays of ``problem`` once the program has imported torch
  (``bc.use_torch``), where its cost model holds beside the NumPy methods' (the arrays
  are shared with torch on the CPU; the result comes back as a NumPy array).

The metrics wrap the methods (``metrics.dispatch.method_for``): ssd/ncc/cosine compute a
correlation with the method, SAD runs its own kernels. Adding a method is its module
plus one call of :func:`register_method` (``tests/test_method_registry.py`` does it from
a test file).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from . import direct, fft, torch_direct, torch_fft, winograd

__all__ = [
    "METHODS",
    "Method",
    "get_method",
    "module_of",
    "register_method",
    "unregister_method",
]


@runtime_checkable
class Method(Protocol):
    """What a method module declares and computes (see the module docstring)."""

    NAME: str
    ON_TENSORS: bool
    STANDS_FOR: str | None
    COMPUTES_SAD: bool
    EXACT_FOR_INTEGERS: bool
    SPREADS_NONFINITE: bool

    def applies(self, p: Any, device: str | None = None) -> str | None: ...
    def prepare(self, p: Any, wc: Any, budget: int | None = None) -> Any: ...
    def compute(self, p: Any, st: Any, xc: Any, k0: int, k1: int, out: Any = None) -> Any: ...
    def workspace_bytes(self, p: Any, b: int, k: int, budget: int | None = None) -> int: ...
    def state_bytes(self, p: Any) -> int: ...
    def fuses_reduce(self, p: Any) -> bool: ...
    def flops(self, p: Any) -> float: ...
    def cost_features(self, p: Any, device: str | None = None) -> tuple[str, dict]: ...
    def describe(self, p: Any, st: Any, budget: int | None, device: str | None = None) -> str: ...


# the torch methods run on torch tensors' own device (see tensors.py); they import torch
# only when they run
METHODS: dict[str, ModuleType | Method] = {}
# unregistered methods, for the plans made with them (module_of), and what must forget
# the registry's old contents when it changes (the planner's and correlate's caches)
_RETIRED: dict[str, ModuleType | Method] = {}
ON_CHANGE: list = []


def register_method(method: ModuleType | Method) -> None:
    """Make ``method`` (a module, or any object with the :class:`Method` attributes) a
    candidate of ``method="auto"`` and a valid ``method=`` name; raises ValueError when
    the name is taken or an attribute is missing."""
    missing = [a for a in _ATTRIBUTES if not hasattr(method, a)]
    if missing:
        raise ValueError(f"a method needs {', '.join(missing)}; see batchconv.methods.Method")
    if method.NAME in METHODS or method.NAME in ("auto", "measure"):
        raise ValueError(f"method name {method.NAME!r} is taken")
    METHODS[method.NAME] = method
    _RETIRED.pop(method.NAME, None)
    _changed()


def unregister_method(name: str) -> None:
    """Forget the method called ``name``: no new plan uses it; plans already made with it
    keep it (:func:`module_of`)."""
    if name in METHODS:
        _RETIRED[name] = METHODS.pop(name)
        _changed()


def _changed() -> None:
    for forget in ON_CHANGE:  # cached candidates and plans name methods
        forget()


def module_of(name: str) -> Any:
    """The module of a plan's method ``name``: registered, or unregistered since."""
    found = METHODS.get(name) or _RETIRED.get(name)
    return found if found is not None else get_method(name)


def get_method(name: str) -> Any:
    """The method module called ``name``; unknown names list the valid ones."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"method must be 'auto', 'measure' or one of {sorted(METHODS)}, got {name!r}"
        ) from None


_ATTRIBUTES = tuple(a for a in (*Method.__annotations__, *vars(Method)) if not a.startswith("_"))

for _module in (direct, fft, winograd, torch_direct, torch_fft):
    register_method(_module)
