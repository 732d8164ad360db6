"""Checks of what a caller hands a session (input shapes for ``prepare``, feeds for ``run``) against the model's
declared inputs; each error names the input and what was expected."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cnnrt.errors import InputError


def _is_device_array(x: Any) -> bool:
    from cnnrt.kernels.cuda.device import is_device_array

    return is_device_array(x)


def _check_fixed_dims(name: str, declared: Sequence, dims: Sequence[int]) -> None:
    """``dims`` has the declared rank and the declared value on every fixed (int) dimension."""
    if declared and len(dims) != len(declared):
        raise InputError(
            f"input {name!r} must have rank {len(declared)} (shape {list(declared)}), got shape {list(dims)}"
        )
    for axis, (want, got) in enumerate(zip(declared, dims)):
        if isinstance(want, int) and want != got:
            raise InputError(
                f"input {name!r} dimension {axis} must be {want} (shape {list(declared)}), got shape {list(dims)}"
            )


def checked_shape(spec, shape) -> tuple[int, ...]:
    """A shape given to ``prepare`` for input ``spec``: positive ints, the right rank, fixed dims kept."""
    try:
        dims = tuple(shape)
    except TypeError:
        raise InputError(f"shape for input {spec.name!r} must be a sequence of ints, not {shape!r}") from None
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in dims):
        raise InputError(f"shape for input {spec.name!r} must hold positive ints, got {list(dims)}")
    _check_fixed_dims(spec.name, spec.shape, dims)
    return tuple(int(d) for d in dims)


def check_feeds(model, backend: str, input_feed: Mapping[str, Any]):
    """(feeds, shapes, names of fed initializers) for a valid ``input_feed`` of ``model`` (a
    frontends.onnx.OnnxModel); InputError naming the input otherwise. ``shapes`` holds every fed
    array's shape, fed initializers' too: the graph is built from them and plans are cached by them."""
    known = {s.name: s for s in model.inputs}
    overridable = {s.name: s for s in model.overridable}
    unknown = [k for k in input_feed if k not in known and k not in overridable]
    if unknown:
        raise InputError(f"unknown input name(s) {unknown}; the model's inputs are {list(known)}")
    missing = [k for k in known if k not in input_feed]
    if missing:
        raise InputError(f"missing input(s) {missing}; the model's inputs are {list(known)}")
    feeds: dict[str, np.ndarray] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    bound: dict[str, int] = {}
    for name, x in input_feed.items():
        spec = known.get(name) or overridable[name]
        if backend == "cuda" and not isinstance(x, np.ndarray) and _is_device_array(x):
            pass  # a device array stays on the device: shape and dtype are checked below
        elif not isinstance(x, np.ndarray):
            raise InputError(f"input {name!r} must be a numpy.ndarray, not {type(x).__name__}")
        if x.dtype != np.dtype(spec.dtype):
            raise InputError(f"input {name!r} must have dtype {spec.dtype}, got {x.dtype}")
        _check_fixed_dims(name, spec.shape, x.shape)
        for axis, (want, got) in enumerate(zip(spec.shape, x.shape)):
            if got <= 0:
                raise InputError(f"input {name!r} has an empty dimension {axis}: shape {list(x.shape)}")
            if isinstance(want, str) and bound.setdefault(want, got) != got:
                raise InputError(f"symbolic dimension {want!r} is {bound[want]} in one input but {got} in {name!r}")
        feeds[name] = x
        shapes[name] = tuple(x.shape)
    fed = frozenset(n for n in input_feed if n in overridable)
    return feeds, shapes, fed
