"""batchconv: batched N-dimensional correlation and convolution, every signal against every
filter, fast and within a memory budget.

>>> import numpy as np, batchconv as bc
>>> bc.correlate(np.ones((2, 5)), np.ones((3, 2))).shape
(2, 3, 4)
"""

from ._version import __version__
from .api import clear_plan_cache, convolve, correlate, plan, vjp
from .compiled import use_numba
from .config import show_config
from .match import Matches, match
from .peak_reduce import PeakResult, peaks
from .planner import BoundPlan, Plan
from .ragged import RaggedPlan
from .spec import ChannelsWarning
from .tensors import allow_tf32, use_torch
from .xp import next_fast_len, set_workers

__all__ = [
    "correlate",
    "convolve",
    "plan",
    "vjp",
    "Plan",
    "BoundPlan",
    "RaggedPlan",
    "ChannelsWarning",
    "show_config",
    "next_fast_len",
    "set_workers",
    "use_numba",
    "peaks",
    "match",
    "Matches",
    "PeakResult",
    "clear_plan_cache",
    "allow_tf32",
    "use_torch",
    "__version__",
]
