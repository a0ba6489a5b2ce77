"""The memory budget: ``memory=`` read as bytes (:func:`parse_memory`), its default,
bytes for people (:func:`format_bytes`), and the check that a result alone fits the
memory available now (:func:`check_result_fits`).

>>> parse_memory("512MiB"), format_bytes(3 << 30)
(536870912, '3.0 GiB')
"""

from __future__ import annotations

import re
from math import prod

import numpy as np

from .problem import Problem
from .tensors import device_memory, is_cuda
from .xp import available_memory

__all__ = [
    "parse_memory",
    "format_bytes",
    "default_memory",
    "check_result_fits",
    "largest_block",
]


def parse_memory(memory, device: str | None = None) -> int:
    """A byte budget from an int or a string like ``"2GB"``, ``"512MiB"``, ``"1.5e9"``;
    None gives the default for ``device`` (see :func:`default_memory`).

    >>> parse_memory("2GB"), parse_memory("1KiB")
    (2000000000, 1024)
    """
    if memory is None:
        return default_memory(device)
    if isinstance(memory, int | np.integer) and not isinstance(memory, bool):
        if memory <= 0:
            raise ValueError(f"memory must be a positive number of bytes, got {memory}")
        return int(memory)
    if isinstance(memory, str):
        m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kKmMgGtT]i?)?[bB]?\s*", memory)
        if m:
            units = {
                "": 1,
                "k": 1e3,
                "m": 1e6,
                "g": 1e9,
                "t": 1e12,
                "ki": 1 << 10,
                "mi": 1 << 20,
                "gi": 1 << 30,
                "ti": 1 << 40,
            }
            try:
                value = float(m.group(1)) * units[(m.group(2) or "").lower()]
            except ValueError:
                value = 0
            if value > 0:
                return int(value)
    raise ValueError(
        f"memory must be a byte count (int) or a string like '2GB' or '512MiB', got {memory!r}"
    )


def format_bytes(n: float) -> str:
    """``n`` bytes for people: ``"512 B"``, ``"3.2 KiB"``, ``"1.5 GiB"``.

    >>> format_bytes(100), format_bytes(200_000), format_bytes(3 << 30)
    ('100 B', '195.3 KiB', '3.0 GiB')
    """
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def default_memory(device: str | None = None) -> int:
    """Default budget: a quarter of the RAM available now, at most 4 GiB; on a CUDA
    device half of its free memory (``tensors.device_memory``)."""
    if is_cuda(device):
        return device_memory(device)[0]
    return int(min(available_memory() // 4, 4 << 30))


_RESULT_ALWAYS_FITS = 16 << 20


def check_result_fits(p: Problem, device: str | None = None) -> None:
    """Raise MemoryError, before allocating anything, when the result alone exceeds the
    memory available now (on ``device``'s memory for a CUDA device)."""
    need = prod(p.out_shape) * p.out_dtype.itemsize
    if need <= _RESULT_ALWAYS_FITS:  # (reading the free memory costs a cold call ~5 us)
        return
    have = device_memory(device)[1] if is_cuda(device) else available_memory()
    if need > have:
        raise MemoryError(
            f"the result {p.out_shape} {p.out_dtype} needs {format_bytes(need)} but "
            f"{format_bytes(have)} are available; reduce over the sliding axes "
            f"(reduce=...), use a stride, or process fewer items per call"
        )


def largest_block(B: int, K: int, block_bytes, room: int) -> tuple[int, int]:
    """The largest (batch, bank) block whose ``block_bytes(b, k)`` fit ``room``: the
    batch halved first (the filter state serves every batch block), then the bank; (1, 1)
    at the least, fitting or not (the caller decides what then).

    >>> largest_block(8, 4, lambda b, k: 10 * b * k, 40)
    (1, 4)
    """
    b, k = max(B, 1), max(K, 1)
    while block_bytes(b, k) > room and (b > 1 or k > 1):
        if b > 1:
            b = -(-b // 2)
        else:
            k = -(-k // 2)
    return b, k
