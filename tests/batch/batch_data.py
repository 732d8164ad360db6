"""A tiny RGB classifier and a generated image dataset (with corrupt files) for the batch tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from helpers import make_model
from onnx import helper

SIZE = 32
CLASSES = 10
# the shared dataset (tests/batch/conftest.py): images, the corrupt ones, items per shard and per batch
N_IMAGES = 240
CORRUPT = (5, 40, 41, 130, 200, 233)
SHARD = 32
BATCH = 16


def tiny_classifier(seed: int = 0, classes: int = CLASSES, batch: int | str = "N") -> bytes:
    """Conv 3->8 (3x3, stride 2) -> Relu -> GlobalAveragePool -> Flatten -> Gemm 8->classes (batch symbolic
    unless given)."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
    ]
    init = {
        "w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(8).astype(np.float32),
        "fw": rng.standard_normal((classes, 8)).astype(np.float32) * 2,
        "fb": np.zeros(classes, np.float32),
    }
    model = make_model(nodes, [("x", [batch, 3, SIZE, SIZE])], [("y", [batch, classes])], init)
    return model.SerializeToString()


def image_bytes(rng: np.random.Generator, fmt: str) -> bytes:
    from PIL import Image

    h, w = rng.integers(SIZE, SIZE + 16, size=2)
    tint = rng.integers(0, 256, size=3)  # a colour per image, so that the classes differ between images
    pixels = np.clip(tint + rng.integers(-40, 41, size=(h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def make_image_folder(root: Path, n: int, corrupt: tuple[int, ...] = (), seed: int = 0) -> list[str]:
    """``n`` PNG/JPEG files under ``root`` (two sub-folders); the items at ``corrupt`` get broken bytes.
    Returns the ids (relative paths) of the corrupt ones."""
    rng = np.random.default_rng(seed)
    bad = []
    for i in range(n):
        fmt = "PNG" if i % 2 else "JPEG"
        path = root / f"d{i % 2}" / f"img{i:04d}.{'png' if fmt == 'PNG' else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = image_bytes(rng, fmt)
        if i in corrupt:
            data = data[: len(data) // 3] if i % 3 else b"not an image at all"
            bad.append(path.relative_to(root).as_posix())
        path.write_bytes(data)
    return bad


def read_rows(folder: Path) -> list[dict]:
    """The output rows of a batch run, in item order."""
    import pyarrow.parquet as pq

    return pq.read_table(folder).to_pylist()


def assert_same_rows(got: list[dict], want: list[dict], atol: float = 1e-5) -> None:
    """Same ids, errors and classes; scores within ``atol``."""
    assert [r["id"] for r in got] == [r["id"] for r in want]
    for g, w in zip(got, want):
        assert g["error"] == w["error"], g["id"]
        assert g["classes"] == w["classes"], g["id"]
        if w["scores"] is None:
            assert g["scores"] is None
        else:
            np.testing.assert_allclose(g["scores"], w["scores"], atol=atol, err_msg=g["id"])
