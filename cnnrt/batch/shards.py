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
        self._rows: dict[int, list[dict]] = {}

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
        keys = [c for c in batch if c != "index"]
        for i, index in enumerate(np.asarray(batch["index"]).tolist()):
            k = index // self.shard_size
            rows = self._rows.setdefault(k, [])
            rows.append({"index": index, **{c: batch[c][i] for c in keys}})
            if len(rows) == len(self.item_range(k)):
                self._write(k, sorted(self._rows.pop(k), key=lambda r: r["index"]))

    def _write(self, k: int, rows: list[dict]) -> None:
        import pyarrow as pa

        ok = [r["error"] == "" for r in rows]
        table = {"id": pa.array([str(r["id"]) for r in rows], pa.string())}
        for c in rows[0]:
            if c in ("index", "id", "error"):
                continue
            typ = pa.list_(pa.int32() if c == "classes" else pa.float32())
            table[c] = pa.array([np.asarray(r[c]).tolist() if good else None for r, good in zip(rows, ok)], typ)
            if c == "classes" and self.labels:
                names = [[self.labels[j] for j in r[c]] if good else None for r, good in zip(rows, ok)]
                table["labels"] = pa.array(names, pa.list_(pa.string()))
        table["error"] = pa.array([None if good else str(r["error"]) for r, good in zip(rows, ok)], pa.string())
        tmp = self.folder / f".{shard_name(k)}.tmp"
        self.pq.write_table(pa.table(table), tmp)
        os.replace(tmp, self.folder / shard_name(k))
        self.done.add(k)

    def close(self) -> None:
        """Check that every shard was written (a lost batch would otherwise pass silently)."""
        if self._rows or len(self.done) != self.shards:
            missing = sorted(set(range(self.shards)) - self.done)
            raise CnnrtError(f"batch run ended with shards {missing[:5]} incomplete: rows were lost")
