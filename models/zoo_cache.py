"""The zoo's on-disk cache of ONNX exports, readable without torch.

A cached export is found by its path alone (name, opset, batch and :func:`source_hash`), so a
zoo name whose export is on disk runs without importing torch (seconds of start-up); only a
miss loads torch and exports (models/onnx_export.py).
"""

from __future__ import annotations

import hashlib
import os
import time
from importlib import metadata
from pathlib import Path

from cnnrt.kernels.cache_dir import STALE_AFTER_S, cache_root

from .registry import entry

SUFFIX = ".onnx"
# Exports keep their weights in one external data file beside the model (models/onnx_export.py);
# the format is part of the cache key, so an export in another layout is never taken for one.
DATA_SUFFIX = ".data"
DATA_ALIGN = 64  # each tensor's offset: a cache line, and the alignment the kernels' copies want
EXTERNAL_MIN_BYTES = 1024  # smaller initializers stay in the protobuf
EXPORT_FORMAT = f"external{DATA_SUFFIX}-align{DATA_ALIGN}-min{EXTERNAL_MIN_BYTES}"
TOUCH_EVERY_S = 3600.0  # far below the day after which unused exports are pruned


def torch_version() -> str:
    """The installed torch's version, read from its metadata (importing torch takes seconds)."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "none"


def source_hash() -> str:
    """Hash of the zoo's source files and the torch version: the cache key's salt."""
    h = hashlib.sha256(torch_version().encode() + EXPORT_FORMAT.encode())
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$CNNRT_ZOO_CACHE`` if set, else ``zoo`` in the cache root (``$CNNRT_CACHE_DIR``)."""
    env = os.environ.get("CNNRT_ZOO_CACHE")
    return Path(env) if env else cache_root() / "zoo"


def cached_path(
    name: str,
    opset: int = 17,
    batch: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    dynamic_spatial: bool = False,
) -> Path:
    """Where the export of zoo model ``name`` is (or will be) cached; unknown names raise."""
    entry(name)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tag = ("dyn" if batch is None else f"b{batch}") + ("-hw" if dynamic_spatial else "")
    return root / f"{name}-op{opset}-{tag}-{source_hash()}{SUFFIX}"


def data_path(path: Path) -> Path:
    """The external data file of the export at ``path``."""
    return path.with_name(path.name + DATA_SUFFIX)


def find_cached(
    name: str, opset: int = 17, batch: int | None = None, cache_dir=None, dynamic_spatial: bool = False
) -> Path | None:
    """The cached export if it is on disk (marked as used, at most once an hour: a touch changes the
    file's fingerprint, which the plan cache then hashes again), else None."""
    path = cached_path(name, opset, batch, cache_dir, dynamic_spatial)
    try:
        if time.time() - path.stat().st_mtime > TOUCH_EVERY_S:
            os.utime(path)
    except OSError:
        return None if not path.exists() else path
    return path


def is_current(path: Path) -> bool:
    """Whether a file in the zoo folder was exported from the current zoo sources and torch."""
    return path.name.endswith(f"-{source_hash()}{SUFFIX}")


def prune_stale(root: Path, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete exports of other zoo sources (or torch versions) unused for ``stale_after_s`` s, with
    their data files, and data files whose model is gone."""
    now = time.time()
    gone = []
    for p in sorted(root.glob(f"*{SUFFIX}")):
        try:
            if is_current(p) or now - p.stat().st_mtime < stale_after_s:
                continue
            p.unlink()
            data_path(p).unlink(missing_ok=True)
        except OSError:
            continue
        gone.append(p)
    for d in sorted(root.glob(f"*{SUFFIX}{DATA_SUFFIX}")):
        model = d.with_name(d.name[: -len(DATA_SUFFIX)])
        try:
            if model.exists() or now - d.stat().st_mtime < stale_after_s:
                continue
            d.unlink()
        except OSError:
            continue
    return gone
