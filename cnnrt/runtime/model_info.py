"""What a session reports about its model, in onnxruntime's types: NodeArg and ModelMetadata."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # onnx is loaded with the model, not with `import cnnrt`
    import onnx

_ORT_TYPES = {
    "float32": "tensor(float)",
    "float64": "tensor(double)",
    "float16": "tensor(float16)",
    "int64": "tensor(int64)",
    "int32": "tensor(int32)",
    "int16": "tensor(int16)",
    "uint16": "tensor(uint16)",
    "uint32": "tensor(uint32)",
    "uint64": "tensor(uint64)",
    "int8": "tensor(int8)",
    "uint8": "tensor(uint8)",
    "bool": "tensor(bool)",
}


@dataclass(frozen=True)
class NodeArg:
    """Like onnxruntime's NodeArg: name, shape (ints or symbolic names), type string."""

    name: str
    shape: list[int | str | None]
    type: str


def node_args(specs: Iterable) -> list[NodeArg]:
    """NodeArgs of input or output specs (name, shape, numpy dtype name)."""
    return [NodeArg(s.name, list(s.shape), _ORT_TYPES[s.dtype]) for s in specs]


@dataclass(frozen=True)
class ModelMetadata:
    """Like onnxruntime's ModelMetadata (``version`` is 2**63-1 when the model sets none, as there)."""

    producer_name: str
    graph_name: str
    domain: str
    description: str
    graph_description: str
    version: int
    custom_metadata_map: dict[str, str]


def model_metadata(p: onnx.ModelProto) -> ModelMetadata:
    return ModelMetadata(
        p.producer_name,
        p.graph.name,
        p.domain,
        p.doc_string,
        p.graph.doc_string,
        p.model_version if p.HasField("model_version") else 2**63 - 1,
        {e.key: e.value for e in p.metadata_props},
    )
