"""Device helpers and launch configuration."""

from __future__ import annotations

import os

import pytest
from cuda_test_env import SIMULATOR

from cnnrt.kernels.cuda import config, device


def test_device_is_usable_and_described():
    assert device.cuda_unavailable_reason() is None
    info = device.device_info()
    assert info.simulator == device.is_simulator() == SIMULATOR
    assert info.multiprocessors >= 1 and info.max_threads_per_block >= 256


@pytest.mark.skipif(
    not SIMULATOR or any(v in os.environ for v in config._ENV.values()), reason="checks simulator defaults"
)
def test_simulator_uses_the_small_geometry():
    assert config.current() == config.SIMULATOR_DEFAULT


def test_launch_geometry_helpers_and_validation():
    with config.override(block=8, max_blocks=3, tile_threads=2, micro=3, max_tile_blocks=5) as cfg:
        assert cfg.tile == 6
        assert cfg.grid_1d(1) == (1, 8)
        assert cfg.grid_1d(17) == (3, 8)  # capped: threads loop over the rest
        assert cfg.grid_1d(1000) == (3, 8)
        assert cfg.grid_tiles(2) == (2, (2, 2))
        assert cfg.grid_tiles(99) == (5, (2, 2))
    assert config.current() != cfg
    with pytest.raises(ValueError, match="1024 threads"):
        with config.override(tile_threads=33):
            pass
    with pytest.raises(ValueError, match="positive int"):
        with config.override(block=0):
            pass


@pytest.mark.skipif(not SIMULATOR, reason="a simulator defect")
def test_simulator_shared_arrays_are_one_per_block(monkeypatch):
    """Regression: the simulator's unlocked shared-array lookup handed threads of one block
    different arrays. Slowing the allocation widens that window (9 in 10 GEMMs were wrong)."""
    import time

    import numpy as np
    from cuda_sim_helpers import assert_close, rand, run_op

    assert device.patch_simulator_shared_arrays()
    real_empty = np.empty

    def slow_empty(*args, **kwargs):
        time.sleep(5e-4)
        return real_empty(*args, **kwargs)

    rng = np.random.default_rng(0)
    a, b = rand(rng, 16, 24), rand(rng, 24, 40)
    attrs = dict(alpha=1.0, beta=1.0, trans_a=0, trans_b=0, activation="none", act_alpha=0.0, act_beta=0.0)
    monkeypatch.setattr(np, "empty", slow_empty)
    for _ in range(10):  # upstream fails most of these
        [y] = run_op("Gemm", [a, b], [(16, 40)], attrs)
        assert_close(y, a.astype(np.float64) @ b, 1e-5)
