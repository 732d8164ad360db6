"""The schema of the op table (cnnrt.core.ops): :class:`OpDef`, attribute defaults shared by
several ops, and constructors for the families of ops that differ only in name."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cnnrt.core import const_eval as ev
from cnnrt.core import op_costs as cost
from cnnrt.core import op_shapes as shp
from cnnrt.errors import GraphError


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
EPILOGUE = {"activation": "none", "act_alpha": 0.0, "act_beta": 0.0}
CONV_ATTRS = {
    "strides": (1, 1),
    "pads": (0, 0, 0, 0),
    "dilations": (1, 1),
    "group": 1,
    "kernel": None,  # (kh, kw); None: read from W's shape
    "algorithm": None,  # written by passes/select_algorithm.py; set before it: an override
    **EPILOGUE,
}
POOL_ATTRS = {"kernel": REQUIRED, "strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1)}
MAX_POOL_ATTRS = {**POOL_ATTRS, "storage_order": 0}
AVERAGE_POOL_ATTRS = {**POOL_ATTRS, "count_include_pad": False}

NO_CUDA_BLOCKED = "channel-blocked ops are made by block_layout, which runs for CPU sessions only"


@dataclass(frozen=True)
class OpDef:
    """What the project knows about one IR op (how each field is used: cnnrt.core.ops' docstring)."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    infer: Callable[..., list]
    category: str  # activation, binary, variadic, conv, pool, norm, linear, tensor, blocked
    doc: str = ""
    attrs: Mapping[str, Any] = field(default_factory=dict)
    in_place: bool = False  # the kernel may write its output over its first input
    broadcasts: bool = False  # numpy broadcasting of the inputs (in place only when none broadcasts)
    view: bool = False  # the output is the input's bytes under a new shape
    # its CPU kernel writes an output whose images lie apart in a bigger buffer (a channel range
    # of a Concat's output at batch > 1): concat_in_place may place it there
    strided_output: bool = False
    # its CPU kernel reads tensor inputs whose images lie apart in a bigger buffer (such a
    # channel range read by another op as well: DenseNet's growing Concat, read by each
    # layer's BN + ReLU)
    strided_input: bool = False
    blocked: str = ""  # "elementwise" | "channel_concat": runs on blocked values; "native": is blocked
    blocked_form: str = ""  # the op it becomes when its input is blocked
    epilogue: bool = False  # carries a fused activation (activation, act_alpha, act_beta)
    fused_params: tuple[str, ...] = ()  # attrs that become (act_alpha, act_beta) when fused
    evaluate: Callable | None = None  # numpy evaluation on known values (cnnrt.core.const_eval)
    onnx: tuple[str, ...] = ()  # ONNX op types that import as this op
    made_by: str = ""  # the pass that makes it (ops never imported)
    no_cpu_kernel: str = ""  # why the CPU backend needs no kernel ("" : one must exist)
    no_cuda_kernel: str = ""  # why the CUDA backend has no kernel ("" : one must exist)
    output_dtype: str = ""  # the dtype of every output, when the op fixes it (bool, int64); Graph.verify checks
    numerics: cost.Numerics = field(kw_only=True)  # MACs, accumulation, transcendental: no default

    def filled_attrs(self, node) -> dict[str, Any]:
        """``node``'s attributes over these defaults; GraphError for a missing required one."""
        a = {**self.attrs, **node.attrs}
        missing = [k for k, v in a.items() if v is REQUIRED]
        if missing:
            raise GraphError(f"node {node.name!r} ({node.op}) lacks required attribute(s) {missing}")
        return a

    def check_ports(self, node) -> None:
        """GraphError unless ``node`` has as many inputs and outputs as these names allow
        (``""`` only in optional slots, trailing ones ignored)."""
        for what, given, names in (("inputs", node.inputs, self.inputs), ("outputs", node.outputs, self.outputs)):
            least = sum(1 for n in names if not n.endswith("?"))
            most = math.inf if any(n.endswith("*") for n in names) else len(names)
            used = len(given) - len(tuple(itertools.takewhile(lambda n: not n, reversed(given))))
            if not least <= used <= most:
                expected = ", ".join(names) or "none"
                raise GraphError(f"node {node.name!r} ({node.op}) has {used} {what}, expected {expected}")
            for k in range(used):
                name = names[min(k, len(names) - 1)]
                if not given[k] and not name.endswith("?"):
                    raise GraphError(f"node {node.name!r} ({node.op}) omits its required {what[:-1]} {name!r}")


def activation_op(onnx: str, params=(), attrs=None, numerics=cost.NO_SUMS, evaluate=None) -> OpDef:
    return OpDef(
        ("X",),
        ("Y",),
        shp.same,
        "activation",
        attrs=attrs or {},
        in_place=True,
        numerics=numerics,
        blocked="elementwise",
        fused_params=params,
        evaluate=evaluate,
        onnx=(onnx,),
    )


def binary_op(onnx: str, evaluate) -> OpDef:
    return OpDef(
        ("A", "B"),
        ("C",),
        shp.broadcast,
        "binary",
        in_place=True,
        broadcasts=True,
        blocked="elementwise",
        evaluate=evaluate,
        onnx=(onnx,),
        numerics=cost.NO_SUMS,
    )


def variadic_op(onnx: str, evaluate) -> OpDef:
    return OpDef(
        ("X*",),
        ("Y",),
        shp.broadcast,
        "variadic",
        broadcasts=True,
        numerics=cost.VARIADIC,
        blocked="elementwise",
        evaluate=evaluate,
        onnx=(onnx,),
    )


def data_op(infer, doc: str, attrs, evaluate, onnx: tuple[str, ...], inputs=("X",), outputs=("Y",)) -> OpDef:
    """An op that moves or describes data (no arithmetic), evaluable on constants."""
    return OpDef(inputs, outputs, infer, "tensor", doc, attrs, evaluate=evaluate, onnx=onnx, numerics=cost.NO_SUMS)


def view_op(onnx: tuple[str, ...], doc: str, outputs=("Y",), attrs=None, infer=shp.same) -> OpDef:
    return OpDef(
        ("X",),
        outputs,
        infer,
        "tensor",
        doc,
        attrs or {},
        view=True,
        evaluate=ev.view,
        onnx=onnx,
        numerics=cost.NO_SUMS,
    )


def blocked_channel_copy(inputs, outputs, infer, doc: str, attrs=None) -> OpDef:
    """A channel Split, Concat or permutation that block_layout keeps blocked (``sizes`` in
    logical channels)."""
    return OpDef(
        inputs,
        outputs,
        infer,
        "blocked",
        doc,
        attrs or {"axis": REQUIRED, "sizes": REQUIRED},
        blocked="native",
        made_by="block_layout",
        no_cuda_kernel=NO_CUDA_BLOCKED,
        numerics=cost.NO_SUMS,
    )


def blocked_op(plain: OpDef, infer, doc: str) -> OpDef:
    """The channel-blocked form of ``plain``: same attributes and costs, CPU only."""
    return OpDef(
        plain.inputs,
        plain.outputs[:1],
        infer,
        "blocked",
        doc,
        plain.attrs,
        numerics=plain.numerics,
        blocked="native",
        epilogue=plain.epilogue,
        made_by="block_layout",
        no_cuda_kernel=NO_CUDA_BLOCKED,
    )
