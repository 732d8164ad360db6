"""One place for Numba flags, so every kernel is compiled the same way.

Threading-layer environment must be set before numba is imported; ``configure_threads``
does that as early as cnnrt is imported (see cnnrt/__init__.py for why).
"""

from __future__ import annotations

import os

# fastmath is off: it lets LLVM reassociate reductions and drop NaN/Inf semantics, and
# results must propagate NaN/Inf as onnxruntime does.
JIT_FLAGS = dict(cache=True, fastmath=False, nogil=True)
PARALLEL_FLAGS = dict(JIT_FLAGS, parallel=True)


def njit(*args, **kw):
    import numba

    return numba.njit(*args, **{**JIT_FLAGS, **kw})


def pjit(*args, **kw):
    """njit with parallel=True (prange) for kernels whose outer loop is worth splitting."""
    import numba

    return numba.njit(*args, **{**PARALLEL_FLAGS, **kw})


def configure_env_defaults() -> None:
    """Defaults that must precede the first numba / BLAS import; the user's settings win.

    Numba's OpenMP layer and OpenBLAS both spin after a parallel region; on 2 cores they
    fight (FIELD-NOTES: 3-8x slowdowns). Passive waiting removes the fight.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")
