"""What a batch run reads: the list of items in an input (a folder of images or .npy files, a Parquet file or
folder), and the loading of one item into a model input tensor.

The listing is deterministic (sorted), so item ``i`` is the same item in every run over the same input: the
output shards are ranges of this list, which is what lets an interrupted run resume. An item is a plain
:class:`Ref` (a few strings and ints) so that it travels to Ray workers as a row of a Ray dataset; the bytes
are read where the item is loaded, not on the driver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnrt.errors import CnnrtError, InputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass(frozen=True)
class Ref:
    """One input item: its position in the listing, its id in the output, and where its data lies.

    ``kind`` is "image" (a file of image bytes), "npy" (a file holding a tensor) or "parquet" (row ``row`` of
    row group ``group`` of ``path``, column ``column``, of kind ``cell``: "image" or "tensor")."""

    index: int
    id: str
    kind: str
    path: str
    group: int = -1
    row: int = -1
    column: str = ""
    cell: str = ""


def _require_pyarrow():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise CnnrtError("Parquet input and output need pyarrow: pip install -e '.[batch]'") from None
    return pq


def list_items(source: str, column: str | None = None, id_column: str | None = None) -> list[Ref]:
    """Every item of ``source`` in a fixed order (sorted by relative path; Parquet rows in file order)."""
    root = Path(source)
    if not root.exists():
        raise InputError(f"input {source!r} does not exist")
    if root.is_file():
        if root.suffix != ".parquet":
            raise InputError(f"input {source!r}: a file input must be .parquet (or give a folder of images/.npy)")
        return _parquet_items([root], root.parent, column, id_column)
    files = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.relative_to(root).as_posix())
    parquet = [p for p in files if p.suffix == ".parquet"]
    if parquet:
        return _parquet_items(parquet, root, column, id_column)
    refs = []
    for p in files:
        suffix = p.suffix.lower()
        kind = "npy" if suffix == ".npy" else "image" if suffix in IMAGE_SUFFIXES else None
        if kind:
            refs.append(Ref(len(refs), p.relative_to(root).as_posix(), kind, str(p)))
    if not refs:
        raise InputError(f"input {source!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}), .npy or .parquet")
    return refs


def _data_column(schema, path: Path, column: str | None) -> tuple[str, str]:
    """(column name, "image" | "tensor"): the named column, or the first binary / list column."""
    import pyarrow as pa

    def kind(t) -> str | None:
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return "image"
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            return "tensor"
        return None

    if column is not None:
        if column not in schema.names:
            raise InputError(f"{path}: no column {column!r} (columns: {', '.join(schema.names)})")
        found = kind(schema.field(column).type)
        if found is None:
            raise InputError(f"{path}: column {column!r} is {schema.field(column).type}, not image bytes or a list")
        return column, found
    for field in schema:
        found = kind(field.type)
        if found:
            return field.name, found
    raise InputError(f"{path}: no image-bytes (binary) or tensor (list) column; columns: {', '.join(schema.names)}")


def _parquet_items(files: list[Path], root: Path, column: str | None, id_column: str | None) -> list[Ref]:
    pq = _require_pyarrow()
    refs = []
    for path in files:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        data, cell = _data_column(schema, path, column)
        ids_from = id_column or next((c for c in ("id", "path") if c in schema.names), None)
        if ids_from is not None and ids_from not in schema.names:
            raise InputError(f"{path}: no id column {ids_from!r} (columns: {', '.join(schema.names)})")
        rel = path.relative_to(root).as_posix()
        row_in_file = 0
        for g in range(pf.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            ids = pf.read_row_group(g, columns=[ids_from]).column(0).to_pylist() if ids_from else None
            for r in range(n):
                item_id = str(ids[r]) if ids else f"{rel}#{row_in_file + r}"
                refs.append(Ref(len(refs), item_id, "parquet", str(path), g, r, data, cell))
            row_in_file += n
    return refs


class Loader:
    """Loads items into tensors of one per-item shape; a bad item raises :class:`InputError`.

    ``preprocess`` turns image bytes into a tensor (``None`` when the model takes no images). Parquet row
    groups are read whole and kept while consecutive items come from the same one."""

    def __init__(self, item_shape: tuple[int, ...], preprocess: Callable[[bytes], np.ndarray] | None) -> None:
        self.item_shape = tuple(item_shape)
        self.preprocess = preprocess
        self._group_key = None
        self._group = None

    def __call__(self, ref: Ref) -> np.ndarray:
        try:
            if ref.kind == "image" or (ref.kind == "parquet" and ref.cell == "image"):
                data = self._file_bytes(ref.path) if ref.kind == "image" else self._cell(ref)
                if data is None:
                    raise InputError("the image cell is empty")
                if self.preprocess is None:
                    raise InputError(f"an image, but the model's input {self.item_shape} is not an image (C, H, W)")
                return self.preprocess(data)
            raw = self._npy(ref.path) if ref.kind == "npy" else self._cell(ref)
            return self._as_tensor(raw)
        except InputError as e:
            raise InputError(f"{ref.id}: {e}") from None

    @staticmethod
    def _file_bytes(path: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise InputError(f"cannot read: {e.strerror}") from None

    @staticmethod
    def _npy(path: str) -> np.ndarray:
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise InputError(f"not a readable .npy file: {e}") from None

    def _cell(self, ref: Ref):
        key = (ref.path, ref.group, ref.column)
        if key != self._group_key:
            pq = _require_pyarrow()
            self._group = pq.ParquetFile(ref.path).read_row_group(ref.group, columns=[ref.column]).column(0)
            self._group_key = key
        return self._group[ref.row].as_py()

    def _as_tensor(self, raw) -> np.ndarray:
        if raw is None:
            raise InputError("the tensor cell is empty")
        try:
            a = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise InputError(f"not a numeric tensor: {e}") from None
        want = int(np.prod(self.item_shape))
        # a flat list (Parquet) or the item shape, with or without a leading batch axis of 1
        if a.shape not in (self.item_shape, (1, *self.item_shape)) and not (a.ndim == 1 and a.size == want):
            raise InputError(f"tensor of shape {list(a.shape)}, but the model takes {list(self.item_shape)} per item")
        return np.ascontiguousarray(a.reshape(self.item_shape))
