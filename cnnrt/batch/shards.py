"""The output of a batch run: a folder of Parquet shards, each the rows of one fixed range of the input's
items, written whole (to a hidden temporary name, then renamed) once all its rows are in.

So a shard on disk is always complete, and a rerun of an interrupted run computes only the shards that are
missing: the rows end up exactly those of an uninterrupted run. ``_cnnrt_batch.json`` records what the rows
depend on (item ids, model, preprocessing, top-k); a rerun with different settings is refused instead of
mixing two runs. Readers skip names starting with "_" or ".", so ``pyarrow.parquet.read_table(folder)``
reads just the rows.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from cnnrt.batch.sources import _require_pyarrow
from cnnrt.errors import CnnrtError

META = "_cnnrt_batch.json"


def shard_name(k: int) -> str:
    return f"part-{k:05d}.parquet"


def ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


class ShardWriter:
    """Collects result rows (column batches in any order) and writes each shard when it is complete."""

    def __init__(self, folder: str, ids: list[str], shard_size: int, settings: dict, labels=None) -> None:
        if shard_size < 1:
            raise CnnrtError(f"--shard-size must be >= 1, got {shard_size}")
        self.pq = _require_pyarrow()
        self.folder = Path(folder)
        self.n = len(ids)
        self.shard_size = shard_size
        self.labels = labels
        self.meta = {"items": self.n, "ids_sha256": ids_digest(ids), "shard_size": shard_size, **settings}
        self.shards = (self.n + shard_size - 1) // shard_size
        self._check_folder()
        self.done = {k for k in range(self.shards) if (self.folder / shard_name(k)).is_file()}
        self._parts: dict[int, list[dict]] = {}  # the result columns of each shard not yet complete

    def _check_folder(self) -> None:
        meta_path = self.folder / META
        if self.folder.exists() and not self.folder.is_dir():
            raise CnnrtError(f"output {str(self.folder)!r} is a file; the output is a folder of Parquet shards")
        if meta_path.is_file():
            old = json.loads(meta_path.read_text())
            diff = sorted(k for k in self.meta.keys() | old.keys() if old.get(k) != self.meta.get(k))
            if diff:
                raise CnnrtError(
                    f"output {str(self.folder)!r} holds a run with other settings ({', '.join(diff)} differ): "
                    "give a new output folder or delete this one"
                )
            return
        if self.folder.is_dir() and any(p.name.startswith("part-") for p in self.folder.iterdir()):
            raise CnnrtError(f"output {str(self.folder)!r} holds shards of an unknown run: give a new output folder")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            meta_path.write_text(json.dumps(self.meta, indent=1))
        except OSError as e:
            raise CnnrtError(f"cannot write output folder {str(self.folder)!r}: {e.strerror}") from None

    def pending(self) -> list[int]:
        """The shards still to compute, in order."""
        return [k for k in range(self.shards) if k not in self.done]

    def item_range(self, k: int) -> range:
        return range(k * self.shard_size, min((k + 1) * self.shard_size, self.n))

    def add(self, batch: dict[str, np.ndarray]) -> None:
        """Take a result batch; write the shards it completes."""
        index = np.asarray(batch["index"], np.int64)
        shard = index // self.shard_size
        for k in np.unique(shard).tolist():
            sel = shard == k
            parts = self._parts.setdefault(k, [])
            parts.append({c: np.asarray(v)[sel] for c, v in batch.items()})
            if sum(len(p["index"]) for p in parts) == len(self.item_range(k)):
                self._write(k, self._parts.pop(k))

    def _write(self, k: int, parts: list[dict]) -> None:
        import pyarrow as pa

        order = np.argsort(np.concatenate([p["index"] for p in parts]), kind="stable")
        errors = np.concatenate([p["error"] for p in parts])[order]
        ok = errors == ""
        table = {"id": pa.array([str(i) for i in np.concatenate([p["id"] for p in parts])[order]], pa.string())}
        for c in parts[0]:
            if c in ("index", "id", "error"):
                continue
            values = _stack([p[c] for p in parts])[order]
            table[c] = _lists(values, ok, pa.int32() if c == "classes" else pa.float32())
            if c == "classes" and self.labels:
                table["labels"] = _lists(np.asarray(self.labels, dtype=object)[np.maximum(values, 0)], ok, pa.string())
        table["error"] = pa.array([None if good else str(e) for e, good in zip(errors, ok)], pa.string())
        tmp = self.folder / f".{shard_name(k)}.tmp"
        self.pq.write_table(pa.table(table), tmp)
        os.replace(tmp, self.folder / shard_name(k))
        self.done.add(k)

    def close(self) -> None:
        """Check that every shard was written (a lost batch would otherwise pass silently)."""
        if self._parts or len(self.done) != self.shards:
            missing = sorted(set(range(self.shards)) - self.done)
            raise CnnrtError(f"batch run ended with shards {missing[:5]} incomplete: rows were lost")


def _stack(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate (n_i, width) result columns; a batch of error rows only has width 0 and gets the others'."""
    width = max(p.shape[1] for p in parts)
    return np.concatenate([p if p.shape[1] == width else np.zeros((len(p), width), p.dtype) for p in parts])


def _lists(values: np.ndarray, ok: np.ndarray, typ):
    """A list column from the rows of ``values``, null where ``ok`` is false."""
    import pyarrow as pa

    offsets = np.zeros(len(values) + 1, np.int32)
    np.cumsum(np.where(ok, values.shape[1], 0), out=offsets[1:])
    flat = pa.array(values[ok].ravel(), typ)
    return pa.ListArray.from_arrays(pa.array(offsets), flat, mask=pa.array(~ok))
