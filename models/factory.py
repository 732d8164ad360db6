"""Build zoo nets with deterministic random weights and believable BatchNorm statistics.

The weights are random but reproducible: every draw happens under
``torch.manual_seed(crc32(name))`` inside ``torch.random.fork_rng`` (the caller's RNG
state is left alone).  Random BatchNorm statistics make deep nets explode, so the
running statistics are measured on one fixed random batch, in eval mode, one layer at a
time (each layer sees its predecessors' already-final statistics), and then perturbed so
that they are not exactly the batch statistics of any input.  In the same pass, conv
biases are centred (data-dependent init) so that nets without BN do not drown the
input-dependent part of their output under a constant offset.
"""

from __future__ import annotations

import importlib
import math
import zlib

import torch
from torch import nn

from .layers import BranchEndBatchNorm
from .registry import entry

# How far the stored statistics are pushed away from the measured ones.
_MEAN_SHIFT = 0.1  # in units of the channel's standard deviation
_LOG_VAR_SPREAD = 0.3  # running_var *= exp(U(-s, s)), symmetric so the scale does not drift
_BIAS_NOISE = 0.1  # centred conv biases keep this much random offset (outputs have std 1)
_MIN_CENTRING_PIXELS = 16  # do not centre 1x1 maps: two samples per channel say nothing
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
        calibrate(model, torch.randn(_CALIBRATION_BATCH, *e.input_chw))
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
    """He-normal weights (ReLU gain), small non-zero biases, BN gamma U(0.5, 1.5) and
    beta N(0, 0.1); gamma U(0.1, 0.5) for BNs closing a residual branch.

    Non-zero biases and non-unit BN affine parameters matter: the engine's folding passes
    must be exercised with values that would expose a mistake.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / _fan_in(m)))
            if m.bias is not None:
                nn.init.normal_(m.bias, 0.0, 0.05)
        elif isinstance(m, nn.BatchNorm2d):
            if isinstance(m, BranchEndBatchNorm):
                nn.init.uniform_(m.weight, 0.1, 0.5)
            else:
                nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, 0.0, 0.1)


def calibrate(model: nn.Module, x: torch.Tensor) -> None:
    """Calibrate BN running statistics and centre conv biases on the batch ``x``.

    One eval-mode forward pass with hooks that fire in execution order, so each layer
    is calibrated on what the finished layers before it actually produce:
    a pre-hook on each BatchNorm2d stores its input's per-channel mean and variance,
    perturbed; a forward hook on each biased conv (mostly the convs not followed by
    BN; for those that are, BN undoes the change) whose output map has at least ``_MIN_CENTRING_PIXELS`` pixels rescales its
    weights to unit output std and sets its bias so each channel's mean output is a
    small random offset (N(0, 0.1)) instead of whatever the random weights produced.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d) and m.bias is not None]

    def bn_hook(bn: nn.BatchNorm2d, args: tuple[torch.Tensor, ...]) -> None:
        (inp,) = args
        mean = inp.mean(dim=(0, 2, 3))
        var = inp.var(dim=(0, 2, 3), unbiased=False).clamp_min(1e-4)
        noise = torch.randn(mean.shape)
        bn.running_mean.copy_(mean + _MEAN_SHIFT * var.sqrt() * noise)
        scale = torch.empty_like(var).uniform_(-_LOG_VAR_SPREAD, _LOG_VAR_SPREAD).exp()
        bn.running_var.copy_(var * scale)
        bn.num_batches_tracked.fill_(1)

    def conv_hook(conv: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor | None:
        if out.shape[2] * out.shape[3] < _MIN_CENTRING_PIXELS:
            return None
        # Centring alone would shrink activations layer by layer (a post-ReLU input's
        # mean no longer contributes), so also rescale to unit std, LSUV-style; one
        # scalar per layer, so the channels keep their random relative scales.
        mean = out.mean(dim=(0, 2, 3))
        scale = 1.0 / (out - mean[:, None, None]).std().clamp_min(1e-6)
        offset = _BIAS_NOISE * torch.randn(mean.shape)
        conv.weight.mul_(scale)
        conv.bias.copy_((conv.bias - mean) * scale + offset)
        return (out - mean[:, None, None]) * scale + offset[:, None, None]

    handles = [bn.register_forward_pre_hook(bn_hook) for bn in bns]
    handles += [c.register_forward_hook(conv_hook) for c in convs]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
