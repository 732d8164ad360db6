"""VGG configurations A, D and E (Simonyan & Zisserman 2014), with and without BN.

3x224x224 input, five max-pool stages down to 7x7x512, then 4096-4096-1000 fully
connected layers (these hold ~124M of the ~133-144M parameters).  The _bn variants
put BatchNorm between every conv and its ReLU and, like torchvision's, keep the conv
bias (redundant before BN, but it makes Conv+BN folding handle an existing bias).
"""

from __future__ import annotations

from torch import nn

# conv widths, "M" = 2x2 max pool; VGG paper Table 1, configurations A, D and E
_CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", *[256] * 4, "M", *[512] * 4, "M", *[512] * 4, "M"],
}


def _vgg(config: str, batch_norm: bool, num_classes: int = 1000) -> nn.Module:
    layers: list[nn.Module] = []
    cin = 3
    for v in _CONFIGS[config]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers.append(nn.Conv2d(cin, v, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        cin = v
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Linear(512 * 7 * 7, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(4096, num_classes),
    )
    return nn.Sequential(nn.Sequential(*layers), classifier)


def _variant(cfg: str, batch_norm: bool, doc: str):
    def factory() -> nn.Module:
        return _vgg(cfg, batch_norm)

    factory.__doc__ = doc
    return factory


vgg11 = _variant("A", False, "VGG-11 (configuration A): 132.9M parameters.")
vgg16 = _variant("D", False, "VGG-16 (configuration D): 138.4M parameters.")
vgg19 = _variant("E", False, "VGG-19 (configuration E): 143.7M parameters.")
vgg11_bn = _variant("A", True, "VGG-11 with BatchNorm: 132.9M parameters.")
vgg16_bn = _variant("D", True, "VGG-16 with BatchNorm: 138.4M parameters.")
vgg19_bn = _variant("E", True, "VGG-19 with BatchNorm: 143.7M parameters.")
