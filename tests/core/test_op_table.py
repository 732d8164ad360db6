"""Completeness of the op table (cnnrt.core.ops.OPS): every op has what the project needs.

For every op: the required definition fields, a CPU kernel (or a declared reason it needs
none), a CUDA kernel (or a declared reason), an entry in the IR interpreter the pass tests use
(tests/passes/ir_reference.py), shape inference, and for an op imported from ONNX a converter
for each ONNX op type it names; conversely every op a kernel registers and every ONNX op type a
converter handles is in the table. ``table_problems`` takes the table as an argument so the last tests can show
it reports a broken entry, on a copy of the table.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from ir_reference import INTERPRET

from cnnrt.core import op_shapes
from cnnrt.core.ir import Graph, Node, Value
from cnnrt.core.op_costs import NO_SUMS, Numerics
from cnnrt.core.ops import ACTIVATIONS, IMPORTED_AS_CONSTANTS, OPS, REQUIRED, OpDef, op_attrs
from cnnrt.errors import GraphError
from cnnrt.frontends.registry import onnx_op_types
from cnnrt.kernels import get_builder, supported

CATEGORIES = {"activation", "binary", "variadic", "conv", "pool", "norm", "linear", "tensor", "blocked"}
BLOCKED_KINDS = {"", "elementwise", "channel_concat", "native"}


def _port_problems(d: OpDef) -> list[str]:
    out = []
    if not isinstance(d.inputs, tuple) or not isinstance(d.outputs, tuple) or not d.outputs:
        out.append("input/output names (tuples, at least one output)")
    for names in (d.inputs, d.outputs):
        if any(n.endswith("*") for n in names[:-1]):
            out.append(f"ports {names}: only the last may be variadic ('*')")
    return out


def table_problems(ops, interpret, builder=get_builder, converted=None) -> list[str]:
    """One line per missing piece, naming the op and what it lacks."""
    converted = set(onnx_op_types() if converted is None else converted)
    problems = []
    for op, d in ops.items():
        lacks = _port_problems(d)
        if not callable(d.infer):
            lacks.append("shape inference (infer)")
        if not isinstance(d.numerics, Numerics):
            lacks.append("numerics (MACs, accumulation length, transcendental: cnnrt.core.op_costs.Numerics)")
        if d.category not in CATEGORIES:
            lacks.append(f"a category (one of {sorted(CATEGORIES)}), has {d.category!r}")
        if bool(d.onnx) == bool(d.made_by):
            lacks.append("exactly one origin: onnx=(ONNX op types) or made_by=<pass>")
        if builder(op, "cpu") is None and not d.no_cpu_kernel:
            lacks.append("a CPU kernel (kernels.get_builder(op, 'cpu')) or a no_cpu_kernel reason")
        has_cuda = builder(op, "cuda") is not None
        if not has_cuda and not d.no_cuda_kernel:
            lacks.append("a CUDA kernel (kernels.get_builder(op, 'cuda')) or a no_cuda_kernel reason")
        if has_cuda and d.no_cuda_kernel:
            lacks.append(f"an up-to-date no_cuda_kernel: a CUDA kernel exists, yet it says {d.no_cuda_kernel!r}")
        for onnx_type in d.onnx:
            if onnx_type not in converted:
                lacks.append(f"a converter for ONNX {onnx_type} (frontends/ops_*.py, @onnx_op)")
        if op not in interpret:
            lacks.append("an IR-interpreter entry (tests/passes/ir_reference.py INTERPRET)")
        if d.blocked not in BLOCKED_KINDS:
            lacks.append(f"a known blocked kind ({sorted(BLOCKED_KINDS)}), has {d.blocked!r}")
        if d.blocked_form and (d.blocked_form not in ops or ops[d.blocked_form].blocked != "native"):
            lacks.append(f"a blocked form that is a blocked op: {d.blocked_form!r}")
        if d.epilogue and any(k not in d.attrs for k in ("activation", "act_alpha", "act_beta")):
            lacks.append("epilogue attributes (activation, act_alpha, act_beta) with defaults")
        missing = [k for k in d.fused_params if k not in d.attrs]
        if missing:
            lacks.append(f"defaults for its fused parameters {missing}")
        problems += [f"{op}: lacks {what}" for what in lacks]
    for backend in ("cpu", "cuda"):
        problems += [f"{op}: has a {backend} kernel but no table entry" for op in supported(backend) if op not in ops]
    problems += [f"{op}: has an IR-interpreter entry but no table entry" for op in interpret if op not in ops]
    named = {t for d in ops.values() for t in d.onnx} | set(IMPORTED_AS_CONSTANTS)
    problems += [f"ONNX {t}: has a converter but no table op names it (onnx=...)" for t in sorted(converted - named)]
    return problems


def test_every_op_is_complete():
    assert table_problems(OPS, INTERPRET) == []


def test_activation_codes_are_the_kernel_abi():
    """The integers are compiled into the kernels: reordering them would silently change activations."""
    names = "none Relu LeakyRelu Clip Sigmoid HardSigmoid HardSwish Tanh Elu SiLU Gelu".split()
    assert list(ACTIVATIONS.items()) == list(zip(names, range(len(names))))


def _fake(**changes) -> OpDef:
    base = OpDef(("X",), ("Y",), op_shapes.same, "activation", onnx=("Fake",), numerics=NO_SUMS)
    return dataclasses.replace(base, **changes)


def test_an_op_without_kernels_or_interpreter_entry_is_reported():
    ops = {**OPS, "FakeOp": _fake()}
    problems = [p for p in table_problems(ops, INTERPRET) if p.startswith("FakeOp:")]
    assert any("CPU kernel" in p for p in problems)
    assert any("CUDA kernel" in p for p in problems)
    assert any("IR-interpreter entry" in p for p in problems)
    assert any("a converter for ONNX Fake" in p for p in problems)
    assert OPS.keys() == {k for k in ops if k != "FakeOp"}  # the real table is untouched


def test_a_declared_reason_exempts_and_a_stale_one_is_reported():
    ops = {"FakeOp": _fake(no_cpu_kernel="x", no_cuda_kernel="y"), "Relu": _fake(no_cuda_kernel="stale")}
    problems = table_problems(ops, {"FakeOp": None, "Relu": None}, converted={"Fake", "Conv"})
    assert not any(p.startswith("FakeOp:") for p in problems)
    assert any(p.startswith("Relu: lacks an up-to-date no_cuda_kernel") for p in problems)
    assert any(p == "Conv: has a cpu kernel but no table entry" for p in problems)
    assert "ONNX Conv: has a converter but no table op names it (onnx=...)" in problems


def test_missing_fields_are_named():
    ops = {
        "FakeOp": _fake(
            infer=None, category="misc", onnx=(), blocked_form="Nowhere", fused_params=("alpha",), numerics=None
        )
    }
    problems = "\n".join(table_problems(ops, {}, builder=lambda op, backend: None))
    for what in (
        "shape inference",
        "numerics",
        "a category",
        "exactly one origin",
        "a blocked form",
        "defaults for its fused parameters",
    ):
        assert f"FakeOp: lacks {what}" in problems


def test_attribute_defaults_fill_and_required_ones_are_demanded():
    relu = Node("LeakyRelu", ("x",), ("y",), {}, "lr")
    assert op_attrs(relu)["alpha"] == OPS["LeakyRelu"].attrs["alpha"]
    assert OPS["Clip"].attrs["min"] is REQUIRED
    with pytest.raises(GraphError, match="'c'.*Clip.*min"):
        op_attrs(Node("Clip", ("x",), ("y",), {"max": 1.0}, "c"))


def _one_node(node: Node, shapes: dict[str, tuple]) -> Graph:
    values = {k: Value(k, s) for k, s in shapes.items()}
    return Graph([node], values, {"w": np.zeros(shapes["w"], np.float32)} if "w" in shapes else {}, ["x"], ["y"])


def test_verify_checks_shapes_against_inference():
    conv = Node("Conv", ("x", "w"), ("y",), {"pads": (1, 1, 1, 1)}, "conv")
    _one_node(conv, {"x": (1, 3, 8, 8), "w": (4, 3, 3, 3), "y": (1, 4, 8, 8)}).verify()
    bad = _one_node(conv, {"x": (1, 3, 8, 8), "w": (4, 3, 3, 3), "y": (1, 4, 6, 6)})
    with pytest.raises(GraphError, match=r"'conv' \(Conv\) output 'y' has shape \[1, 4, 6, 6\].*\[1, 4, 8, 8\]"):
        bad.verify()


def test_verify_rejects_unknown_ops_and_wrong_arity():
    with pytest.raises(GraphError, match="'m' has op 'Mystery'"):
        _one_node(Node("Mystery", ("x",), ("y",), {}, "m"), {"x": (2,), "y": (2,)}).verify()
    with pytest.raises(GraphError, match=r"'a' \(Add\) has 1 inputs, expected A, B"):
        _one_node(Node("Add", ("x",), ("y",), {}, "a"), {"x": (2,), "y": (2,)}).verify()


def test_verify_allows_blocked_inputs_only_where_the_table_does():
    shapes = {"x": (1, 1, 2, 2, 16), "y": (1, 1, 2, 2, 16)}

    def graph(op, **attrs):
        values = {k: Value(k, s, layout="nchw16c", logical=k[0] + "_plain") for k, s in shapes.items()}
        return Graph([Node(op, ("x",), ("y",), attrs, "n")], values, {}, ["x"], ["y"])

    graph("Relu").verify()
    with pytest.raises(GraphError, match=r"'n' \(LRN\) reads 'x' in layout nchw16c"):
        graph("LRN", size=3).verify()
