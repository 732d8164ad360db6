"""Launch geometry for every CUDA kernel: the one place block, grid and tile sizes come from.

Builders read :func:`current` when a session is built and bake the numbers into the launch
closures, so a kernel's geometry never changes between runs of one plan.

On a real GPU the defaults are the usual ones (256-thread blocks; GEMM blocks of 16x16
threads, each thread 4x4 outputs, so 64x64 output tiles with K staged 8 deep). In
numba's CUDA simulator every CUDA thread is a Python thread, so the defaults shrink to a
few tiny blocks: still more than one block and more than one tile per launch, so the
grid-stride loops, tile edges and multi-block paths are exercised, yet a launch costs
milliseconds rather than seconds.

Override with environment variables (read once, at first use) or :func:`override`:

``CNNRT_CUDA_BLOCK``       threads per block of 1-D grid-stride kernels
``CNNRT_CUDA_MAX_BLOCKS``  most blocks a 1-D grid-stride launch uses
``CNNRT_CUDA_TILE_THREADS``  a tiled GEMM block is this many threads squared
``CNNRT_CUDA_MICRO``       outputs per thread along each tile edge (register blocking)
``CNNRT_CUDA_TILE_K``      K depth staged in shared memory per step
``CNNRT_CUDA_MAX_TILE_BLOCKS``  most blocks a tiled launch uses
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class LaunchConfig:
    block: int  # threads per block for 1-D grid-stride kernels
    max_blocks: int  # cap on blocks of a 1-D grid-stride launch (threads loop over the rest)
    tile_threads: int  # a tiled (GEMM / implicit-GEMM) block is tile_threads x tile_threads threads
    micro: int  # each of those threads computes micro x micro outputs (register blocking)
    tile_k: int  # depth of the K slice staged in shared memory per step
    max_tile_blocks: int  # cap on blocks of a tiled launch (blocks loop over the rest)

    @property
    def tile(self) -> int:
        """Edge of the output tile one block computes (tile_threads * micro)."""
        return self.tile_threads * self.micro

    def grid_1d(self, n: int) -> tuple[int, int]:
        """(blocks, threads) for a grid-stride loop over ``n`` items."""
        blocks = max(1, min(self.max_blocks, -(-n // self.block)))
        return blocks, self.block

    def grid_tiles(self, ntiles: int) -> tuple[int, tuple[int, int]]:
        """(blocks, (tile_threads, tile_threads)) for a tile-stride loop over ``ntiles`` tiles."""
        return max(1, min(self.max_tile_blocks, ntiles)), (self.tile_threads, self.tile_threads)


GPU_DEFAULT = LaunchConfig(block=256, max_blocks=4096, tile_threads=16, micro=4, tile_k=8, max_tile_blocks=65535)
# Simulator: 4-thread tiled blocks of 8x8 outputs, a few blocks, so tests on 8..100-wide
# problems still span several tiles, several K steps and the tile-stride loop.
SIMULATOR_DEFAULT = LaunchConfig(block=16, max_blocks=2, tile_threads=2, micro=4, tile_k=8, max_tile_blocks=3)

_ENV = {
    "block": "CNNRT_CUDA_BLOCK",
    "max_blocks": "CNNRT_CUDA_MAX_BLOCKS",
    "tile_threads": "CNNRT_CUDA_TILE_THREADS",
    "micro": "CNNRT_CUDA_MICRO",
    "tile_k": "CNNRT_CUDA_TILE_K",
    "max_tile_blocks": "CNNRT_CUDA_MAX_TILE_BLOCKS",
}

_current: LaunchConfig | None = None


def _validate(cfg: LaunchConfig) -> LaunchConfig:
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"CUDA launch config {f.name} must be a positive int, got {v!r}")
    if cfg.tile_threads**2 > 1024 or cfg.block > 1024:
        raise ValueError(f"CUDA blocks are limited to 1024 threads: block={cfg.block}, tile_threads={cfg.tile_threads}")
    return cfg


def _from_env() -> LaunchConfig:
    from .device import is_simulator

    base = SIMULATOR_DEFAULT if is_simulator() else GPU_DEFAULT
    changes = {}
    for field_name, var in _ENV.items():
        raw = os.environ.get(var)
        if raw:
            try:
                changes[field_name] = int(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not an integer") from None
    return _validate(dataclasses.replace(base, **changes))


def current() -> LaunchConfig:
    """The launch geometry builders use now."""
    global _current
    if _current is None:
        _current = _from_env()
    return _current


@contextlib.contextmanager
def override(**changes: int) -> Iterator[LaunchConfig]:
    """Temporarily change fields of the launch config (for sessions built inside the block)."""
    global _current
    old = current()
    _current = _validate(dataclasses.replace(old, **changes))
    try:
        yield _current
    finally:
        _current = old
