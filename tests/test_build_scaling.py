"""Build time grows near-linearly with graph size: 4x the nodes may cost at most 5x the time.

Each graph shape stresses another part of the build: a chain of Identity (remove_identity and
the rewrite engine), Conv+Relu and residual chains (fuse_epilogue, the planner on short
lifetimes), a wide graph whose outputs all live to the end (the planner when every lifetime
overlaps every other) and many in-place Concats (their nesting checks). A quadratic step
shows as 16x. The bound is on the ratio of the best of a few builds taken in alternation, in
the building thread's CPU time (other processes on a loaded machine, and an earlier test's
kernels still compiling in the background, do not count); the garbage collector is paused
while timing (its full collections scan every object the test process holds, which is not
the build's cost).
"""

from __future__ import annotations

import gc
import time

import pytest
from scaling_models import SHAPES

import cnnrt

SMALL, LARGE = 250, 1000
MAX_RATIO = 5.0


def _build_seconds(model) -> float:
    gc.collect()
    gc.disable()
    try:
        t = time.thread_time()
        cnnrt.InferenceSession(model, threads=1)
        return time.thread_time() - t
    finally:
        gc.enable()


@pytest.mark.parametrize("shape", list(SHAPES))
def test_build_time_is_near_linear(shape):
    small, large = SHAPES[shape](SMALL), SHAPES[shape](LARGE)
    cnnrt.InferenceSession(small, threads=1)  # kernels compiled, modules imported
    t_small = t_large = float("inf")
    for _ in range(3):
        t_small = min(t_small, _build_seconds(small))
        t_large = min(t_large, _build_seconds(large))
    assert t_large <= MAX_RATIO * t_small, (
        f"{shape}: {LARGE} nodes build in {t_large:.3f} s, {SMALL} in {t_small:.3f} s "
        f"({t_large / t_small:.1f}x for {LARGE // SMALL}x the nodes)"
    )
