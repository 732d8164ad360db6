"""Reading ONNX files: the ModelProto from a path, bytes or a proto (with checks that a
corrupt file fails as a ModelLoadError), tensors decoded to numpy (external data read only
from inside the model's folder), and graph inputs as :class:`InputSpec`.
"""

from __future__ import annotations

import mmap
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from cnnrt.errors import ModelLoadError, ResourceLimitError, UnsupportedOpError

from .specs import InputSpec

# protobuf cannot encode a message of 2 GiB or more (larger weights go in external data files)
MAX_PROTOBUF_BYTES = 2**31 - 1

ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT16: "int16",
    onnx.TensorProto.UINT16: "uint16",
    onnx.TensorProto.UINT32: "uint32",
    onnx.TensorProto.UINT64: "uint64",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.BOOL: "bool",
}
# for error messages
SUPPORTED_DTYPES = ", ".join(sorted(set(ONNX_DTYPES.values())))


def load_model(model: str | os.PathLike | bytes | onnx.ModelProto) -> tuple[onnx.ModelProto, Path | None]:
    """Read a model from a path, bytes or a ModelProto; returns it and its folder (or None)."""
    if isinstance(model, onnx.ModelProto):
        _check_proto(model)
        return model, None
    if isinstance(model, (bytes, bytearray, memoryview)):
        _check_size(len(model), "model bytes")
        data, folder = bytes(model), None
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        try:
            # O_NONBLOCK + a regular-file check: a FIFO or /dev/zero must not hang the load.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise ModelLoadError(f"model path {str(path)!r} is not a regular file")
                _check_size(st.st_size, f"model file {str(path)!r}")  # before reading a byte of it
                data = f.read()
            folder = path.resolve().parent
        except MemoryError:
            raise ResourceLimitError(f"out of memory reading model file {str(path)!r}") from None
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot read model file {str(path)!r}: {getattr(e, 'strerror', None) or e}") from None
    else:
        raise ModelLoadError(f"model must be a path, bytes or onnx.ModelProto, not {type(model).__name__}")
    if not data:
        raise ModelLoadError("model is empty (0 bytes)")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except MemoryError:
        raise ResourceLimitError(f"out of memory parsing the model's protobuf ({len(data)} bytes)") from None
    except Exception as e:  # protobuf raises DecodeError, RuntimeWarning-ish errors
        raise ModelLoadError(f"not a valid ONNX protobuf ({len(data)} bytes): {e}") from None
    _check_proto(proto)
    return proto, folder


def model_bytes(path: str | os.PathLike) -> bytes:
    """The model file at ``path`` as one self-contained protobuf, its external data read in (with
    the same checks as a load), for consumers that ship a model as bytes."""
    proto, folder = load_model(path)
    for t in proto.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            t.raw_data = bytes(_external_bytes(t, folder))
            t.data_location = onnx.TensorProto.DEFAULT
            del t.external_data[:]
    _check_size(proto.ByteSize(), f"model {str(path)!r} with its external data")
    return proto.SerializeToString()


def _check_size(nbytes: int, what: str) -> None:
    if nbytes > MAX_PROTOBUF_BYTES:
        raise ModelLoadError(
            f"{what} is {nbytes} bytes: not a valid ONNX protobuf, which cannot reach 2 GiB "
            "(larger models keep their weights in external data files)"
        )


def _check_proto(proto: onnx.ModelProto) -> None:
    if not proto.HasField("graph") or not proto.graph.node and not proto.graph.output:
        raise ModelLoadError("the file parsed but holds no ONNX graph (truncated or not an ONNX model?)")
    where = _first_non_utf8(proto, "model")
    if where is not None:
        raise ModelLoadError(f"{where} is not valid UTF-8 text (corrupt or not an ONNX model)")


def _first_non_utf8(msg: Any, path: str) -> str | None:
    """Path of the first string field that protobuf could not decode (it hands back bytes).

    Bytes fields are never read: ``ListFields`` would copy every tensor's ``raw_data`` into a
    Python object (hundreds of MB for a VGG) only to skip it."""
    for fd in msg.DESCRIPTOR.fields:
        if fd.type == fd.TYPE_BYTES:
            continue
        repeated = fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED
        if repeated:
            items = getattr(msg, fd.name)
            if not items:
                continue
        elif fd.type == fd.TYPE_MESSAGE or fd.type == fd.TYPE_STRING:
            if not msg.HasField(fd.name):
                continue
            items = [getattr(msg, fd.name)]
        else:
            continue
        if fd.type == fd.TYPE_MESSAGE:
            for k, item in enumerate(items):
                label = getattr(item, "name", "") if isinstance(getattr(item, "name", None), str) else ""
                where = _first_non_utf8(item, f"{path}.{fd.name}[{label or k}]" if repeated else f"{path}.{fd.name}")
                if where is not None:
                    return where
        elif fd.type == fd.TYPE_STRING and any(isinstance(v, bytes) for v in items):
            return f"{path}.{fd.name}"
    return None


def _external_bytes(tensor: onnx.TensorProto, folder: Path | None) -> memoryview | bytes:
    """The tensor's bytes in its external data file, mapped read-only (no copy: the page cache
    serves them when the weights are first touched). The mapping lives as long as the arrays, so
    a data file is replaced by renaming a new one over it, never truncated in place while a
    session uses it (reading past a truncated end of a mapping kills the process)."""
    info = {e.key: e.value for e in tensor.external_data}
    loc = info.get("location")
    if not loc:
        raise ModelLoadError(f"initializer {tensor.name!r} has external data without a location")
    if folder is None:
        raise ModelLoadError(
            f"initializer {tensor.name!r} stores its data in external file {loc!r}; "
            "load the model from its path so the file can be found"
        )
    if os.path.isabs(loc) or Path(loc).drive:
        raise ModelLoadError(f"initializer {tensor.name!r}: external data location {loc!r} is absolute")
    if "\0" in loc:
        raise ModelLoadError(f"initializer {tensor.name!r}: external data location {loc!r} contains a NUL byte")
    try:
        target = (folder / loc).resolve()
    except (OSError, RuntimeError, ValueError) as e:  # symlink loops, over-long names
        raise ModelLoadError(
            f"initializer {tensor.name!r}: external data location {loc!r} cannot be resolved: {e}"
        ) from None
    if not target.is_relative_to(folder):
        raise ModelLoadError(f"initializer {tensor.name!r}: external data location {loc!r} escapes the model's folder")
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise ModelLoadError(f"initializer {tensor.name!r}: bad external data offset/length") from None
    try:
        # O_NOFOLLOW + fstat on the opened descriptor: the file checked is the file read (no
        # symlink swapped in after resolve()), and O_NONBLOCK keeps a FIFO from hanging open().
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ModelLoadError(
                    f"initializer {tensor.name!r}: external data location {loc!r} is not a regular file"
                )
            size = st.st_size
            if offset < 0 or offset > size or (length is not None and (length < 0 or offset + length > size)):
                raise ModelLoadError(
                    f"initializer {tensor.name!r}: external data range offset={offset} length={length} "
                    f"exceeds {loc!r} ({size} bytes)"
                )
            n = length if length is not None else size - offset
            if n == 0:
                return b""
            # the whole file is mapped (an mmap offset must be page-aligned); the slice keeps it open
            return memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))[offset : offset + n]
    except MemoryError:
        raise ResourceLimitError(f"initializer {tensor.name!r}: out of memory reading external data {loc!r}") from None
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or e
        raise ModelLoadError(f"initializer {tensor.name!r}: cannot read external data {loc!r}: {why}") from None


def dtype_name(code: int) -> str:
    """The ONNX name of an element type code (also for codes this onnx package does not know)."""
    if code in onnx.TensorProto.DataType.values():
        return onnx.TensorProto.DataType.Name(code)
    return f"<unknown element type {code}>"


def tensor_to_array(tensor: onnx.TensorProto, folder: Path | None = None, where: str = "") -> np.ndarray:
    """Decode a TensorProto (external data read safely from ``folder``)."""
    if tensor.data_type not in ONNX_DTYPES:
        raise UnsupportedOpError(
            f"tensor {tensor.name or where!r} has dtype {dtype_name(tensor.data_type)}; supported: " + SUPPORTED_DTYPES
        )
    raw: memoryview | bytes | None = None
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        raw = _external_bytes(tensor, folder)
    elif tensor.HasField("raw_data"):
        raw = tensor.raw_data
    try:
        arr = numpy_helper.to_array(tensor) if raw is None else _from_raw(tensor, raw, where)
    except MemoryError:
        shape = list(tensor.dims)
        raise ResourceLimitError(f"out of memory decoding tensor {tensor.name or where!r} of shape {shape}") from None
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"tensor {tensor.name or where!r} cannot be decoded: {e}") from None
    return np.asarray(arr, order="C")  # not ascontiguousarray: it turns 0-d arrays into shape (1,)


def _from_raw(tensor: onnx.TensorProto, raw: memoryview | bytes, where: str) -> np.ndarray:
    """A read-only view of little-endian ``raw_data`` (or mapped external data) in the tensor's
    shape: no copy, so a VGG's half gigabyte of weights is not duplicated while it loads."""
    dtype = np.dtype(ONNX_DTYPES[tensor.data_type]).newbyteorder("<")
    shape = tuple(int(d) for d in tensor.dims)
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) != count * dtype.itemsize:
        raise ModelLoadError(
            f"tensor {tensor.name or where!r} cannot be decoded: shape {list(shape)} of {dtype.name} "
            f"needs {count * dtype.itemsize} bytes, its data has {len(raw)}"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
    return arr if dtype.isnative else arr.astype(dtype.newbyteorder("="))


def input_spec(vi: onnx.ValueInfoProto) -> InputSpec:
    """A graph input's name, dims and dtype; it must be a tensor of a supported dtype."""
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise UnsupportedOpError(f"graph input {vi.name!r} is not a tensor (sequences/maps are not supported)")
    dtype = ONNX_DTYPES.get(tt.elem_type)
    if dtype is None:
        raise UnsupportedOpError(
            f"graph input {vi.name!r} has element type {dtype_name(tt.elem_type)}; supported: " + SUPPORTED_DTYPES
        )
    dims: list[int | str | None] = []
    if tt.HasField("shape"):
        for d in tt.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param"):
                dims.append(d.dim_param)
            else:
                dims.append(None)
    return InputSpec(vi.name, tuple(dims), dtype)
