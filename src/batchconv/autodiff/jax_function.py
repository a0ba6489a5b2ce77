"""``bc.correlate``/``convolve`` on JAX arrays as a ``jax.custom_vjp`` function, so that
``jax.grad`` (and ``jax.vjp``) differentiate it: the forward is the portable engine's
call, the backward :func:`batchconv.autodiff.backward` on the same arrays (correlations
through the portable engine).

What holds: eager use, ``jax.grad``/``jax.vjp``/``jax.value_and_grad`` outside
``jax.jit`` (the portable engine reads sizes and checks values on the host, so the call
is not traceable by ``jit``; that is the forward's limit too).

Imported only for JAX arrays (JAX is then already imported).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import backward, problem_of

__all__ = ["correlate_with_vjp"]


def correlate_with_vjp(run, x, w, spec, flip: bool, options: dict, ops):
    """``run(x, w)`` as a function JAX can differentiate with respect to ``x`` and
    ``w`` (a NumPy ``w`` becomes a JAX array); the options are checked for a backward
    only when JAX asks for one."""
    if not isinstance(w, jax.Array):
        if not isinstance(w, np.ndarray | list | tuple | int | float):
            return run(x, w)  # (another library's array: the engine says what to do)
        w = jnp.asarray(w)

    @jax.custom_vjp
    def call(a, b):
        return run(a, b)

    def forward(a, b):
        problem_of(a, b, spec, flip, options)  # (an error now, not in the backward)
        return run(a, b), (a, b)

    def pullback(saved, g):
        a, b = saved
        if isinstance(g, tuple):  # bc.peaks: the scores' cotangent (coordinates: none)
            g = g[0]
        return backward(a, b, g, spec, flip, options, ops)

    call.defvjp(forward, pullback)
    return call(x, w)
