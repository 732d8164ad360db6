"""A graph input or output as users see it, free of onnx: the plan cache (runtime/plan_cache.py)
keeps a model's interface in these without loading the onnx package."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputSpec:
    """A graph input as users see it: dims are ints or symbolic names (str) or None."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str
