"""The JAX backend: the array-API backend (``array_api.py``) plus what JAX adds.

* ``compile``: ``jax.jit``. The portable engine hands it each block's computation (and a
  one-block call whole): one XLA program per problem instead of one dispatch per
  operation. On the 2-core dev machine a 2 x 9 x 8 'same' correlation with 3 filters
  took 5-13 ms a call as separate operations and 0.1-0.2 ms compiled, and its first
  call 0.4-1 s (every operation compiled for its shapes) against 0.1-0.3 s.
* ``precise``: ``jax.default_matmul_precision("highest")``, so that float32 matmuls on
  a GPU do not use TF32 or bfloat16 passes (JAX's default there), which would break the
  float32 accuracy contract; on the CPU it changes nothing.

float64 needs ``jax.config.update("jax_enable_x64", True)`` (or ``JAX_ENABLE_X64=1``):
without it JAX has no float64, and the backend computes float64 problems (integer
inputs included) in float32 (``ArrayAPIBackend.dtype``).

>>> issubclass(JaxBackend, ArrayAPIBackend)   # (no JAX array made here: see the tests)
True
"""

from __future__ import annotations

from .array_api import ArrayAPIBackend

__all__ = ["JaxBackend"]


class JaxBackend(ArrayAPIBackend):
    """:class:`~batchconv.backends.array_api.ArrayAPIBackend` with ``jax.jit`` and
    JAX's matmul precision scope."""

    def compile(self, fn):
        import jax

        return jax.jit(fn)

    def precise(self):
        import jax

        return jax.default_matmul_precision("highest")
