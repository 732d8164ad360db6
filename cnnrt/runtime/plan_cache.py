"""The plan cache: a model's optimised graph kept on disk, so a later session skips import and passes.

After a session builds a plan for a model file, its optimised IR graph (after the passes and
algorithm selection, constants included) and the pass log are written under
``<kernel cache>/plans/`` (kernels/cache_dir.py's active_kernel_dir: the plans go when the
kernels they were built for go). A later session on the same file reads the model's
interface (inputs, outputs) from the cache and, per set of input shapes, the graph: neither
onnx nor the passes run. Anything else a session may ask of the model (its metadata, the
declared output shapes, an import for new shapes) parses the file then, on first use.

Keys. A model is known by a fingerprint of its file: path, size, modification and
status-change times (nanoseconds), inode, and a hash of sixteen 64 KiB samples spread over the
content (any write or touch changes the status-change time; a copy is a new file, built
again). Hashing the whole file instead would slow every cold start of a large model by
a good part of its parse. Its external-data files are known by their fingerprints. A plan adds the session's build options (backend, opt
level, disabled passes, poison, memory limit; not ``tiered``), the input shapes, the fed
initializers and the CPU's vector width. Both include a hash of the source files that shape
a graph (core, frontends, passes, kernels), cnnrt's, Python's and numpy's versions.

Entries. ``model-<key>.pkl`` holds the interface; a plan is a folder ``<key>/`` with
``graph.pkl`` (the pickled graph, its arrays out of band), ``arrays.bin`` (those arrays,
64-byte aligned, mapped copy-on-write when read: no copy, and writable as Numba expects) and
``manifest.json`` (sizes, the pickle's hash). Both are written to a temporary name and renamed,
so a reader sees a whole entry or none; a plan is written by a background thread once the
session's first plan is built (the process waits for it at exit). An entry that fails any
check (sizes, hash, unpickling) is deleted and rebuilt. Entries unused for a day are pruned
when a new one is written. ``CNNRT_PLAN_CACHE=0`` (or ``InferenceSession(plan_cache=False)``)
turns the cache off.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import mmap
import os
import pickle
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from cnnrt.kernels.cache_dir import STALE_AFTER_S, active_kernel_dir
from cnnrt.kernels.cpu.microkernel_amx import amx_unsupported_reason

ENV = "CNNRT_PLAN_CACHE"
FORMAT = 1
ALIGN = 64
SAMPLES, SAMPLE_BYTES = 16, 1 << 16
# the packages whose sources decide what graph a model becomes
SHAPING_PACKAGES = ("cnnrt.core", "cnnrt.frontends", "cnnrt.passes", "cnnrt.kernels")
_WRITERS: list[threading.Thread] = []


def from_env() -> bool:
    """The default of a session's ``plan_cache`` option: on unless ``CNNRT_PLAN_CACHE=0``."""
    return os.environ.get(ENV, "1") not in ("", "0")


def plans_dir() -> Path:
    return active_kernel_dir() / "plans"


@functools.cache
def source_hash() -> str:
    """A hash of the graph-shaping sources and of the versions a pickled graph depends on."""
    from importlib import metadata

    h = hashlib.sha256(repr((FORMAT, metadata.version("cnnrt"), sys.version, np.__version__)).encode())
    for pkg in SHAPING_PACKAGES:
        spec = importlib.util.find_spec(pkg)
        for folder in spec.submodule_search_locations or ():
            root = Path(folder)
            for f in sorted(root.rglob("*.py")):
                h.update(str(f.relative_to(root)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:24]


def file_fingerprint(path: Path) -> list:
    """What identifies one state of a file without reading it all (OSError when it cannot be read)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        h = hashlib.blake2b(digest_size=16)
        step = max(st.st_size - SAMPLE_BYTES, 0) // (SAMPLES - 1)
        for k in range(SAMPLES):
            f.seek(k * step)
            h.update(f.read(SAMPLE_BYTES))
    return [str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev, h.hexdigest()]


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()[:32]


def _external_files(model) -> list[Path]:
    """The external-data files the model's initializers read (resolved inside its folder)."""
    files = set()
    for t in model.proto.graph.initializer:
        for e in t.external_data:
            if e.key == "location" and model.folder is not None:
                files.add((model.folder / e.value).resolve())
    return sorted(files)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class CachedModel:
    """A model known from the plan cache: its inputs and outputs without the parsed file. Anything
    more (metadata, output shapes, a graph for shapes not cached) parses the file on first use."""

    optimised = None  # a graph cnnrt wrote itself is never cached: it runs as written

    def __init__(self, path: Path, info: dict) -> None:
        self.path = path
        self.inputs = list(info["inputs"])
        self.overridable = list(info["overridable"])
        self.outputs = list(info["outputs"])
        self._parsed = None

    def parsed(self):
        """The frontends.onnx.OnnxModel of the file (parsed now if it is not yet)."""
        if self._parsed is None:
            from cnnrt.frontends.onnx import OnnxModel

            self._parsed = OnnxModel(self.path)
            self._parsed.inputs = self.inputs  # free dimension overrides applied to this model hold
        return self._parsed

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.parsed(), name)

    def symbolic_beyond_batch(self) -> dict[str, list[int | str | None]]:
        return {s.name: list(s.shape) for s in self.inputs if any(not isinstance(d, int) for d in s.shape[1:])}

    def default_shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        return {s.name: tuple(d if isinstance(d, int) else batch for d in s.shape) for s in self.inputs}


class ModelEntry:
    """The plan cache's entries for one state of one model file."""

    def __init__(self, key: str, folder: Path) -> None:
        self.key = key
        self.folder = folder
        self.external: list = []  # fingerprints of the external-data files, part of every plan's key

    def _info_path(self) -> Path:
        return self.folder / f"model-{self.key}.pkl"

    def read_info(self) -> dict | None:
        """The model's interface, if cached and its external-data files are as they were."""
        try:
            info = pickle.loads(self._info_path().read_bytes())
            if all(file_fingerprint(Path(fp[0])) == fp for fp in info["external"]):
                with contextlib.suppress(OSError):
                    os.utime(self._info_path())
                self.external = info["external"]
                return info
        except FileNotFoundError:
            return None
        except Exception:  # corrupt, or an external file changed: parse the model again
            pass
        with contextlib.suppress(OSError):
            self._info_path().unlink()
        return None

    def write_info(self, model) -> None:
        self.external = [file_fingerprint(p) for p in _external_files(model)]
        info = {
            "inputs": model.inputs,
            "overridable": model.overridable,
            "outputs": model.outputs,
            "external": self.external,
        }
        with contextlib.suppress(OSError):
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_atomic(self._info_path(), pickle.dumps(info, protocol=5))

    def plan_key(self, shapes: dict, fed: frozenset[str], opts, vector_bytes: int | None) -> str:
        options = repr(replace(opts, tiered=False))
        amx = not amx_unsupported_reason()  # bf16 plans mark convs for AMX tiles (passes/precision.py)
        return _digest(self.key, self.external, options, sorted(shapes.items()), sorted(fed), vector_bytes, amx)

    def load_plan(self, key: str) -> dict | None:
        """A cached plan's parts ("graph", "log", counts, "arrays"), or None (absent or corrupt: deleted)."""
        folder = self.folder / key
        if not folder.is_dir():
            return None
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            payload = (folder / "graph.pkl").read_bytes()
            if manifest["format"] != FORMAT or hashlib.sha256(payload).hexdigest() != manifest["sha256"]:
                raise ValueError("the pickled graph does not match its manifest")
            with open(folder / "arrays.bin", "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size != manifest["bytes"]:
                    raise ValueError(f"arrays.bin has {size} bytes, the manifest says {manifest['bytes']}")
                view = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)) if size else memoryview(b"")
            buffers = [view[o : o + n] for o, n in manifest["buffers"]]
            parts = pickle.loads(payload, buffers=buffers)
        except Exception:  # truncated, corrupt or from an incompatible writer: rebuilt by the caller
            shutil.rmtree(folder, ignore_errors=True)
            return None
        with contextlib.suppress(OSError):
            os.utime(folder)
        return parts

    def store_plan(self, key: str, parts: dict, after: threading.Thread | None = None) -> None:
        """Write ``parts`` as plan ``key``: pickled now (the arrays by reference), written to disk by a
        background thread, which first waits for ``after`` (a tiered start's compiling)."""
        buffers: list[pickle.PickleBuffer] = []
        try:
            payload = pickle.dumps(parts, protocol=5, buffer_callback=buffers.append)
        except Exception:  # something unpicklable in the graph: not cached, built again next time
            return
        t = threading.Thread(target=self._write_plan, args=(key, payload, buffers, after), name="cnnrt-plan-cache")
        _WRITERS.append(t)
        t.start()

    def _write_plan(self, key: str, payload: bytes, buffers: list, after: threading.Thread | None) -> None:
        if after is not None:
            after.join()
        final = self.folder / key
        tmp = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.folder, prefix=f".{key}."))
            spans, offset = [], 0
            with open(tmp / "arrays.bin", "wb") as f:
                for b in buffers:
                    raw = b.raw()
                    pad = -offset % ALIGN
                    f.write(b"\0" * pad)
                    offset += pad
                    f.write(raw)
                    spans.append((offset, raw.nbytes))
                    offset += raw.nbytes
            (tmp / "graph.pkl").write_bytes(payload)
            manifest = {"format": FORMAT, "sha256": hashlib.sha256(payload).hexdigest(), "bytes": offset}
            (tmp / "manifest.json").write_text(json.dumps({**manifest, "buffers": spans}))
            os.rename(tmp, final)  # atomic; fails when another process wrote the entry first
            tmp = None
            prune_stale(self.folder)
        except Exception:  # a full or read-only disk: the next session builds again, which is only slower
            pass
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)


def open_model(source: Any, enabled: bool):
    """``(model, entry)``: the model of ``source`` (a path, bytes or ModelProto) and its plan-cache
    entry (None when the cache is off, the model is not a file or is a graph cnnrt optimised)."""
    entry = None
    if enabled and isinstance(source, (str, os.PathLike)):
        try:
            path = Path(source).resolve()
            entry = ModelEntry(_digest(source_hash(), file_fingerprint(path)), plans_dir())
        except OSError:  # the parse below says what is wrong with the file
            entry = None
        info = entry.read_info() if entry is not None else None
        if info is not None:
            return CachedModel(path, info), entry
    from cnnrt.frontends.onnx import OnnxModel

    model = OnnxModel(source)
    if entry is not None and model.optimised is None:
        entry.write_info(model)
        return model, entry
    return model, None


def wait_for_writes() -> None:
    """Wait until every plan this process is writing is on disk."""
    while _WRITERS:
        _WRITERS.pop().join()


def entries(folder: Path | None = None) -> list[dict]:
    """Every plan and model entry in the plan cache: path, bytes, seconds since last use."""
    folder = plans_dir() if folder is None else folder
    now = time.time()
    out = []
    with contextlib.suppress(OSError):
        for p in sorted(folder.iterdir()):
            if p.name.startswith("."):
                continue
            size = sum(f.stat().st_size for f in p.iterdir()) if p.is_dir() else p.stat().st_size
            out.append({"path": str(p), "bytes": size, "idle_s": max(0.0, now - p.stat().st_mtime)})
    return out


def prune_stale(folder: Path, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete the entries (and leftovers of interrupted writes) unused for ``stale_after_s`` seconds."""
    now = time.time()
    gone = []
    with contextlib.suppress(OSError):
        for p in folder.iterdir():
            try:
                if now - p.stat().st_mtime < stale_after_s:
                    continue
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            except OSError:
                continue
            gone.append(p)
    return gone
