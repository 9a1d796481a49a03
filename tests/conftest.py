import os

# numba kernels and torch share 2 cores; must be set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

from splatrefine.progress import set_progress_enabled  # noqa: E402

pytest_plugins = ["splatrefine.testing"]


@pytest.fixture(autouse=True)
def _quiet_progress():
    set_progress_enabled(False)
    yield
    set_progress_enabled(True)


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
