"""Numba CPU kernels; importing this package registers them."""

from . import activation  # noqa: F401,E402
