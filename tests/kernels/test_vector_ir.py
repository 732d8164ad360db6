"""vector_ir's explicit-vector loops: whole vectors plus one masked vector, at every count
around the vector width (the masked rest must neither drop nor touch elements past it); and
that microkernel's register tile really is vector FMAs."""

from __future__ import annotations

import platform
import re

import numba
import numpy as np
import pytest
from numba import njit

from cnnrt.kernels.cpu import microkernel as mk
from cnnrt.kernels.cpu.activation import act_inplace, tanh_rational
from cnnrt.kernels.cpu.llvm_ir import VECTOR_BYTES
from cnnrt.kernels.cpu.vector_ir import byte_table_run, has_vbmi, vector_run

COUNTS = [0, 1, 7, 15, 16, 17, 28, 31, 32, 33, 100]


@njit
def _run(src, s, dst, d, count, b, res, add_bias, add_res):
    vector_run(src, s, dst, d, count, b, res, add_bias, add_res)


@njit
def _tanh_scalar(o):
    for q in range(o.shape[0]):
        o[q] = tanh_rational(o[q])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("add_bias,add_res", [(False, False), (True, False), (True, True)])
def test_vector_run_at_every_count(dtype, add_bias, add_res):
    rng = np.random.default_rng(0)
    for count in COUNTS:
        src = rng.standard_normal(count + 40).astype(dtype)
        res = rng.standard_normal(count + 40).astype(dtype)
        dst = np.full(count + 40, np.nan, dtype)
        b = dtype(0.375)
        _run(src, 3, dst, 5, count, b, res, add_bias, add_res)
        want = src[3 : 3 + count].copy()
        if add_bias:
            want = want + b
        if add_res:
            want = want + res[5 : 5 + count]
        np.testing.assert_array_equal(dst[5 : 5 + count], want)
        assert np.isnan(dst[:5]).all() and np.isnan(dst[5 + count :]).all(), "stored outside the run"


def test_vector_run_copies_exactly():
    """A plain copy keeps -0.0, NaN payloads and infinities (no + 0.0 on the way)."""
    src = np.array([-0.0, np.inf, -np.inf, np.nan] * 9, np.float32)
    dst = np.zeros_like(src)
    _run(src, 0, dst, 0, src.size, np.float32(0), src, False, False)
    assert dst.tobytes() == src.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_vectors_match_the_scalar_twin_and_tanh(dtype):
    x = np.concatenate(
        [
            np.linspace(-12, 12, 20001),
            np.geomspace(1e-8, 10, 5000),
            [np.nan, np.inf, -np.inf, 0.0, -0.0, 4e-4, -4e-4, 7.99881172180175781],
        ]
    ).astype(dtype)
    for count in COUNTS + [x.size]:
        got, twin = x[:count].copy(), x[:count].copy()
        act_inplace(got, 7, dtype(0), dtype(0))
        _tanh_scalar(twin)
        np.testing.assert_array_equal(got, twin)  # same operations in the same order
    ref = np.tanh(x.astype(np.float64))
    err = np.abs(got.astype(np.float64) - ref)
    number = ~np.isnan(x)
    # Eigen's rational approximation: within 4 float32 ulps of tanh (measured max 3.5), +-Inf too
    ulp32 = np.spacing(np.abs(ref[number]).astype(np.float32)).astype(np.float64)
    assert (err[number] <= 4 * ulp32).all()
    assert np.isnan(got[np.isnan(x)]).all()


def test_tanh_on_a_strided_view_takes_the_scalar_loop():
    x = np.linspace(-3, 3, 64).astype(np.float32)
    view = x[::2]
    act_inplace(view, 7, np.float32(0), np.float32(0))
    np.testing.assert_allclose(x[::2], np.tanh(np.linspace(-3, 3, 64).astype(np.float32)[::2]), rtol=1e-6)
    np.testing.assert_array_equal(x[1::2], np.linspace(-3, 3, 64).astype(np.float32)[1::2])  # untouched


def test_tanh_inplace_from_python_computes_too():
    from cnnrt.kernels.cpu.activation import tanh_inplace

    x = np.linspace(-3, 3, 40).astype(np.float32)
    want = x.copy()
    act_inplace(want, 7, np.float32(0), np.float32(0))
    tanh_inplace(x)
    np.testing.assert_array_equal(x, want)


def test_vector_width_is_a_power_of_two_of_at_least_16_bytes():
    assert VECTOR_BYTES in (32, 64)


_MR, _NR, _TILE = mk.MR, mk.nr(np.float32), mk.tile


@njit
def _one_tile(a, b, c, bias, res, k):
    _TILE(a, 0, 1, _MR, b, 0, _NR, k, c, 0, _NR, _MR, 0, bias, 0, res, 0, np.float32(0), np.float32(0))


def test_register_tile_is_vector_fmas():
    """The float32 tile is MR x NV vectors of fused multiply-adds per reduction step (microkernel's
    doc: 8 x 32 = 16 <16 x float> FMAs with AVX-512, 6 x 16 = 12 <8 x float> with AVX2), each
    A element broadcast once: a change that scalarises the tile fails here."""
    f32 = numba.float32[::1]
    _one_tile.compile((f32, f32, f32, f32, f32, numba.int64))
    sig = _one_tile.signatures[0]
    ir, lanes = _one_tile.inspect_llvm(sig), VECTOR_BYTES // 4
    assert _NR == mk.NV * lanes
    vector_fmas = len(re.findall(rf"call <{lanes} x float> @llvm\.fma\.v{lanes}f32\(", ir))
    per_step = mk.MR * mk.NV
    # LLVM may unroll or version the reduction loop: whole copies of the step, never a part
    assert vector_fmas >= per_step and vector_fmas % per_step == 0, (vector_fmas, per_step)
    assert not re.search(r"@llvm\.fma\.f32\(", ir), "scalar fma in the register tile"
    if platform.machine() in ("x86_64", "AMD64"):
        asm = _one_tile.inspect_asm(sig)
        reg = "zmm" if VECTOR_BYTES == 64 else "ymm"
        packed = re.findall(rf"vfmadd\w+ps\s+%?{reg}", asm) or re.findall(rf"vfmadd\w+ps\s+[^\n]*{reg}", asm)
        assert len(packed) == vector_fmas, (len(packed), vector_fmas)
        assert not re.search(r"vfmadd\w+ss", asm), "scalar FMA instructions in the register tile"
        assert len(re.findall(r"vbroadcastss", asm)) * mk.NV == len(packed)  # one broadcast per A element


@njit
def _lookup(table, x, out, start, count):
    byte_table_run(table, x, out, start, count)


@pytest.mark.skipif(not has_vbmi(), reason="the CPU lacks AVX-512 VBMI (vpermi2b)")
@pytest.mark.parametrize("count", [0, 1, 63, 64, 65, 200])
def test_byte_table_lookup_reads_all_256_entries(count):
    """Codes from both halves and both quarters of each half; a masked rest; nothing past it written."""
    rng = np.random.default_rng(count)
    table = rng.integers(0, 256, 256, dtype=np.uint8)
    x = rng.integers(0, 256, count + 10, dtype=np.uint8)
    x[3 : 3 + min(count, 4)] = [0, 127, 128, 255][: min(count, 4)]
    out = np.full(count + 10, 7, np.uint8)
    _lookup(table, x, out, 3, count)
    np.testing.assert_array_equal(out[3 : 3 + count], table[x[3 : 3 + count]])
    assert (out[:3] == 7).all() and (out[3 + count :] == 7).all()
