"""Running one IR node through its CPU kernel, and the error bounds the kernel tests check with.

Error bounds follow from the computation: a float32 sum of K products has error at most
about ``K * u * sum|terms|`` with ``u = 2**-24`` (unit roundoff), so each check computes the
same expression on absolute values (the "magnitude") and allows a small multiple of that.
The float64 references themselves are in tests/reference.py.
"""

from __future__ import annotations

import numpy as np

from cnnrt.core.ir import Graph, Node, Value
from cnnrt.core.ops import ACTIVATIONS
from cnnrt.kernels import get_builder
from cnnrt.kernels.registry import bound

U32 = 2.0**-24  # float32 unit roundoff


def run_node(op: str, inputs, attrs: dict, out_shapes, out_dtypes=None, const=()):
    """Build ``op`` on a one-node Graph and run it once; returns the output arrays.

    ``inputs``: list of arrays (None for an omitted optional input); ``const``: indices of
    inputs that are graph constants (the builder sees and may prepack them).
    """
    run, ins, outs = _built(
        op, [None if a is None else np.ascontiguousarray(a) for a in inputs], attrs, out_shapes, out_dtypes, const
    )
    run(ins, outs)
    return outs


def bind_node(op: str, inputs, attrs: dict, out_shapes, out_dtypes=None, const=()):
    """:func:`run_node`'s kernel bound to its arrays once, as an executor binds it
    (kernels.registry.bound), the inputs as given (views included): (the call, the output
    arrays). Each call reads the inputs' current contents."""
    run, ins, outs = _built(op, inputs, attrs, out_shapes, out_dtypes, const)
    return bound(run, ins, outs), outs


def _built(op: str, inputs, attrs: dict, out_shapes, out_dtypes, const):
    """(the kernel, its input list, its NaN-filled outputs) of ``op`` on a one-node Graph."""
    values, constants, names, graph_inputs = {}, {}, [], []
    for i, arr in enumerate(inputs):
        if arr is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        values[name] = Value(name, tuple(arr.shape), str(arr.dtype))
        if i in const:
            # read-only, as the frontend's constants are: kernels must not write them, and
            # Numba types read-only arrays apart (the tests then compile what sessions use)
            arr = arr.copy()
            arr.flags.writeable = False
            constants[name] = arr
        else:
            graph_inputs.append(name)
    while names and names[-1] == "":
        names.pop()
    out_dtypes = out_dtypes or ["float32"] * len(out_shapes)
    outs = [f"out{i}" for i in range(len(out_shapes))]
    for o, s, d in zip(outs, out_shapes, out_dtypes):
        values[o] = Value(o, tuple(s), d)
    node = Node(op, tuple(names), tuple(outs), dict(attrs), name="n0", origin=("n0",))
    graph = Graph([node], values, constants, graph_inputs, outs)
    graph.verify()
    run = get_builder(op)(node, graph)
    out_arrays = [
        np.full(s, np.nan if np.dtype(d).kind == "f" else (7 if np.dtype(d).kind == "u" else -7), dtype=d)
        for s, d in zip(out_shapes, out_dtypes)
    ]
    # like the executor: one entry per node input slot, None for an omitted one
    ins = [None if a is None else (constants[n] if n in constants else a) for a, n in zip(inputs, names)]
    return run, ins, out_arrays


def assert_within(got, ref, bound, what=""):
    """|got - ref| <= bound elementwise (bound broadcastable), with a readable failure."""
    got64 = np.asarray(got, np.float64)
    assert got64.shape == np.shape(ref), (got64.shape, np.shape(ref))
    err = np.abs(got64 - ref)
    bad = ~(err <= bound)  # NaN in got fails too
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err, -1)), err.shape)
        b = np.broadcast_to(bound, err.shape)
        raise AssertionError(
            f"{what}: {bad.sum()} of {err.size} elements out of bound; worst at {i}: got {got64[i]!r}, "
            f"ref {ref[i]!r}, err {err[i]:.3e} > bound {b[i]:.3e}"
        )


# largest slope of each activation: input errors grow at most by this factor
ACT_LIPSCHITZ = {
    "none": 1,
    "Relu": 1,
    "LeakyRelu": 1,
    "Clip": 1,
    "Sigmoid": 0.25,
    "HardSigmoid": 1,
    "HardSwish": 1.5,
    "Tanh": 1,
    "Elu": 1,
    "SiLU": 1.1,
    "Gelu": 1.13,
}
assert set(ACT_LIPSCHITZ) == set(ACTIVATIONS)


def act_params(kind: str) -> tuple[float, float]:
    """(alpha, beta) test values for an activation (HardSigmoid's alpha also scales its slope)."""
    return {"LeakyRelu": (0.1, 0.0), "Clip": (-0.5, 0.8), "HardSigmoid": (0.2, 0.5), "Elu": (0.7, 0.0)}.get(
        kind, (0.0, 0.0)
    )


def sum_bound(k: int, magnitude, result, act: str = "none", alpha: float = 0.0):
    """Bound for ``act(sum of k float32 terms)``: accumulation ``(k+1) u mag`` times the
    activation's slope, plus a few ulps for evaluating the activation itself."""
    slope = max(ACT_LIPSCHITZ[act], abs(alpha) if act in ("HardSigmoid", "Elu") else 0)
    return 2 * (k + 1) * U32 * np.asarray(magnitude) * slope + 4 * U32 * np.abs(result) + 1e-30
