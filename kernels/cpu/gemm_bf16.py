"""Gemm's product in bf16 (``precision="bf16"`` on a Gemm with constant B): a fully connected
layer is a 1x1 conv, so it runs the bf16 blocked conv (conv_blocked.py, its register tile on
``vdpbf16ps``) with the rows of A as the pixels of one image. A batch-1 head is a stream
through B, so bf16 weights halve its cost; with the rows as one image's pixels, each weight
panel is read once for all rows (a task covers a panel and every row).

A (M, K) is copied into the conv's blocked input (K/16, M, 16) and the product read back
from its blocked output (ceil(N/16), M, 16): both are M x K and M x N floats, small beside
B's K x N. Gemm's alpha, C and activation stay its float32 epilogue (gemm.py).
"""

from __future__ import annotations

import numpy as np

from cnnrt.kernels.conv_spec import ConvSpec
from cnnrt.kernels.cpu.conv_blocked import build_blocked_conv
from cnnrt.kernels.cpu.conv_common import block_size


def bf16_gemm_reason(k: int, trans_a: bool, dtype) -> str:
    """Why a Gemm with constant B cannot run bf16 ("" when it can)."""
    lanes = block_size(np.dtype(np.float32))
    if np.dtype(dtype) != np.float32:
        return "bf16 Gemm takes float32 A"
    if trans_a:
        return "bf16 Gemm takes A untransposed"
    if k % lanes:
        return f"bf16 Gemm needs K in whole blocks of {lanes} (channel pairs of the blocked conv): K={k}"
    return ""


def bf16_gemm_runner(b_nk: np.ndarray, m: int, n: int, k: int, owner):
    """mm(x, out): out (M, N) float32 = x (M, K) @ b_nk (N, K)^T on bf16 dot products."""
    why = bf16_gemm_reason(k, False, b_nk.dtype)
    if why:
        raise ValueError(why)
    lanes = block_size(np.dtype(np.float32))
    spec = ConvSpec(1, k, 1, m, n, 1, m, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, "float32")
    weights = np.ascontiguousarray(b_nk, np.float32).reshape(n, k, 1, 1)
    conv = build_blocked_conv(spec, weights, None, True, owner, "bf16")
    blocks = -(-n // lanes)
    xin = np.empty((k // lanes, m, lanes), np.float32)
    prod = np.empty((blocks, m, lanes), np.float32)

    def mm(x, out):
        np.copyto(xin, x.reshape(m, k // lanes, lanes).transpose(1, 0, 2))
        conv([xin, None, None, None], [prod])
        np.copyto(out, prod.transpose(1, 0, 2).reshape(m, blocks * lanes)[:, :n])

    return mm
