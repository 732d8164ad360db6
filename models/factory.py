"""Build zoo nets with deterministic random weights and believable BatchNorm statistics.

The weights are random but reproducible: every draw happens under
``torch.manual_seed(crc32(name))`` inside ``torch.random.fork_rng`` (the caller's RNG
state is left alone).  Random BatchNorm statistics make deep nets explode, so the
running statistics are measured on one fixed random batch, in eval mode, one layer at a
time (each layer sees its predecessors' already-final statistics), and then perturbed so
that they are not exactly the batch statistics of any input.
"""

from __future__ import annotations

import importlib
import math
import zlib

import torch
from torch import nn

from .registry import entry

# How far the stored statistics are pushed away from the measured ones.
_MEAN_SHIFT = 0.1  # in units of the channel's standard deviation
_LOG_VAR_SPREAD = 0.3  # running_var *= exp(U(-s, s)), symmetric so the scale does not drift
_CALIBRATION_BATCH = 2


def seed_of(name: str) -> int:
    """The stable per-model seed (crc32 of the name; Python's hash() is salted)."""
    return zlib.crc32(name.encode("utf-8"))


def build(name: str) -> nn.Module:
    """Instantiate zoo model ``name`` in eval mode with deterministic weights."""
    e = entry(name)
    factory = getattr(importlib.import_module(f".{e.module}", __package__), e.factory)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed_of(name))
        model = factory()
        init_weights(model)
        model.eval()
        calibrate_batchnorm(model, torch.randn(_CALIBRATION_BATCH, *e.input_chw))
    return model


def _fan_in(m: nn.Module) -> float:
    w = m.weight
    if isinstance(m, nn.ConvTranspose2d):
        # weight is (cin, cout/groups, kh, kw); each output pixel sees about
        # cin * kh * kw / (sh * sw) input taps.
        kh, kw = w.shape[2:]
        return w.shape[0] * kh * kw / (m.stride[0] * m.stride[1])
    return w[0].numel()  # cin/groups * kh * kw for convs, in_features for Linear


def init_weights(model: nn.Module) -> None:
    """He-normal weights (ReLU gain), small non-zero biases, BN affine U(0.5, 1.5) / N(0, .1).

    Non-zero biases and non-unit BN affine parameters matter: the engine's folding passes
    must be exercised with values that would expose a mistake.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / _fan_in(m)))
            if m.bias is not None:
                nn.init.normal_(m.bias, 0.0, 0.05)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, 0.0, 0.1)


def calibrate_batchnorm(model: nn.Module, x: torch.Tensor) -> int:
    """Set every BatchNorm2d's running stats from ``x``, then perturb them.

    Runs one eval-mode forward pass; a pre-hook on each BN measures its input's
    per-channel mean and variance and stores them (perturbed) before the layer uses them,
    so later layers are calibrated on what the final model actually feeds them.
    Returns the number of BN layers calibrated.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return 0

    def hook(bn: nn.BatchNorm2d, args: tuple[torch.Tensor, ...]) -> None:
        (inp,) = args
        mean = inp.mean(dim=(0, 2, 3))
        var = inp.var(dim=(0, 2, 3), unbiased=False).clamp_min(1e-4)
        noise = torch.randn(mean.shape)
        bn.running_mean.copy_(mean + _MEAN_SHIFT * var.sqrt() * noise)
        scale = torch.empty_like(var).uniform_(-_LOG_VAR_SPREAD, _LOG_VAR_SPREAD).exp()
        bn.running_var.copy_(var * scale)
        bn.num_batches_tracked.fill_(1)

    handles = [bn.register_forward_pre_hook(hook) for bn in bns]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return len(bns)


def parameter_count(model: nn.Module) -> int:
    """Number of learnable parameters (BN running statistics not counted)."""
    return sum(p.numel() for p in model.parameters())
