"""The zoo's table of contents: names, input shapes and where each net is defined.

Deliberately free of torch so that ``import cnnrt.models`` and ``names()`` stay cheap;
the defining module is imported only when a net is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: ``factory`` is a function in ``models/<module>.py``."""

    name: str
    module: str
    factory: str
    input_chw: tuple[int, int, int]
    summary: str


_IMAGENET = (3, 224, 224)

_ENTRIES = [
    ZooEntry("lenet5", "lenet", "lenet5", (1, 32, 32), "LeNet-5 (tanh, average-pool subsampling)"),
    ZooEntry("alexnet", "alexnet", "alexnet", _IMAGENET, "AlexNet, two-tower grouped convs, LRN"),
    ZooEntry("zfnet", "alexnet", "zfnet", _IMAGENET, "ZFNet, 7x7/2 first layer, LRN"),
    ZooEntry("vgg11", "vgg", "vgg11", _IMAGENET, "VGG configuration A"),
    ZooEntry("vgg16", "vgg", "vgg16", _IMAGENET, "VGG configuration D"),
    ZooEntry("vgg19", "vgg", "vgg19", _IMAGENET, "VGG configuration E"),
    ZooEntry("vgg11_bn", "vgg", "vgg11_bn", _IMAGENET, "VGG A with BatchNorm"),
    ZooEntry("vgg16_bn", "vgg", "vgg16_bn", _IMAGENET, "VGG D with BatchNorm"),
    ZooEntry("vgg19_bn", "vgg", "vgg19_bn", _IMAGENET, "VGG E with BatchNorm"),
    ZooEntry("googlenet", "googlenet", "googlenet", _IMAGENET, "Inception v1, LRN, no aux heads"),
    ZooEntry("resnet18", "resnet", "resnet18", _IMAGENET, "ResNet-18, basic blocks"),
    ZooEntry("resnet34", "resnet", "resnet34", _IMAGENET, "ResNet-34, basic blocks"),
    ZooEntry("resnet50", "resnet", "resnet50", _IMAGENET, "ResNet-50, bottlenecks"),
    ZooEntry("resnet101", "resnet", "resnet101", _IMAGENET, "ResNet-101, bottlenecks"),
    ZooEntry("densenet121", "densenet", "densenet121", _IMAGENET, "DenseNet-121 (BC, k=32)"),
    ZooEntry("squeezenet1_1", "squeezenet", "squeezenet1_1", _IMAGENET, "SqueezeNet 1.1"),
    ZooEntry("shufflenet", "shufflenet", "shufflenet", _IMAGENET, "ShuffleNet v1, g=3, 1.0x"),
    ZooEntry("mobilenet_v1", "mobilenet", "mobilenet_v1", _IMAGENET, "MobileNet v1 1.0"),
    ZooEntry("mobilenet_v2", "mobilenet", "mobilenet_v2", _IMAGENET, "MobileNet v2 1.0, ReLU6"),
    ZooEntry("xception", "xception", "xception", (3, 299, 299), "Xception, middle flow 4x"),
    ZooEntry("efficientnet_b0", "efficientnet", "efficientnet_b0", _IMAGENET, "EfficientNet-B0"),
    ZooEntry("segnet", "segnet", "segnet", (3, 128, 128), "encoder-decoder, 21-class logits"),
    ZooEntry("style_transfer", "style_transfer", "style_transfer", (3, 64, 64), "fast style transfer, InstanceNorm"),
    ZooEntry("espcn", "espcn", "espcn", (1, 64, 64), "ESPCN 3x super-resolution, PixelShuffle"),
    ZooEntry("convnext_tiny", "convnext", "convnext_tiny", _IMAGENET, "ConvNeXt-T, LayerNorm, GELU, layer scale"),
    ZooEntry("eca_resnet18", "eca_resnet", "eca_resnet18", _IMAGENET, "ResNet-18 with efficient channel attention"),
    ZooEntry("mobilenet_v3_small", "mobilenet_v3", "mobilenet_v3_small", _IMAGENET, "MobileNet v3 small, SE"),
    ZooEntry("mobilenet_v3_large", "mobilenet_v3", "mobilenet_v3_large", _IMAGENET, "MobileNet v3 large, SE"),
    ZooEntry("shufflenet_v2", "shufflenet_v2", "shufflenet_v2_x1_0", _IMAGENET, "ShuffleNet v2 1.0x, split + shuffle"),
    ZooEntry("mnasnet1_0", "mnasnet", "mnasnet1_0", _IMAGENET, "MnasNet-A 1.0, 3x3/5x5 inverted residuals"),
    ZooEntry("regnet_y_400mf", "regnet", "regnet_y_400mf", _IMAGENET, "RegNetY-400MF, group convs, SE"),
    ZooEntry("mixnet_s", "mixnet", "mixnet_s", _IMAGENET, "MixNet-S-style, mixed depthwise kernels, SiLU, SE"),
    ZooEntry("lraspp_mobilenet_v3", "lraspp", "lraspp_mobilenet_v3_large", _IMAGENET, "LR-ASPP on MobileNet v3 large"),
]

ZOO: dict[str, ZooEntry] = {e.name: e for e in _ENTRIES}


class UnknownModelError(KeyError):
    """A name that is not in the zoo (a KeyError whose message is not quoted)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def entry(name: str) -> ZooEntry:
    """Look a zoo model up by name; the error lists the known names."""
    try:
        return ZOO[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(ZOO))
        raise UnknownModelError(f"unknown zoo model {name!r}; known: {known}") from None


def input_shape(name: str, batch: int = 1) -> tuple[int, ...]:
    """NCHW input shape of zoo model ``name`` for the given batch size."""
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    return (batch, *entry(name).input_chw)


def sample_input(name: str, batch: int = 1, seed: int = 0) -> np.ndarray:
    """Deterministic standard-normal float32 input of the model's shape."""
    import numpy as np

    shape = input_shape(name, batch)
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
