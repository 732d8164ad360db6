"""Turning an image file into a model's input tensor, and a classifier's output into named top-k classes.

One place for the preprocessing that ``cnnrt batch`` and ``cnnrt run --image`` share: decode (Pillow),
resize the shorter side, centre-crop to the model's input size, scale to [0, 1], normalise with a
mean/std per channel, lay out as CHW float32. The defaults follow the usual ImageNet recipe
(shorter side to crop/0.875, i.e. 256 for a 224 crop; ImageNet's mean and std), so a model trained
that way sees the inputs it was trained on. Pillow is imported on first use: it is an extra
(``[batch]``), needed only when images are read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from cnnrt.errors import CnnrtError, InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# one-channel models: the ImageNet statistics of the luminance Pillow's "L" conversion gives
GRAY_MEAN = (0.449,)
GRAY_STD = (0.226,)
CROP_FRACTION = 0.875


@dataclass(frozen=True)
class Preprocess:
    """How one image becomes a (channels, height, width) float32 tensor."""

    channels: int
    height: int
    width: int
    resize: int  # the shorter side is scaled to this before the centre crop
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise InputError(f"image inputs need a model input of 1 or 3 channels, not {self.channels}")
        for name, v in (("mean", self.mean), ("std", self.std)):
            if len(v) != self.channels:
                raise InputError(f"--{name} needs {self.channels} value(s) (one per channel), got {len(v)}")
        if any(s <= 0 for s in self.std):
            raise InputError(f"--std values must be > 0, got {self.std}")
        if self.resize < max(self.height, self.width):
            raise InputError(f"--resize {self.resize} is smaller than the crop {self.height}x{self.width}")

    def __call__(self, data: bytes) -> np.ndarray:
        """Decode image bytes (JPEG, PNG, anything Pillow reads) into the model's tensor."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as img:
                img = img.convert("RGB" if self.channels == 3 else "L")
                w, h = img.size
                scale = self.resize / min(w, h)
                size = (max(self.width, round(w * scale)), max(self.height, round(h * scale)))
                img = img.resize(size, Image.Resampling.BILINEAR)
                left, top = (size[0] - self.width) // 2, (size[1] - self.height) // 2
                img = img.crop((left, top, left + self.width, top + self.height))
                pixels = np.asarray(img, dtype=np.float32)
        except UnidentifiedImageError:
            raise InputError("cannot decode image: not a format Pillow reads") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise InputError(f"cannot decode image: {e}") from None
        pixels = pixels.reshape(self.height, self.width, self.channels) * np.float32(1 / 255)
        pixels = (pixels - np.float32(self.mean)) / np.float32(self.std)
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def preprocess_for(
    item_shape: tuple[int, ...],
    resize: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Preprocess:
    """The preprocessing for a model whose per-item input shape is ``item_shape`` (C, H, W)."""
    if len(item_shape) != 3 or not all(isinstance(d, int) for d in item_shape):
        raise InputError(f"image inputs need a model input of fixed shape (N, C, H, W); this one is {item_shape}")
    c, h, w = item_shape
    gray = c == 1
    return Preprocess(
        channels=c,
        height=h,
        width=w,
        resize=resize if resize is not None else round(max(h, w) / CROP_FRACTION),
        mean=tuple(mean) if mean is not None else (GRAY_MEAN if gray else IMAGENET_MEAN),
        std=tuple(std) if std is not None else (GRAY_STD if gray else IMAGENET_STD),
    )


def require_pillow() -> None:
    """Fail early, with the install line, where Pillow is missing."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise CnnrtError("reading images needs Pillow: pip install -e '.[batch]'") from None


def read_image(path: str, preprocess: Preprocess) -> np.ndarray:
    """The tensor of one image file (``cnnrt run --image``)."""
    require_pillow()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"cannot read image {path!r}: {e.strerror}") from None
    try:
        return preprocess(data)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, index i the class of output i (the order every ImageNet
    classifier's output follows)."""
    text = resources.files("cnnrt.batch").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


def class_names(num_classes: int) -> tuple[str, ...] | None:
    """Names for a classifier with ``num_classes`` outputs: ImageNet's for 1000, otherwise none."""
    return imagenet_classes() if num_classes == 1000 else None


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (scores comparable across engines and batch sizes)."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes, scores) of the ``k`` best per row, best first; ties go to the lower class index."""
    k = min(k, scores.shape[-1])
    order = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    return order.astype(np.int32), np.take_along_axis(scores, order, axis=-1)


def image_feed(session, path: str, resize: int | None = None, mean=None, std=None) -> dict[str, np.ndarray]:
    """``{input name: (1, C, H, W) tensor}`` of one image file for ``session``'s image input (the first
    input of shape (N, C, H, W))."""
    inputs = [a for a in session.get_inputs() if len(a.shape) == 4]
    if not inputs:
        raise InputError("--image needs a model with an (N, C, H, W) input")
    arg = inputs[0]
    pre = preprocess_for(tuple(arg.shape[1:]), resize, mean, std)
    return {arg.name: read_image(path, pre)[None]}


def topk_lines(output: np.ndarray, k: int) -> list[str]:
    """``k`` lines "rank class probability name" for a classifier output of one item (N = 1)."""
    if k < 1:
        return []
    logits = np.asarray(output)
    if logits.ndim != 2 or logits.shape[0] != 1:
        raise InputError(f"--topk needs a classifier output of shape (1, classes), not {list(logits.shape)}")
    names = class_names(logits.shape[1])
    classes, scores = top_k(softmax(logits), k)
    return [
        f"top{rank + 1:<3} class {c:<5d} p {s:.4f}{'  ' + names[c] if names else ''}"
        for rank, (c, s) in enumerate(zip(classes[0].tolist(), scores[0].tolist()))
    ]
