"""Sphinx configuration of the batchconv documentation.

Build: ``bash docs/build.sh`` (warnings are errors). The gallery's examples
(``docs/gallery/plot_*.py``) run during the build and their figures are kept; the
Performance page's tables come from the repository's BENCHMARKS.md at each build.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

# the gallery's figures: no window, the same look on every machine
os.environ.setdefault("MPLBACKEND", "Agg")
# idle thread pools sleep instead of spinning (a shared machine builds these docs)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import batchconv  # noqa: E402

project = "batchconv"
author = "the batchconv developers"
copyright = "the batchconv developers"  # noqa: A001
release = batchconv.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "matplotlib.sphinxext.plot_directive",
    "myst_parser",
    "benchmark_tables",  # _ext/: BENCHMARKS.md's tables for the Performance page
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "_generated",  # included by pages, not pages themselves
    "gallery",  # sphinx-gallery's sources; the pages are built into auto_examples/
    "**/sg_execution_times.rst",
    "Thumbs.db",
    ".DS_Store",
]
templates_path = ["_templates"]
html_static_path = ["_static"]
html_css_files = ["custom.css"]

# -- API reference ----------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # one signature (no overloads); the types are in Parameters
numpydoc_show_class_members = False  # the class template lists Plan's members itself
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
add_module_names = False

# -- matplotlib's plot directive (the spec diagrams) -------------------------------------
plot_html_show_source_link = False
plot_html_show_formats = False
plot_include_source = False
plot_formats = [("png", 144)]
plot_rcparams = {"figure.autolayout": False}

# -- MyST (the Performance page includes Markdown) --------------------------------------
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # BENCHMARKS.md's tables start at level 4

# -- sphinx-gallery ---------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "gallery",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "gallery_order.ByList",
    "doc_module": ("batchconv",),
    "backreferences_dir": "generated/backreferences",
    "show_memory": False,
    "remove_config_comments": True,
    "download_all_examples": False,
    "matplotlib_animations": False,
    "min_reported_time": 1,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "thumbnail_size": (400, 280),
    "default_thumb_file": None,
}

# -- HTML -------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"batchconv {release}"
html_show_sourcelink = False
html_copy_source = False
html_last_updated_fmt = None
html_theme_options = {
    "navbar_align": "left",
    "header_links_before_dropdown": 7,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
    "show_prev_next": True,
}
html_sidebars = {
    "performance": [],
    "index": [],
    "getting_started": [],
}
html_context = {"default_mode": "light"}


def _plan_signature(app, what, name, obj, options, signature, return_annotation):
    """Plans come from :func:`batchconv.plan`: show no constructor signature (a
    dataclass's would list its internal fields)."""
    if name == "batchconv.Plan":
        return "", None
    return None


def setup(app):
    app.connect("autodoc-process-signature", _plan_signature)
