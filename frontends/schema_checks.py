"""Checks of ONNX nodes against the ONNX operator schemas, before any converter runs.

The model's opset must be one cnnrt converts; every node must match its schema's input and
output counts, attribute names and types (so converters may trust ``int(ctx.attr(...))`` and
``ctx.inputs[i]``); once input dtypes are known, they must fit the schema's type constraints.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import onnx

from cnnrt.core.ir import Value
from cnnrt.errors import CnnrtError, ModelLoadError, ShapeError, UnsupportedOpError

# Converters handle the pre-7 attribute forms too; opset 6 is what the ONNX backend suite's
# pytorch-converted models use, so it is tested.
MIN_OPSET = 6
MAX_OPSET = onnx.defs.onnx_opset_version()


def opset_of(proto: onnx.ModelProto) -> int:
    opset = None
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = imp.version
    if opset is None:
        opset = 1 if not proto.opset_import else None
    if opset is None:
        raise UnsupportedOpError("the model imports no default-domain (ai.onnx) opset")
    if opset > MAX_OPSET:
        raise UnsupportedOpError(
            f"model opset {opset} is newer than the newest this onnx package defines ({MAX_OPSET})"
        )
    if opset < MIN_OPSET:
        raise UnsupportedOpError(f"model opset {opset} is older than the oldest supported ({MIN_OPSET})")
    return opset


@functools.cache
def schema_for(op_type: str, opset: int) -> onnx.defs.OpSchema | None:
    try:
        return onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return None


_SINGLE = onnx.defs.OpSchema.FormalParameterOption.Single
# INT attributes the ONNX spec defines as 0/1 flags
_FLAG_ATTRS = frozenset(
    (
        "ceil_mode",
        "count_include_pad",
        "storage_order",
        "transA",
        "transB",
        "keepdims",
        "training_mode",
        "noop_with_empty_axes",
        "allowzero",
        "spatial",
        "is_test",
    )
)
_VARIADIC = onnx.defs.OpSchema.FormalParameterOption.Variadic


def check_signatures(graph: onnx.GraphProto, opset: int) -> None:
    """Every node against its ONNX schema; raises one ModelLoadError listing all problems."""
    bad = []
    for i, n in enumerate(graph.node):
        schema = schema_for(n.op_type, opset)
        if schema is None:
            bad.append(f"{n.name or f'#{i}'} ({n.op_type}): no such op in opset {opset}")
            continue
        bad.extend(
            f"{n.name or f'#{i}'} ({n.op_type}-{schema.since_version}): {why}" for why in _signature_problems(n, schema)
        )
    if bad:
        raise ModelLoadError(f"{len(bad)} node(s) do not match their ONNX schema: " + "; ".join(bad))


def _signature_problems(n: onnx.NodeProto, schema: onnx.defs.OpSchema) -> list[str]:
    out = []
    for what, actual, formals, lo, hi in (
        ("input", list(n.input), schema.inputs, schema.min_input, schema.max_input),
        ("output", list(n.output), schema.outputs, schema.min_output, schema.max_output),
    ):
        if not lo <= len(actual) <= hi:
            want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi < 2**31 - 1 else f"at least {lo}"
            out.append(f"has {len(actual)} {what}s, the schema wants {want}")
            continue
        for k, name in enumerate(actual):
            formal = formals[min(k, len(formals) - 1)]
            if not name and (formal.option == _SINGLE or (formal.option == _VARIADIC and k < lo)):
                out.append(f"required {what} {k} ({formal.name}) is empty")
    seen = set()
    for a in n.attribute:
        spec = schema.attributes.get(a.name)
        if a.name in seen:
            out.append(f"attribute {a.name!r} is given twice")
        seen.add(a.name)
        if spec is None:
            out.append(f"unknown attribute {a.name!r} (the schema has {sorted(schema.attributes) or 'none'})")
        elif a.ref_attr_name:
            continue
        elif a.name in _FLAG_ATTRS and int(a.type) == int(spec.type) and a.i not in (0, 1):
            # onnxruntime reads some of these as "== 1", we as truthy: refuse, do not guess
            out.append(f"attribute {a.name!r} must be 0 or 1, got {a.i}")
        elif int(a.type) != int(spec.type):
            got = (
                onnx.AttributeProto.AttributeType.Name(a.type)
                if a.type in onnx.AttributeProto.AttributeType.values()
                else a.type
            )
            out.append(f"attribute {a.name!r} must be {spec.type.name}, got {got}")
    for name, spec in schema.attributes.items():
        if spec.required and name not in seen:
            out.append(f"required attribute {name!r} is missing")
    return out


def _onnx_type_str(dtype: str) -> str:
    return "tensor(" + {"float32": "float", "float64": "double"}.get(dtype, dtype) + ")"


def check_input_types(n: onnx.NodeProto, name: str, opset: int, values: Mapping[str, Value]) -> None:
    """Raise for input dtypes the schema does not allow: ShapeError if any problem is a
    mismatch between inputs that must share a dtype, else UnsupportedOpError; all listed."""
    problems = _type_problems(n, schema_for(n.op_type, opset), values)
    if problems:
        cls = ShapeError if any(c is ShapeError for c, _ in problems) else UnsupportedOpError
        raise cls(f"node {name!r} ({n.op_type}, opset {opset}): " + "; ".join(w for _, w in problems))


def _type_problems(
    n: onnx.NodeProto, schema: onnx.defs.OpSchema | None, values: Mapping[str, Value]
) -> list[tuple[type[CnnrtError], str]]:
    """Input dtypes against the schema's type constraints (one dtype per type parameter):
    (UnsupportedOpError, why) for a dtype the op does not take, (ShapeError, why) for
    inputs that must share a dtype and do not."""
    if schema is None or not schema.inputs:
        return []
    constraints = {t.type_param_str: t.allowed_type_strs for t in schema.type_constraints}
    bound: dict[str, tuple[str, str]] = {}
    out = []
    for k, name in enumerate(n.input):
        if not name or name not in values:
            continue
        formal = schema.inputs[min(k, len(schema.inputs) - 1)]
        got = _onnx_type_str(values[name].dtype)
        allowed = constraints.get(formal.type_str, [formal.type_str])
        if got not in allowed:
            out.append(
                (
                    UnsupportedOpError,
                    f"input {k} ({formal.name}) {name!r} has dtype {got}; the op takes {', '.join(allowed)}",
                )
            )
        elif formal.type_str in constraints and formal.is_homogeneous:
            first = bound.setdefault(formal.type_str, (name, got))
            if first[1] != got:
                out.append(
                    (
                        ShapeError,
                        f"inputs {first[0]!r} ({first[1]}) and {name!r} ({got}) must have the same dtype ({formal.type_str})",
                    )
                )
    return out
