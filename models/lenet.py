"""LeNet-5 (LeCun et al. 1998) on 1x32x32 input.

C1 6@5x5 -> S2 avg-pool 2 -> C3 16@5x5 -> S4 avg-pool 2 -> C5 120@5x5 (a conv that
leaves 1x1) -> F6 84 -> 10 outputs.  tanh throughout; the paper's scaled tanh, trainable
subsampling coefficients, sparse C3 connection table and RBF output layer are replaced
by their modern equivalents (plain tanh, average pooling, full C3, linear output).
"""

from __future__ import annotations

from torch import nn


def lenet5(num_classes: int = 10) -> nn.Module:
    """LeNet-5: 61.7k parameters, output (N, 10)."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5),  # 32 -> 28
        nn.Tanh(),
        nn.AvgPool2d(2),  # 28 -> 14
        nn.Conv2d(6, 16, 5),  # 14 -> 10
        nn.Tanh(),
        nn.AvgPool2d(2),  # 10 -> 5
        nn.Conv2d(16, 120, 5),  # 5 -> 1
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(120, 84),
        nn.Tanh(),
        nn.Linear(84, num_classes),
    )
