"""What cnnrt keeps on disk, and clearing it: ``cnnrt cache info`` / ``cnnrt cache clear``.

The root (``$CNNRT_CACHE_DIR``, see cnnrt/kernels/cache_dir.py) holds the kernel caches, one
``numba-<hash>`` folder per state of the kernel sources (only the current hash's is used; the
others are pruned once unused for a day), the zoo's ONNX exports (``zoo/``) and
``peak.json`` (the machine's measured peak for ``cnnrt profile``).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from cnnrt.errors import CnnrtError
from cnnrt.kernels import cache_dir

WHAT = ("stale", "kernels", "zoo", "plans", "all")


def _zoo_dir() -> Path:
    from cnnrt.models.zoo_cache import default_cache_dir

    return default_cache_dir()


def _size(p: Path) -> int:
    return p.stat().st_size if p.is_file() else 0


def info() -> dict:
    """Every cache folder and file with its size, and which are current."""
    from cnnrt.models.zoo_cache import data_path, is_current

    root = cache_dir.cache_root()
    current = cache_dir.kernel_cache_dir()
    active = cache_dir.active_kernel_dir()
    now = time.time()
    kernels = []
    folders = cache_dir.kernel_caches(root)
    if active not in folders and active.is_dir():
        folders.append(active)
    for p in folders:
        size, files = cache_dir.folder_size(p)
        kernels.append(
            {
                "path": str(p),
                "current": p in (current, active),
                "bytes": size,
                "files": files,
                "idle_s": max(0.0, now - p.stat().st_mtime),
            }
        )
    zoo_dir = _zoo_dir()
    zoo = [
        {"path": str(p), "current": is_current(p), "bytes": p.stat().st_size + _size(data_path(p))}
        for p in sorted(zoo_dir.glob("*.onnx"))
        if p.is_file()
    ]  # an export's bytes include its external data file
    others = (
        [{"path": str(p), "bytes": p.stat().st_size} for p in sorted(root.glob("*")) if p.is_file()]
        if root.is_dir()
        else []
    )
    from cnnrt.runtime.plan_cache import entries, plans_dir

    return {
        "plans_dir": str(plans_dir()),
        "plans": entries(),
        "root": str(root),
        "kernel_source_hash": cache_dir.kernel_source_hash(),
        "kernel_dir": str(active),
        "kernels": kernels,
        "zoo_dir": str(zoo_dir),
        "zoo": zoo,
        "files": others,
        "bytes": sum(k["bytes"] for k in kernels) + sum(z["bytes"] for z in zoo) + sum(f["bytes"] for f in others),
    }


def clear(what: str = "stale") -> list[tuple[str, int]]:
    """Delete the kernel caches, zoo exports and/or cached plans; returns (path, bytes) of what went.

    ``stale``: kernel caches of other kernel sources (their plans with them) and exports of other zoo
    sources (whatever their age); ``kernels`` / ``zoo`` / ``plans``: all of that kind (the plans live
    in the kernel folder); ``all``: everything, and the files beside them.
    """
    if what not in WHAT:
        raise CnnrtError(f"cache clear: what must be one of {', '.join(WHAT)}, not {what!r}")
    rep = info()
    gone: list[tuple[str, int]] = []
    for k in rep["kernels"]:
        if what in ("kernels", "all") or (what == "stale" and not k["current"]):
            shutil.rmtree(k["path"], ignore_errors=True)
            gone.append((k["path"], k["bytes"]))
    if what == "plans":
        for e in rep["plans"]:
            p = Path(e["path"])
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            gone.append((e["path"], e["bytes"]))
    for z in rep["zoo"]:
        if what in ("zoo", "all") or (what == "stale" and not z["current"]):
            from cnnrt.models.zoo_cache import data_path

            Path(z["path"]).unlink(missing_ok=True)
            data_path(Path(z["path"])).unlink(missing_ok=True)
            gone.append((z["path"], z["bytes"]))
    if what == "all":
        for f in rep["files"]:
            Path(f["path"]).unlink(missing_ok=True)
            gone.append((f["path"], f["bytes"]))
    return gone


def fmt_size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
