"""A dropped session is freed by reference counting: nothing it built (kernels, their packed
weights and scratch, executor, native plan) lies in a reference cycle, which only the cyclic
collector would free, at a generation-2 pass that may come many sessions later (20 sessions
of a VGG built in a row reach 11-19 GB that way). Small zoo nets cover the kernel families:
blocked convs and depthwise, Winograd, fully connected, Gemm, strided outputs (an in-place
Concat at batch 2), bf16 and int8."""

from __future__ import annotations

import ctypes
import gc
import types
from collections import Counter

import pytest

import cnnrt
from cnnrt.kernels.cpu.conv_blocked_bf16 import bf16_unsupported_reason

pytest.importorskip("torch", reason="the zoo needs torch (pip install -e '.[zoo]')")
from cnnrt import models  # noqa: E402
from cnnrt.models.quantize import quantize_cached  # noqa: E402

NO_BF16 = pytest.mark.skipif(bool(bf16_unsupported_reason()), reason="the CPU lacks AVX-512 BF16")


def _garbage_of_a_dropped_session(name: str, path, batch: int, **options) -> list:
    """What the cyclic collector finds after a session of zoo net ``name`` (its file ``path``),
    run at ``batch``, is dropped (the collector off meanwhile: nothing is freed but by
    reference counting)."""
    x = models.sample_input(name, batch=batch, seed=3)
    gc.collect()
    gc.disable()
    try:
        sess = cnnrt.InferenceSession(str(path), **options)
        sess.run(None, {"input": x})
        gc.collect()  # what building left behind (the ONNX import, the passes) is not the session
        gc.set_debug(gc.DEBUG_SAVEALL)
        del sess
        gc.collect()
        return [o for o in gc.garbage if not _llvmlite_pointer(o)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _llvmlite_pointer(obj) -> bool:
    """A ctypes pointer of llvmlite (a native segment's LLVM module) or its ``_objects``: llvmlite
    hashes a module by casting its pointer (an execution engine keeps its modules in a set),
    and ctypes' cast keeps the pointer in the pointer's own ``_objects``, a cycle of a few
    hundred bytes that holds nothing of the session."""
    if isinstance(obj, dict):
        return bool(obj) and all(isinstance(v, ctypes._Pointer) and v._objects is obj for v in obj.values())
    return isinstance(obj, ctypes._Pointer) and type(obj).__module__.startswith("llvmlite")


def _described(garbage: list) -> Counter:
    """The functions and objects in ``garbage`` by name (not the cells, tuples and dicts between them)."""
    plain = (dict, list, tuple, types.CellType)
    return Counter(getattr(o, "__qualname__", type(o).__qualname__) for o in garbage if not isinstance(o, plain))


@pytest.mark.parametrize(
    ("name", "batch", "options"),
    [
        ("lenet5", 1, {}),  # fully connected convs, Gemm
        ("mobilenet_v3_small", 1, {}),  # blocked depthwise, squeeze-excite
        ("squeezenet1_1", 2, {}),  # in-place Concat: strided outputs
        ("resnet18", 1, {}),  # Winograd, residuals
        pytest.param("mobilenet_v2", 1, {"precision": "bf16"}, marks=NO_BF16),
    ],
)
def test_a_dropped_session_leaves_no_reference_cycle(name, batch, options):
    garbage = _garbage_of_a_dropped_session(name, models.export_cached(name), batch, **options)
    assert not garbage, _described(garbage).most_common(20)


def test_a_dropped_int8_session_leaves_no_reference_cycle():
    garbage = _garbage_of_a_dropped_session("lenet5", quantize_cached("lenet5", batch=2), 2)
    assert not garbage, _described(garbage).most_common(20)
