"""Where cnnrt keeps what it computes once: the one root folder and the Numba kernel cache in it.

Everything lives under one root, ``$CNNRT_CACHE_DIR`` (default ``$XDG_CACHE_HOME/cnnrt``, else
``~/.cache/cnnrt``): the compiled kernels (``numba-<hash of the kernel sources>``), the zoo's
ONNX exports (``zoo/``) and the measured machine peak (``peak.json``). Numba's own
``NUMBA_CACHE_DIR``, when set, wins for the kernels.

This module is a leaf (no numba, no numpy): it runs when cnnrt is imported, before numba is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

KERNEL_PREFIX = "numba-"
# A kernel cache of other sources unused for this long is deleted when a process starts (and a
# zoo export of other sources when one is made). Not at once: another checkout of cnnrt (a
# second worktree, an older install) may share the root and still use its own, and a folder
# vanishing under a running process would make that process's next save fail.
STALE_AFTER_S = 86400.0


def cache_root() -> Path:
    env = os.environ.get("CNNRT_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cnnrt"


def kernel_source_hash() -> str:
    """A hash of every kernel source file (names and contents).

    Numba keys a cached function by its own file's timestamp only: a kernel inlining a helper
    from another module (act_row, blas.gemm, ...) would keep running the helper's old code from
    the cache after that module changed. A folder per kernel-source state rules that out;
    unchanged sources (a second process, the next session) reuse the cache.
    """
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def kernel_cache_dir() -> Path:
    """The current sources' kernel cache: ``<root>/numba-<kernel_source_hash()>``."""
    return cache_root() / f"{KERNEL_PREFIX}{kernel_source_hash()}"


def kernel_caches(root: Path | None = None) -> list[Path]:
    """Every kernel cache folder under ``root`` (default cache_root()), current or not."""
    root = cache_root() if root is None else root
    try:
        return sorted(p for p in root.iterdir() if p.name.startswith(KERNEL_PREFIX) and p.is_dir())
    except OSError:
        return []


def mark_used(path: Path) -> None:
    """Record that ``path`` is in use now (its mtime), so pruning leaves it alone."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        os.utime(path)
    except OSError:
        pass  # a read-only cache still works: numba falls back to compiling in memory


def prune_stale_kernel_caches(current: Path, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete the kernel caches beside ``current`` that no process used for ``stale_after_s``
    seconds; returns what was deleted."""
    now = time.time()
    gone = []
    for p in kernel_caches(current.parent):
        if p.name == current.name:
            continue
        try:
            if now - p.stat().st_mtime < stale_after_s:
                continue
        except OSError:
            continue
        shutil.rmtree(p, ignore_errors=True)
        gone.append(p)
    return gone


def folder_size(path: Path) -> tuple[int, int]:
    """(bytes, files) of everything under ``path``."""
    total = files = 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            try:
                total += os.stat(os.path.join(dirpath, n)).st_size
                files += 1
            except OSError:
                pass
    return total, files


def active_kernel_dir() -> Path:
    """The folder this process's kernels are cached in: ``NUMBA_CACHE_DIR`` when set (cnnrt sets it
    on import unless the user did), else :func:`kernel_cache_dir`. What belongs to the compiled
    kernels (warm-plan markers, cached plans) lives in it, so it goes when they go."""
    env = os.environ.get("NUMBA_CACHE_DIR")
    return Path(env) if env else kernel_cache_dir()
