"""Run IR nodes through CudaExecutor, and the error bound the CUDA tests check with (the float64
references are tests/reference.py's)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cnnrt.core.ir import Graph, Node, Value
from cnnrt.runtime.cuda_executor import CudaExecutor
from cnnrt.runtime.plan import plan_memory


def run_op(
    op: str, inputs: Sequence[np.ndarray | None], outputs, attrs=None, const: Sequence[int] = (), executor=False
):
    """Run one ``op`` node on CUDA. ``outputs``: list of shapes or (shape, dtype); ``const``:
    indices of inputs bound as graph constants (the rest are fed). Returns numpy outputs
    (and the executor when ``executor=True``)."""
    names = [f"in{k}" if a is not None else "" for k, a in enumerate(inputs)]
    arrays = {name: np.asarray(a) for name, a in zip(names, inputs) if name}
    values = {name: Value(name, tuple(a.shape), str(a.dtype)) for name, a in arrays.items()}
    consts = {name: arrays[name] for k, name in enumerate(names) if name and k in const}
    feed_names = [name for name in arrays if name not in consts]
    feeds = [arrays[name] for name in feed_names]
    out_names = []
    for k, o in enumerate(outputs):
        shape, dtype = o if (isinstance(o, tuple) and len(o) == 2 and isinstance(o[1], str)) else (o, "float32")
        out_names.append(f"out{k}")
        values[f"out{k}"] = Value(f"out{k}", tuple(int(d) for d in shape), dtype)
    node = Node(op, tuple(names), tuple(out_names), dict(attrs or {}), name=f"{op.lower()}0", origin=(f"{op}_0",))
    graph = Graph([node], values, consts, feed_names, out_names)
    graph.verify()
    ex = CudaExecutor(graph, plan_memory(graph))
    outs = ex.run(feeds)
    return (outs, ex) if executor else outs


def conv_attrs(
    kernel, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1, activation="none", alpha=0.0, beta=0.0
):
    """The attributes of an IR Conv / ConvTranspose node (as the frontend writes them)."""
    return dict(
        strides=tuple(strides),
        pads=tuple(pads),
        dilations=tuple(dilations),
        group=group,
        kernel=tuple(kernel),
        activation=activation,
        act_alpha=alpha,
        act_beta=beta,
    )


def rand(rng, *shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def tol_for(k_len: int, dtype=np.float32) -> float:
    """Relative bound for a float32 sum of ``k_len`` products: ~sqrt(k) * eps, with margin."""
    return float(8 * np.finfo(dtype).eps * np.sqrt(max(k_len, 1)) + 1e-6)


def assert_close(got, ref, rel):
    """max|got - ref| <= rel * max(1, max|ref|) (the project's bound), shapes equal."""
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    err = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
    assert err <= rel * scale, f"max abs error {err:.3e} > {rel:g} * {scale:.3e}"
