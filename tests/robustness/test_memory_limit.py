"""The activation memory limit: a plan whose arena would pass it is refused before anything is allocated,
and the session stays usable."""

from __future__ import annotations

import numpy as np
import pytest
from robust_models import conv_net, input_for, lenet5

import cnnrt
import cnnrt.runtime.build as build_mod
from cnnrt.errors import CnnrtError, ResourceLimitError

_load = cnnrt.InferenceSession


class _NoExecutor:
    def __init__(self, *a, **k):
        raise AssertionError("the executor (and its arena) must not be built above the limit")


def test_memory_limit_refuses_before_allocating(monkeypatch):
    monkeypatch.setattr(build_mod, "Executor", _NoExecutor)
    with pytest.raises(ResourceLimitError, match=r"need a \d+ bytes arena, above the memory limit of 1000 bytes"):
        _load(conv_net(), memory_limit=1000)


def test_memory_limit_from_environment(monkeypatch):
    monkeypatch.setenv("CNNRT_MEMORY_LIMIT", "2048")
    with pytest.raises(ResourceLimitError, match="memory limit of 2048 bytes.*CNNRT_MEMORY_LIMIT"):
        _load(lenet5())
    monkeypatch.setenv("CNNRT_MEMORY_LIMIT", str(64 << 20))
    assert _load(lenet5()).memory_limit == 64 << 20
    monkeypatch.setenv("CNNRT_MEMORY_LIMIT", "lots")
    with pytest.raises(CnnrtError, match="CNNRT_MEMORY_LIMIT must be a positive number of bytes, not 'lots'"):
        _load(lenet5())


@pytest.mark.parametrize("bad", [0, -5, 1.5, "1GB", True])
def test_memory_limit_argument_is_validated(bad):
    with pytest.raises(CnnrtError, match="memory_limit must be a positive int"):
        _load(conv_net(), memory_limit=bad)


def test_memory_limit_for_a_bigger_batch_at_run_time_keeps_the_session_usable():
    m = conv_net(batch="N")
    s = _load(m)
    one = s.plan.total_bytes
    s = _load(m, memory_limit=one * 4)
    x = input_for(m)["x"]
    [y1] = s.run(None, {"x": x})
    with pytest.raises(ResourceLimitError, match=r"'x': \(64, 3, 8, 8\)"):
        s.run(None, {"x": np.repeat(x, 64, axis=0)})
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], y1)
