"""Typed errors: everything cnnrt raises on purpose derives from :class:`CnnrtError`."""

from __future__ import annotations


class CnnrtError(Exception):
    """Base of every error cnnrt raises on purpose."""


class ModelLoadError(CnnrtError):
    """The model file or protobuf cannot be read, or its graph is malformed."""


class UnsupportedOpError(CnnrtError):
    """One or more nodes use an op, opset, attribute or dtype cnnrt does not implement."""


class ShapeError(CnnrtError):
    """Shapes do not fit together (weights, attributes, inputs)."""


class InputError(CnnrtError):
    """The feeds given to ``run`` do not match the model's inputs."""


class GraphError(CnnrtError):
    """The IR graph breaks an invariant (found by ``Graph.verify``)."""


class PassError(CnnrtError):
    """An optimization pass failed or produced an invalid graph."""


class KernelError(CnnrtError):
    """A kernel failed while running; the message names the node."""


class BackendUnavailableError(CnnrtError):
    """The requested backend cannot run on this machine."""


class ResourceLimitError(CnnrtError):
    """The model needs more memory than the configured limit."""


class SessionClosedError(CnnrtError):
    """The session was closed: its plans and arena are gone."""
