"""A generated image dataset with corrupt files, the tiny classifier, and one uninterrupted local run over
them, shared by the local and the Ray tests."""

from __future__ import annotations

import pytest
from batch_data import BATCH, CORRUPT, N_IMAGES, SHARD, make_image_folder, tiny_classifier

import cnnrt.batch


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    model = root / "tiny.onnx"
    model.write_bytes(tiny_classifier())
    bad = make_image_folder(root / "images", N_IMAGES, corrupt=CORRUPT)
    local = root / "local"
    summary = cnnrt.batch.run(str(model), str(root / "images"), str(local), shard_size=SHARD, batch_size=BATCH, topk=3)
    return {"root": root, "model": model, "images": root / "images", "bad": bad, "local": local, "summary": summary}
