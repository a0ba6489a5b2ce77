"""Memos beside values: what a call learns about a plan (its fast path for an input
layout, a kernel made ready, indices looked up once) is kept here, keyed by the object it
belongs to, so that plans and method states stay values: nothing in them changes after
they are built, whichever calls run on them from whichever threads.

A memo lives as long as its object (it is dropped when the object is collected), is not
pickled or copied with it, and holds only what can be derived again from the object.

>>> class State:
...     pass
>>> st = State()
>>> memo(st).setdefault("seen", 1), memo(st)["seen"], len(vars(st))
(1, 1, 0)
"""

from __future__ import annotations

import threading
import weakref

__all__ = ["memo", "remembered"]

_memos: dict[int, dict] = {}
_lock = threading.Lock()


def memo(obj) -> dict:
    """The memo of ``obj`` (a dict, empty at first), created on first use. Reads and
    ``setdefault`` on it are safe from several threads (the dict's own atomicity); store
    only values derived from ``obj``, so that two threads storing the same key store
    equal values."""
    found = _memos.get(id(obj))
    if found is not None:
        return found
    with _lock:
        found = _memos.get(id(obj))
        if found is None:  # (the finalizer first: an object it cannot watch gets no memo)
            weakref.finalize(obj, _memos.pop, id(obj), None)
            found = _memos[id(obj)] = {}
    return found


def remembered(obj, key: str, make):
    """``memo(obj)[key]``, made by ``make()`` the first time it is asked for (two threads
    asking at once may both make it; the first one stored is kept and returned to both).

    >>> class State:
    ...     pass
    >>> st = State()
    >>> remembered(st, "n", lambda: 1), remembered(st, "n", lambda: 2)
    (1, 1)
    """
    found = memo(obj).get(key, _MISSING)
    if found is _MISSING:
        found = memo(obj).setdefault(key, make())
    return found


_MISSING = object()
