"""The order of the examples in the gallery (sphinx-gallery's within_subsection_order)."""

from pathlib import Path

ORDER = [
    "plot_template_matching.py",
    "plot_filter_bank.py",
    "plot_method_crossover.py",
    "plot_memory_budget.py",
]


class ByList:
    """Examples listed in ORDER first, in that order; any others after them by name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        name = Path(filename).name
        return (ORDER.index(name), name) if name in ORDER else (len(ORDER), name)

    def __repr__(self):  # a stable repr: sphinx-gallery hashes the configuration
        return "ByList"
