"""The shared image preprocessing against a numpy reference, the ImageNet class names, and
``cnnrt run --image FILE --topk K`` against onnxruntime."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
from batch_data import tiny_classifier
from helpers import ort_run
from PIL import Image

from cnnrt.batch.images import IMAGENET_MEAN, IMAGENET_STD, imagenet_classes, preprocess_for
from cnnrt.cli import main
from cnnrt.errors import InputError


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _reference(pixels: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    crop = pixels[top : top + size, left : left + size].astype(np.float64) / 255
    return ((crop - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1)


def test_centre_crop_and_normalise_match_numpy():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(32, 48, 3), dtype=np.uint8)  # shorter side already the resize target
    got = preprocess_for((3, 32, 32), resize=32)(_png(pixels))
    assert got.dtype == np.float32 and got.shape == (3, 32, 32)
    np.testing.assert_allclose(got, _reference(pixels, 0, 8, 32), atol=1e-5)
    tall = rng.integers(0, 256, size=(60, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        preprocess_for((3, 32, 32), resize=32)(_png(tall)), _reference(tall, 14, 0, 32), atol=1e-5
    )


def test_resize_scales_the_shorter_side_before_the_crop():
    pixels = np.zeros((64, 128, 3), np.uint8)
    pixels[:, :64, 0] = 255  # left half red, right half blue
    pixels[:, 64:, 2] = 255
    got = preprocess_for((3, 16, 16), resize=32)(_png(pixels))  # 64x128 -> 32x64, crop columns 24..39
    red = (got[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]) > 0.5
    assert red[:, :7].all() and not red[:, 9:].any()


def test_gray_models_get_one_channel_and_bad_settings_are_refused():
    pixels = np.full((40, 40, 3), 200, np.uint8)
    got = preprocess_for((1, 32, 32))(_png(pixels))
    assert got.shape == (1, 32, 32)
    np.testing.assert_allclose(got, (200 / 255 - 0.449) / 0.226, atol=1e-5)
    with pytest.raises(InputError, match="--mean needs 3 value"):
        preprocess_for((3, 8, 8), mean=(0.5,))
    with pytest.raises(InputError, match="--resize 4 is smaller"):
        preprocess_for((3, 8, 8), resize=4)
    with pytest.raises(InputError, match="cannot decode image"):
        preprocess_for((3, 8, 8))(b"\x89PNG not really")


def test_imagenet_class_names():
    names = imagenet_classes()
    assert len(names) == 1000 and all(n and n == n.strip() for n in names)
    known = {
        0: "tench",
        1: "goldfish",
        207: "golden retriever",
        281: "tabby",
        409: "analog clock",
        999: "toilet tissue",
    }
    assert {i: names[i] for i in known} == known
    # the two names the list holds twice: the bird and the machine, the two swimsuits
    assert sorted(n for n in set(names) if names.count(n) > 1) == ["crane", "maillot"]


def test_run_image_topk_names_the_onnxruntime_classes(tmp_path, capsys):
    model = tmp_path / "classifier.onnx"
    model.write_bytes(tiny_classifier(classes=1000))
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, size=(37, 50, 3), dtype=np.uint8)  # 37 is the default resize of a 32 crop
    image = tmp_path / "cat.png"
    image.write_bytes(_png(pixels))
    assert main(["run", str(model), "--image", str(image), "--topk", "3"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("top")]
    x = _reference(pixels, 2, 9, 32)[None].astype(np.float32)
    (logits,) = ort_run(onnx.load_model_from_string(model.read_bytes()), {"x": x})
    best = np.argsort(-logits[0])[:3]
    assert [int(ln.split()[2]) for ln in lines] == best.tolist()
    assert [ln.split("  ")[-1] for ln in lines] == [imagenet_classes()[c] for c in best]
    assert main(["run", str(model), "--image", str(tmp_path / "none.png")]) == 1
    assert "cannot read image" in capsys.readouterr().err
