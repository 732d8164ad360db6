"""Compare every intermediate tensor of a cnnrt run with a reference, node by node.

cnnrt is run step by step and each step's outputs are copied right after the step (the
arena is reused, so later steps overwrite them). A cnnrt value name equals the ONNX tensor
name when its node was imported 1:1; a fused node keeps the name of its final output, so
its tensor is compared with that ONNX tensor and ``node.origin`` lists the ONNX nodes it
stands for. Values cnnrt made up (internal names) have no reference and are skipped.

References: onnxruntime on the model (or another model with the same tensor names) with
every node output exposed as a graph output and graph optimizations off, or cnnrt itself
at ``opt_level=0`` (no passes).

Tolerances, when not given, come from the computation. Let eps = 2**-23 (float32 machine
epsilon), K(n) the accumulation length of node n (see :func:`cnnrt.tools.costs.accumulation_length`:
Cin/group*kh*kw (+bias, +residual) for Conv, K for Gemm/MatMul, the window for pools) and
T(n) = 16 if n evaluates a transcendental function (the op table's ``numerics.transcendental``:
Tanh, Sigmoid, Elu, Softmax, LRN, Resize; or fuses one), else 0. Then, along the graph in execution order:

    rtol(v) = max(rtol(u) for u in the inputs of n) + 8 * eps * (sqrt(K(n)) + T(n))
    atol(v) = 1e-3 * rtol(v)

so the bound grows with the depth of the path that produced v. A node computed in bfloat16
(``precision="bf16"``, passes/precision.py) adds ``BF16_SAFETY * eps_bf16`` (eps_bf16 = 2**-8:
bf16 keeps 8 significand bits) for the rounding of its inputs and weights: each of the K
products is off by up to eps_bf16 relative, independently, so their errors add up like the
terms themselves (as sqrt(K)) and the output's relative error stays near eps_bf16 whatever K;
K still enters through the float32 accumulation term; a bf16 activation (stored bf16) adds
eps_bf16 for its rounding. A float tensor passes when
``max|x - ref| <= atol + rtol * max|ref|``; integer and bool tensors must match exactly;
NaN must sit where the reference has NaN. ``sqrt(K)`` is the typical (not worst-case)
growth of rounding error of a K-term float32 sum whose order differs between
implementations, and 8 is a safety factor; a real bug (a wrong weight, a wrong index)
shows errors orders of magnitude above it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnrt.core.ir import BF16, Graph, Node
from cnnrt.core.layout import unblock
from cnnrt.core.ops import ACTIVATIONS, TRANSCENDENTAL_ACTIVATIONS, op_def
from cnnrt.errors import CnnrtError
from cnnrt.tools.costs import accumulation_length

EPS32 = float(np.finfo(np.float32).eps)
SAFETY = 8.0
TRANSCENDENTAL_TERM = 16.0
ATOL_FRACTION = 1e-3
EPS_BF16 = 2.0**-8
BF16_SAFETY = 4.0  # the max over a tensor of near-independent per-element errors, ~4 sigma
_ACT_NAMES = {v: k for k, v in ACTIVATIONS.items()}


def _is_transcendental(node: Node) -> bool:
    """The op evaluates exp/tanh/pow/interpolation weights, or fuses an activation that does."""
    if op_def(node.op).numerics.transcendental:
        return True
    act = node.attrs.get("activation")
    if isinstance(act, (int, np.integer)):
        act = _ACT_NAMES.get(int(act))
    return act in TRANSCENDENTAL_ACTIVATIONS


def local_rtol(node: Node, graph: Graph) -> float:
    """The rounding error one node adds, relative to its output's largest magnitude (a bf16
    output, ir.BF16, adds its own rounding: EPS_BF16)."""
    k = max(accumulation_length(node, graph), 1)
    reduced = BF16_SAFETY * EPS_BF16 if node.attrs.get("precision") == "bf16" else 0.0
    if any(o and graph.values[o].dtype == BF16 for o in node.outputs):
        reduced += EPS_BF16
    return SAFETY * EPS32 * (math.sqrt(k) + (TRANSCENDENTAL_TERM if _is_transcendental(node) else 0.0)) + reduced


def derive_tolerances(graph: Graph) -> dict[str, float]:
    """rtol per value name, accumulated along the graph (see the module docstring)."""
    rtol: dict[str, float] = {name: 0.0 for name in graph.inputs}
    for node in graph.nodes:
        upstream = max((rtol.get(i, 0.0) for i in node.inputs if i), default=0.0)
        here = upstream + local_rtol(node, graph)
        for o in node.outputs:
            if o:
                rtol[o] = here
                base = graph.values[o].logical  # a blocked twin: compared as its logical value
                if base and base not in rtol:
                    rtol[base] = here
    return rtol


# ---------------------------------------------------------------------------- snapshots


def _executor(sess):
    ex = sess.executor
    if ex is None or not hasattr(ex, "steps"):
        raise CnnrtError("this session's executor exposes no steps (compare runs on the cpu backend)")
    return ex


def snapshot_steps(sess, feeds: dict[str, np.ndarray]) -> tuple[Graph, list[tuple[Node, dict[str, np.ndarray]]]]:
    """Run ``sess`` step by step; returns its graph and, per step, copies of its outputs."""
    sess.run(None, feeds)  # compile for these shapes and make them current
    ex = _executor(sess)
    for dst, name in zip(ex.input_arrays, ex.graph.inputs):
        np.copyto(dst, feeds[name])
    out = []
    for step in ex.steps:
        try:
            step.run(step.ins, step.outs)
        except Exception as e:
            raise CnnrtError(
                f"node {step.node.name!r} ({step.node.op}, from ONNX {list(step.node.origin)}) failed: "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            ) from e
        outs = {o: np.array(a, copy=True) for o, a in zip(step.node.outputs, step.outs) if o}
        for o, a in outs.items():  # a bf16 activation is compared as the float32 it stands for
            if ex.graph.values[o].dtype == BF16:
                outs[o] = a.astype(np.float32)
        for o in list(outs):  # a channel-blocked twin is its logical NCHW value for the comparison
            base = ex.graph.values[o].logical
            if base and outs[o].ndim == 5:  # (cropped to the channels it stands for)
                v = ex.graph.values.get(base)
                outs[base] = unblock(outs[o])[:, : v.shape[1]] if v is not None else unblock(outs[o])
        out.append((step.node, outs))
    return ex.graph, out


def cnnrt_tensors(model, feeds: dict[str, np.ndarray], **session_kw) -> dict[str, np.ndarray]:
    """Every value a cnnrt session computes (e.g. ``opt_level=0`` as a reference)."""
    import cnnrt

    sess = cnnrt.InferenceSession(model, **session_kw)
    _, steps = snapshot_steps(sess, feeds)
    tensors = dict(feeds)
    for _, outs in steps:
        tensors.update(outs)
    return tensors


def ort_tensors(model, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every node output of ``model`` computed by onnxruntime with graph optimizations off.

    Returns (tensor name -> array, tensor name -> producing ONNX node name).
    """
    import onnx
    import onnxruntime as ort

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    present = {o.name for o in m.graph.output}
    producer: dict[str, str] = {}
    for idx, n in enumerate(m.graph.node):
        for o in n.output:
            if o:
                producer[o] = n.name or f"{n.op_type}_{idx}"
                if o not in present:
                    m.graph.output.append(onnx.ValueInfoProto(name=o))
                    present.add(o)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise CnnrtError(f"onnxruntime cannot load the reference model: {e}".splitlines()[0]) from None
    names = [o.name for o in sess.get_outputs()]
    ort_feeds = {i.name: feeds[i.name] for i in sess.get_inputs() if i.name in feeds}
    values = sess.run(names, ort_feeds)
    return {**feeds, **dict(zip(names, values))}, producer


# ---------------------------------------------------------------------------- comparing


@dataclass
class TensorDiff:
    tensor: str
    max_abs: float
    max_rel: float  # max_abs / max|ref|
    rtol: float
    atol: float
    ok: bool
    note: str = ""


@dataclass
class NodeDiff:
    node: str
    op: str
    origin: list[str]
    tensors: list[TensorDiff] = field(default_factory=list)

    @property
    def status(self) -> str:
        if not self.tensors:
            return "no-ref"
        return "ok" if all(t.ok for t in self.tensors) else "DIVERGES"


def diff_tensor(got: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> TensorDiff:
    """max abs / rel error and pass/fail of one tensor (rules in the module docstring)."""
    ref = np.asarray(ref)
    if got.shape != ref.shape:
        return TensorDiff(
            "", math.inf, math.inf, rtol, atol, False, f"shape {list(got.shape)} vs reference {list(ref.shape)}"
        )
    if got.size == 0:
        return TensorDiff("", 0.0, 0.0, rtol, atol, True)
    if got.dtype.kind not in "fc" or ref.dtype.kind not in "fc":
        bad = int(np.count_nonzero(got != ref))
        diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
        return TensorDiff("", diff, diff, 0.0, 0.0, bad == 0, f"{bad} elements differ" if bad else "")
    g = got.astype(np.float64)
    r = ref.astype(np.float64)
    nan_g, nan_r = np.isnan(g), np.isnan(r)
    if (nan_g != nan_r).any():
        n = int((nan_g != nan_r).sum())
        return TensorDiff("", math.inf, math.inf, rtol, atol, False, f"NaN at {n} places where the other has none")
    fin = ~nan_r
    with np.errstate(invalid="ignore"):
        d = np.abs(g[fin] - r[fin])
    inf_mismatch = bool(np.any(np.isinf(r[fin]) & (g[fin] != r[fin])))
    d = np.where(np.isinf(r[fin]) & (g[fin] == r[fin]), 0.0, d)
    max_abs = float(d.max()) if d.size else 0.0
    scale = float(np.max(np.abs(r[fin][np.isfinite(r[fin])]), initial=0.0))
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    ok = (max_abs <= atol + rtol * scale) and not inf_mismatch
    return TensorDiff("", max_abs, max_rel, rtol, atol, ok, "Inf mismatch" if inf_mismatch else "")


def compare_steps(
    graph: Graph,
    steps: list[tuple[Node, dict[str, np.ndarray]]],
    ref: dict[str, np.ndarray],
    rtol: float | None = None,
    atol: float | None = None,
) -> list[NodeDiff]:
    """One NodeDiff per executed step, comparing each output that the reference also has."""
    derived = derive_tolerances(graph)
    rows = []
    for node, outs in steps:
        row = NodeDiff(node.name, node.op, list(node.origin))
        for name, arr in outs.items():
            if name not in ref:
                continue
            rt = derived.get(name, 0.0) if rtol is None else rtol
            at = ATOL_FRACTION * rt if atol is None else atol
            td = diff_tensor(arr, ref[name], rt, at)
            td.tensor = name
            row.tensors.append(td)
        rows.append(row)
    return rows


def first_divergence(rows: list[NodeDiff], producer: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The first step (execution order) with an output over tolerance, as a JSON-ready dict."""
    for row in rows:
        for t in row.tensors:
            if not t.ok:
                return {
                    "node": row.node,
                    "op": row.op,
                    "tensor": t.tensor,
                    "origin": row.origin,
                    "onnx_node": (producer or {}).get(t.tensor),
                    "max_abs": _num(t.max_abs),
                    "max_rel": _num(t.max_rel),
                    "rtol": t.rtol,
                    "atol": t.atol,
                    "note": t.note,
                }
    return None


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def rows_json(rows: list[NodeDiff]) -> list[dict[str, Any]]:
    return [
        {
            "node": r.node,
            "op": r.op,
            "origin": r.origin,
            "status": r.status,
            "tensors": [
                {
                    "tensor": t.tensor,
                    "max_abs": _num(t.max_abs),
                    "max_rel": _num(t.max_rel),
                    "rtol": t.rtol,
                    "atol": t.atol,
                    "ok": t.ok,
                    "note": t.note,
                }
                for t in r.tensors
            ],
        }
        for r in rows
    ]


def run_compare(model, feeds, ref, rtol=None, atol=None, producer=None, **session_kw):
    """Build a cnnrt session with ``session_kw``, snapshot it and compare with ``ref``."""
    import cnnrt

    sess = cnnrt.InferenceSession(model, **session_kw)
    graph, steps = snapshot_steps(sess, feeds)
    rows = compare_steps(graph, steps, ref, rtol, atol)
    return rows, first_divergence(rows, producer)


def bisect_passes(
    model, feeds, ref, rtol=None, atol=None, producer=None, threads=None, log=print, precision="f32"
) -> dict[str, Any]:
    """Name the pass that introduces a divergence.

    First each pass is disabled alone: a pass whose absence removes the divergence is a
    culprit. If none does (two passes needed together, say), passes are enabled one more
    at a time in pipeline order, and the first prefix that diverges names its last pass.
    If cnnrt diverges with every pass disabled, the passes are not the cause.
    """
    from cnnrt.passes.pipeline import pass_names

    names = pass_names()
    trials = []
    if not names:
        return {"culprits": [], "method": None, "trials": [], "conclusion": "no passes are registered"}
    culprits = []
    for p in names:
        _, fd = run_compare(
            model, feeds, ref, rtol, atol, producer, threads=threads, precision=precision, disabled_passes=[p]
        )
        trials.append({"disabled": [p], "first_divergence": fd})
        log(f"bisect     without {p:28s} {'diverges at ' + fd['node'] if fd else 'no divergence'}")
        if fd is None:
            culprits.append(p)
    if culprits:
        return {
            "culprits": culprits,
            "method": "one-at-a-time",
            "trials": trials,
            "conclusion": f"disabling {' or '.join(culprits)} removes the divergence",
        }
    _, fd = run_compare(
        model, feeds, ref, rtol, atol, producer, threads=threads, precision=precision, disabled_passes=names
    )
    trials.append({"disabled": list(names), "first_divergence": fd})
    log(f"bisect     without all passes {'diverges at ' + fd['node'] if fd else 'no divergence'}")
    if fd is not None:
        return {
            "culprits": [],
            "method": "all-disabled",
            "trials": trials,
            "conclusion": "cnnrt diverges even with every pass disabled: not a pass (import or kernels)",
        }
    for i in range(len(names)):
        disabled = names[i + 1 :]
        _, fd = run_compare(
            model, feeds, ref, rtol, atol, producer, threads=threads, precision=precision, disabled_passes=disabled
        )
        trials.append({"disabled": list(disabled), "first_divergence": fd})
        log(f"bisect     with passes up to {names[i]:24s} {'diverges at ' + fd['node'] if fd else 'no divergence'}")
        if fd is not None:
            return {
                "culprits": [names[i]],
                "method": "prefix",
                "trials": trials,
                "conclusion": f"enabling {names[i]} after {names[:i]} introduces the divergence",
            }
    return {
        "culprits": [],
        "method": "prefix",
        "trials": trials,
        "conclusion": "no subset tried reproduces the divergence (opt_level differences beyond passes?)",
    }
