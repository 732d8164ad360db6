"""Every CUDA kernel compiles to PTX with the argument types its builder really passes.

numba's simulator runs kernels as plain Python, so it cannot catch what only the CUDA
compiler rejects (typing errors, unsupported builtins, float64 promotion in float32
kernels). This test builds one-node graphs through CudaExecutor with the device layer
swapped for numpy (no GPU needed), intercepts every launch at ``common.configure`` and
compiles the kernel for that exact signature with ``numba.cuda.compile_ptx`` for the
real-GPU launch geometry. It needs libNVVM (the CUDA toolkit), not a driver or a GPU.
It also checks that float32 kernels never compute in float64 (a 1/32..1/64-rate unit on
most GPUs): a bare Python float or an int divisor silently promotes.
"""

from __future__ import annotations

import dataclasses
import time
import types as pytypes

import numba
import numpy as np
import pytest
from cuda_sim_helpers import conv_attrs
from cuda_test_env import SIMULATOR, real_gpu

pytestmark = pytest.mark.skipif(SIMULATOR, reason="compiles for the real CUDA target; the simulator has no compiler")

CC = (7, 5)


def _nvvm_missing() -> str | None:
    try:
        from numba.cuda.cudadrv import nvvm

        return None if nvvm.is_available() else "libNVVM (CUDA toolkit) not found"
    except Exception as e:
        return f"numba.cuda unusable: {e}"


F = "float32"
I64 = "int64"
CONV = conv_attrs((3, 3), pads=(1, 1, 1, 1), activation="Relu")
GEMM = dict(alpha=1.0, beta=1.0, trans_a=0, trans_b=1, activation="HardSwish", act_alpha=0.0, act_beta=0.0)
POOL = dict(kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0), dilations=(1, 1))

# op, inputs [(shape, dtype, constant?) or None], outputs [(shape, dtype)], attrs
CASES = [
    (
        "Conv",
        [((1, 4, 6, 6), F, 0), ((4, 4, 3, 3), F, 1), ((4,), F, 1), ((1, 4, 6, 6), F, 0)],
        [((1, 4, 6, 6), F)],
        dict(CONV, algorithm="implicit_gemm"),
    ),
    (
        "Conv",
        [((1, 4, 6, 6), F, 0), ((4, 4, 1, 1), F, 1)],
        [((1, 4, 6, 6), F)],
        dict(CONV, pads=(0, 0, 0, 0), kernel=(1, 1)),
    ),
    ("Conv", [((1, 4, 6, 6), F, 0), ((4, 1, 3, 3), F, 1)], [((1, 4, 6, 6), F)], dict(CONV, group=4)),
    (
        "Conv",
        [((1, 4, 6, 6), F, 0), ((4, 1, 3, 3), F, 1), ((4,), F, 1), ((1, 4, 6, 6), F, 0)],
        [((1, 4, 6, 6), F)],
        dict(CONV, group=4),
    ),
    (
        "ConvTranspose",
        [((1, 4, 3, 3), F, 0), ((4, 2, 3, 3), F, 1), ((2,), F, 1)],
        [((1, 2, 5, 5), F)],
        dict(CONV, pads=(0, 0, 0, 0)),
    ),
    ("Gemm", [((3, 5), F, 0), ((4, 5), F, 1), ((4,), F, 1)], [((3, 4), F)], GEMM),
    ("MatMul", [((2, 3, 5), F, 0), ((5, 4), F, 0)], [((2, 3, 4), F)], {}),
    ("MaxPool", [((1, 2, 4, 4), F, 0)], [((1, 2, 2, 2), F), ((1, 2, 2, 2), I64)], dict(POOL, storage_order=0)),
    ("AveragePool", [((1, 2, 4, 4), F, 0)], [((1, 2, 2, 2), F)], dict(POOL, count_include_pad=True)),
    ("GlobalAveragePool", [((1, 2, 4, 4), F, 0)], [((1, 2, 1, 1), F)], {}),
    ("LRN", [((1, 4, 2, 2), F, 0)], [((1, 4, 2, 2), F)], dict(size=3, alpha=1e-4, beta=0.75, bias=1.0)),
    ("BatchNormalization", [((1, 2, 3, 3), F, 0)] + [((2,), F, 1)] * 4, [((1, 2, 3, 3), F)], dict(epsilon=1e-5)),
    ("BatchNormalization", [((1, 2, 3, 3), F, 0)] + [((2,), F, 0)] * 4, [((1, 2, 3, 3), F)], dict(epsilon=1e-5)),
    (
        "ChannelAffine",
        [((1, 2, 3, 3), F, 0), ((2,), F, 1), ((2,), F, 1)],
        [((1, 2, 3, 3), F)],
        dict(activation="Elu", act_alpha=1.0, act_beta=0.0),
    ),
    ("Sigmoid", [((2, 3), F, 0)], [((2, 3), F)], {}),
    ("Relu", [((2, 3), I64, 0)], [((2, 3), I64)], {}),
    ("Add", [((2, 3), F, 0), ((3,), F, 1)], [((2, 3), F)], {}),
    ("Mul", [((2, 3), I64, 0), ((2, 3), I64, 0)], [((2, 3), I64)], {}),
    ("PRelu", [((2, 3), F, 0), ((3,), F, 1)], [((2, 3), F)], {}),
    ("Sum", [((3,), F, 0)], [((3,), F)], {}),
    ("Cast", [((2, 3), F, 0)], [((2, 3), I64)], dict(to=I64)),
    ("Cast", [((2, 3), F, 0)], [((2, 3), "bool")], dict(to="bool")),
    ("Softmax", [((2, 5), F, 0)], [((2, 5), F)], dict(axis=-1, log=True)),
    ("ReduceMean", [((2, 3, 4), F, 0)], [((2, 1, 4), F)], dict(axes=(1,), keepdims=True)),
    ("Concat", [((1, 2, 2), F, 0), ((1, 3, 2), F, 0)], [((1, 5, 2), F)], dict(axis=1)),
    ("Transpose", [((2, 3, 4), F, 0)], [((4, 2, 3), F)], dict(perm=(2, 0, 1))),
    ("Pad", [((2, 3), F, 0)], [((4, 6), F)], dict(mode="reflect", pads=(1, 1, 1, 2), value=0.0)),
    ("Gather", [((4, 3), F, 0), ((2,), I64, 1)], [((2, 3), F)], dict(axis=0)),
    ("ConstantOfShape", [((2,), I64, 1)], [((2, 3), F)], dict(value=np.array(1.5, np.float32))),
    ("Dropout", [((2, 3), F, 1)], [((2, 3), F), ((2, 3), "bool")], {}),
    (
        "Resize",
        [((1, 1, 3, 3), F, 0)],
        [((1, 1, 6, 6), F)],
        dict(mode="nearest", coord_mode="asymmetric", nearest_mode="floor", scales=(1, 1, 2, 2)),
    ),
    (
        "Resize",
        [((1, 1, 3, 3), F, 0)],
        [((1, 1, 6, 6), F)],
        dict(mode="linear", coord_mode="half_pixel", scales=(1, 1, 2, 2)),
    ),
    (
        "Resize",
        [((1, 1, 3, 3), F, 0)],
        [((1, 1, 6, 6), F)],
        dict(mode="cubic", coord_mode="half_pixel", scales=(1, 1, 2, 2)),
    ),
    ("GroupNormalization", [((1, 4, 3, 3), F, 0), ((4,), F, 1), ((4,), F, 1)], [((1, 4, 3, 3), F)], dict(num_groups=2)),
    ("LayerNormalization", [((2, 3, 4), F, 0), ((4,), F, 1), ((4,), F, 1)], [((2, 3, 4), F)], dict(axis=-1)),
    ("Sqrt", [((2, 3), F, 0)], [((2, 3), F)], {}),
    ("Equal", [((2, 3), F, 0), ((2, 3), F, 0)], [((2, 3), "bool")], {}),
    ("Not", [((2, 3), "bool", 0)], [((2, 3), "bool")], {}),
    ("Where", [((2, 3), "bool", 0), ((2, 3), F, 0), ((2, 3), F, 0)], [((2, 3), F)], {}),
    ("Expand", [((1, 3), F, 0)], [((2, 3), F)], dict(shape=(2, 3))),
    ("ArgMax", [((2, 3, 4), F, 0)], [((2, 1, 4), I64)], dict(axis=1)),
]


def _graph(op, inputs, outputs, attrs):
    from cnnrt.core.ir import Graph, Node, Value

    rng = np.random.default_rng(0)
    values, consts, feeds, names = {}, {}, [], []
    for k, spec in enumerate(inputs):
        shape, dtype, const = spec
        name = f"in{k}"
        names.append(name)
        values[name] = Value(name, shape, dtype)
        if const:
            consts[name] = (rng.integers(0, 2, shape) if dtype == I64 else rng.random(shape)).astype(dtype)
        else:
            feeds.append(name)
    outs = [f"out{k}" for k in range(len(outputs))]
    for o, (shape, dtype) in zip(outs, outputs):
        values[o] = Value(o, shape, dtype)
    node = Node(op, tuple(names), tuple(outs), attrs, name=f"{op}0", origin=(op,))
    g = Graph([node], values, consts, feeds, outs)
    g.verify()
    return g


@pytest.fixture
def dry_run(monkeypatch):
    """Swap the device layer for numpy and compile (instead of run) every launch."""
    why = _nvvm_missing()
    if why:
        pytest.skip(why)
    from numba import cuda

    import cnnrt.runtime.cuda_executor as cx
    from cnnrt.kernels.cuda import common, config, device

    fake = pytypes.SimpleNamespace(
        to_device=lambda a: np.array(a, copy=True),
        device_array=lambda shape, dtype: np.zeros(shape, dtype),
        synchronize=lambda: None,
    )
    if not real_gpu():  # device-function compilation asks the current device for its compute capability
        import numba.cuda.dispatcher as nd

        monkeypatch.setattr(nd, "get_current_device", lambda: pytypes.SimpleNamespace(compute_capability=CC))
    device.placeholder.cache_clear()
    monkeypatch.setattr(device, "_cuda", lambda: fake)
    monkeypatch.setattr(cx, "cuda_unavailable_reason", lambda: None)
    compiled: dict[tuple, str] = {}
    failures: list[str] = []

    def configure(kernel, blocks, threads):
        def launch(*args):
            sig = tuple(numba.typeof(a) for a in args)
            key = (kernel.py_func, sig)
            if key in compiled:
                return
            try:
                ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=CC)
                compiled[key] = ptx
            except Exception as e:
                compiled[key] = ""
                failures.append(f"{kernel.py_func.__qualname__}{sig}: {type(e).__name__}: {str(e)[:800]}")

        return launch

    monkeypatch.setattr(common, "configure", configure)
    with config.override(**dataclasses.asdict(config.GPU_DEFAULT)):
        yield compiled, failures
    device.placeholder.cache_clear()


def test_every_kernel_compiles_to_ptx(dry_run):
    from cnnrt.kernels.cuda import (
        conv,
        conv_transpose,
        elementwise,
        gemm,
        layernorm,
        norm,
        pool,
        reduce,
        resize,
        tensor,
    )
    from cnnrt.runtime.cuda_executor import CudaExecutor
    from cnnrt.runtime.plan import plan_memory

    compiled, failures = dry_run
    t0 = time.perf_counter()
    for op, inputs, outputs, attrs in CASES:
        g = _graph(op, inputs, outputs, attrs)
        ex = CudaExecutor(g, plan_memory(g))
        for step in ex.steps:
            step.run(step.ins, step.outs)
    assert not failures, "\n".join(failures)
    names = {f.__qualname__.split(".<locals>")[0] for f, _ in compiled}
    kernels = {
        name
        for mod in (conv, conv_transpose, elementwise, gemm, layernorm, norm, pool, reduce, resize, tensor)
        for name, obj in vars(mod).items()
        if hasattr(obj, "py_func")
        and not getattr(obj, "targetoptions", {}).get("device", False)
        and obj.py_func.__module__ == mod.__name__
    } | {"gemm_kernel", "implicit_gemm_kernel"}
    assert kernels <= names, f"kernels never compiled: {sorted(kernels - names)}"
    promoted = sorted(
        f.__qualname__
        for (f, sig), ptx in compiled.items()
        if str(sig[0]) == "array(float32, 1d, C)" and "float64" not in str(sig) and ".f64" in ptx
    )
    assert not promoted, f"float32 kernels computing in float64: {promoted}"
    print(f"compiled {len(compiled)} kernel signatures to PTX in {time.perf_counter() - t0:.1f} s")
