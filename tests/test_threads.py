"""The suite's `threads` setting caps torch and BLAS pools for one case and restores them afterwards."""

import pytest
import torch

from harness.suite import Settings
from harness.threads import limited_threads


def test_threads_are_capped_inside_and_restored_after():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import numpy  # noqa: F401 - loads numpy's BLAS so threadpoolctl sees a pool

    torch.set_num_threads(2)
    with limited_threads(1):
        assert torch.get_num_threads() == 1
        pools = threadpoolctl.threadpool_info()
        assert pools and all(pool["num_threads"] == 1 for pool in pools)
    assert torch.get_num_threads() == 2


def test_zero_leaves_defaults_and_negative_is_refused():
    before = torch.get_num_threads()
    with limited_threads(0):
        assert torch.get_num_threads() == before
    assert "threads: must be >= 0" in Settings(threads=-1).validate()
    assert Settings(threads=2).validate() is None
