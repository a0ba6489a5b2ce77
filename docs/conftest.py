"""pytest set-up for the documentation's examples (``python3 -m pytest docs``).

A page whose examples need a package that is not installed is skipped, with the
package named (the "coming from" pages run against the library they compare with).
"""

import importlib.util
import os
from pathlib import Path

import pytest

# idle thread pools sleep instead of spinning: the examples alternate libraries
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

NEEDS = {
    "arrays.rst": ["torch", "dask", "jax"],
    "scipy_signal.rst": ["scipy"],
    "scipy_ndimage.rst": ["scipy"],
    "opencv.rst": ["cv2"],
    "skimage.rst": ["skimage"],
    "torch.rst": ["torch"],
    "tensorflow.rst": ["tensorflow"],
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        needs = NEEDS.get(Path(str(item.path)).name, [])
        missing = [m for m in needs if importlib.util.find_spec(m) is None]
        if missing:
            item.add_marker(pytest.mark.skip(reason=f"needs {', '.join(missing)}"))


@pytest.fixture(autouse=True)
def _torch_for_numpy_as_in_a_fresh_process(request):
    """Each page reads as in a fresh Python: torch's CPU methods are candidates for
    NumPy arrays only on the pages that import torch (``bc.use_torch``), not on the
    pages that happen to run after one."""
    from batchconv import tensors

    imports_torch = "torch" in NEEDS.get(Path(str(request.node.path)).name, [])
    old, tensors.USE_TORCH = tensors.USE_TORCH, None if imports_torch else False
    yield
    tensors.USE_TORCH = old
