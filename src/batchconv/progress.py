"""``progress=`` for long calls: a callable ``f(done, total)`` called after each block of
(items, filters) that a call computes, or ``True`` for a bar on stderr (tqdm's when it
is installed, else a line of text rewritten in place). An exception raised by the
callable aborts the call: nothing is returned, no partial result.

>>> import numpy as np, batchconv as bc
>>> seen = []
>>> y = bc.correlate(np.ones((16, 2000)), np.ones((12, 9)), method="fft", memory="500KB",
...                  progress=lambda done, total: seen.append((done, total)))
>>> seen[:2], seen[-1]
([(1, 32), (2, 32)], (32, 32))
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Reporter", "reporter"]


class Reporter:
    """Counts a call's blocks and tells ``progress``; a context manager (the bar is
    closed however the call ends)."""

    __slots__ = ("_bar", "_call", "done", "total")

    def __init__(self, progress: Any, total: int, unit: str = "block"):
        self.done, self.total, self._bar, self._call = 0, max(int(total), 1), None, None
        if progress is True:
            self._bar = _bar(self.total, unit)
        else:
            self._call = progress

    def set_total(self, total: int) -> None:
        """The call has ``total`` blocks in all (known once its blocks are sized)."""
        self.total = max(int(total), self.done, 1)
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def step(self, blocks: int = 1) -> None:
        """``blocks`` more blocks are done."""
        self.done = min(self.done + blocks, self.total)
        if self._bar is not None:
            self._bar.update(blocks)
        else:
            self._call(self.done, self.total)

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()


def reporter(progress: Any, total: int, unit: str = "block") -> Reporter | None:
    """The :class:`Reporter` of ``progress=`` for a call of ``total`` blocks (or other
    ``unit``), or None for ``progress=None``/``False``. TypeError for anything but
    those, ``True`` or a callable."""
    if progress is None or progress is False:
        return None
    if progress is not True and not callable(progress):
        raise TypeError(
            f"progress must be None, True (a bar on stderr) or a callable f(done, total), "
            f"got {progress!r}"
        )
    return Reporter(progress, total, unit)


def _bar(total: int, unit: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return _TextBar(total, unit)
    return tqdm(total=total, file=sys.stderr, unit=unit, desc="batchconv")


class _TextBar:
    """``done/total blocks`` on stderr, rewritten in place (without tqdm)."""

    def __init__(self, total: int, unit: str):
        self.total, self.done, self.unit = total, 0, unit  # (shown from the first step)

    def update(self, n: int) -> None:
        self.done += n
        self._show()

    def refresh(self) -> None:
        if self.done:
            self._show()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()

    def _show(self) -> None:
        sys.stderr.write(f"\rbatchconv: {self.done}/{self.total} {self.unit}s")
        sys.stderr.flush()
