"""What a converter sees of the graph being built: :class:`ConvertContext`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx
from onnx import helper

from cnnrt.core.ir import Node, Value
from cnnrt.errors import ResourceLimitError, ShapeError, UnsupportedOpError

from .loader import tensor_to_array

# No tensor may need more bytes than this (256 TiB): far beyond any memory limit, far below
# int64 overflow in the size arithmetic of the IR and the planner.
MAX_TENSOR_BYTES = 1 << 48


class GraphUnderConstruction(Protocol):
    """The graph builder as a converter's context uses it."""

    values: dict[str, Value]
    known: dict[str, np.ndarray]

    def add_constant(self, name: str, arr: np.ndarray) -> str: ...

    def add_node(self, node: Node, outs: list[Value]) -> None: ...


class ConvertContext:
    """What a converter sees: one ONNX node, its inputs' Values and known values."""

    def __init__(
        self, builder: GraphUnderConstruction, proto: onnx.NodeProto, name: str, opset: int, folder: Path | None
    ) -> None:
        self._b = builder
        self.proto = proto
        self.name = name
        self.opset = opset
        self.inputs = list(proto.input)
        self.outputs = list(proto.output)
        self.attrs: dict[str, Any] = {}
        for a in proto.attribute:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif a.type == onnx.AttributeProto.TENSOR:
                v = tensor_to_array(v, folder, where=f"{name}.{a.name}")
            self.attrs[a.name] = v
        self._count = 0

    # inputs
    def has_input(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] != ""

    def value(self, i: int) -> Value:
        return self._b.values[self.inputs[i]]

    def shape(self, i: int) -> tuple[int, ...]:
        return self.value(i).shape

    def known(self, i: int) -> np.ndarray | None:
        """The input's value if known at import time (constant or computed from constants)."""
        if not self.has_input(i):
            return None
        return self._b.known.get(self.inputs[i])

    def require_known(self, i: int, what: str) -> np.ndarray:
        v = self.known(i)
        if v is None:
            raise UnsupportedOpError(
                f"node {self.name!r} ({self.proto.op_type}): {what} (input {i}, {self.inputs[i]!r}) "
                "must be computable at load time, but it depends on runtime data"
            )
        return v

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def fail(self, msg: str, cls: type[Exception] = ShapeError) -> Exception:
        return cls(f"node {self.name!r} ({self.proto.op_type}, opset {self.opset}): {msg}")

    def unsupported(self, msg: str) -> Exception:
        return self.fail(msg, UnsupportedOpError)

    def fresh(self, suffix: str) -> str:
        self._count += 1
        return f"{self.name}/{suffix}{self._count}"

    def add_constant(self, base: str, array: np.ndarray) -> str:
        """A new graph constant named after this node (a fresh name); returns the name."""
        return self._b.add_constant(f"{self.name}/{base}", array)

    def define_constant(self, i: int, array: np.ndarray) -> None:
        """Make ONNX output ``i`` a graph constant under its own name (no node is emitted)."""
        if self.outputs[i] in self._b.values:
            raise self.fail(f"output {self.outputs[i]!r} is already defined")
        self._b.add_constant(self.outputs[i], np.asarray(array))

    # outputs
    def emit(
        self,
        op: str,
        inputs: list[str],
        outputs: list[tuple[str, tuple[int, ...], str]],
        attrs: dict[str, Any] | None = None,
        suffix: str = "",
    ) -> Node:
        """Add an IR node; ``outputs`` are (name, shape, dtype)."""
        for name, shape, dtype in outputs:
            if any((not isinstance(d, (int, np.integer))) or d < 0 for d in shape):
                raise self.fail(f"computed an invalid shape {list(shape)} for output {name!r}")
            # exact (Python int) size: int64 products of huge dims would wrap and fool the planner
            nbytes = math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize
            if nbytes > MAX_TENSOR_BYTES:
                raise self.fail(
                    f"output {name!r} of shape {list(shape)} would take {nbytes} bytes (more than 2**48)",
                    ResourceLimitError,
                )
        node = Node(
            op=op,
            inputs=tuple(inputs),
            outputs=tuple(o[0] for o in outputs),
            attrs=dict(attrs or {}),
            name=self.name + suffix,
            origin=(self.name,),
        )
        self._b.add_node(node, [Value(n, tuple(int(d) for d in s), dt) for n, s, dt in outputs])
        return node

    def out(self, i: int, shape: tuple[int, ...], dtype: str = "float32") -> tuple[str, tuple[int, ...], str]:
        return (self.outputs[i], tuple(shape), dtype)
