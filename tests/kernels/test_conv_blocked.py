"""The channel-blocked conv (conv_blocked.py) and its tile (microkernel.tile_blocked) against
float64 numpy: blocked and NCHW inputs, strides, dilation, padding, ragged pixel rows
(OW not a multiple of MR), an odd last channel block (ONE_VECTOR), reductions longer than
a chunk, batch, every epilogue. Bounds from reference.sum_bound, not tuned."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from kernel_helpers import U32, assert_within, sum_bound  # noqa: E402
from reference import activation_ref, conv2d_reference, conv_out  # noqa: E402

from cnnrt.core.layout import block as to_blocked  # noqa: E402
from cnnrt.core.layout import unblock as from_blocked  # noqa: E402
from cnnrt.core.ops import ACTIVATIONS  # noqa: E402
from cnnrt.kernels.conv_spec import ConvSpec  # noqa: E402
from cnnrt.kernels.cpu import conv_blocked as cb  # noqa: E402
from cnnrt.kernels.cpu import conv_blocked_bf16  # noqa: E402
from cnnrt.kernels.cpu import conv_blocked_plan as plan  # noqa: E402
from cnnrt.kernels.cpu.conv_algorithm import choose  # noqa: E402
from cnnrt.kernels.cpu.conv_common import block_size  # noqa: E402
from cnnrt.kernels.cpu.conv_stem import build_stem_conv  # noqa: E402
from cnnrt.kernels.cpu.llvm_ir import VECTOR_BYTES  # noqa: E402
from cnnrt.kernels.cpu.winograd import build_winograd  # noqa: E402
from cnnrt.kernels.registry import bound  # noqa: E402


def run_blocked(
    x,
    wt,
    b,
    r,
    s,
    p,
    d,
    act="none",
    alpha=0.0,
    beta=0.0,
    blocked_input=True,
    winograd=False,
    precision="f32",
    stem=False,
    amx=False,
    bf16_in=False,
    bf16_out=False,
    bf16_res=False,
):
    """The blocked conv of x (NCHW float arrays in and out); ``bf16_in`` / ``bf16_out`` /
    ``bf16_res`` hand it its input / take its output / hand it its residual as a bf16
    activation (ml_dtypes bfloat16, blocked)."""
    n, c, h, w = x.shape
    m, _, kh, kw = wt.shape
    lanes = block_size(x.dtype)
    oh, ow = conv_out(h, kh, s, d, p, p), conv_out(w, kw, s, d, p, p)
    spec = ConvSpec(
        n,
        c,
        h,
        w,
        m,
        oh,
        ow,
        kh,
        kw,
        s,
        s,
        p,
        p,
        p,
        p,
        d,
        d,
        1,
        str(x.dtype),
        b is not None,
        r is not None,
        ACTIVATIONS[act],
        alpha,
        beta,
    )
    if winograd:
        from cnnrt.kernels.cpu.winograd import build_winograd

        run = build_winograd(spec, wt, b, lanes)
    elif stem:
        run = build_stem_conv(spec, wt, b, bf16_out=bf16_out)
    elif amx:
        from cnnrt.kernels.cpu.conv_amx import build_amx_conv

        run = build_amx_conv(spec, wt, b, blocked_input)
    else:
        run = cb.build_blocked_conv(spec, wt, b, blocked_input, precision=precision, bf16_in=bf16_in, bf16_out=bf16_out)
    xin = to_blocked(x, lanes) if blocked_input else x
    if bf16_in:
        xin = xin.astype(ml_dtypes.bfloat16)
    out = np.full((n, -(-m // lanes), oh, ow, lanes), np.nan, ml_dtypes.bfloat16 if bf16_out else x.dtype)
    rin = None if r is None else to_blocked(r, lanes)
    if bf16_res:
        rin = rin.astype(ml_dtypes.bfloat16)
    run([xin, wt, b, rin], [out])
    return from_blocked(out.astype(x.dtype))


# (N, C, H, W, M, kh, stride, pad, dilation)
CASES = {
    "3x3": (1, 32, 9, 11, 48, 3, 1, 1, 1),  # ragged rows (11 = 8 + 3), odd last block
    "3x3_long_k": (2, 48, 6, 7, 32, 3, 1, 1, 1),  # 27 taps: several chunks in test_reduction_in_chunks
    "3x3_s2": (1, 16, 12, 13, 32, 3, 2, 1, 1),
    "5x5_d2": (1, 16, 13, 12, 16, 5, 1, 4, 2),
    "1x1": (3, 64, 5, 6, 96, 1, 1, 0, 1),  # in place, an image's pixels as one row
    "1x1_column_blocks": (1, 16, 12, 12, 32, 1, 1, 0, 1),  # 144 pixels cut into tasks
    "1x1_s2": (2, 32, 9, 9, 32, 1, 2, 0, 1),
    "7x7_s2": (1, 16, 19, 20, 32, 7, 2, 3, 1),
    "1x1_s6_narrow": (1, 16, 31, 31, 16, 1, 6, 0, 1),  # 16-pixel tiles over several output rows
    "3x3_7x7_batch": (3, 32, 7, 7, 64, 3, 1, 1, 1),  # 49 pixels: 12 tiles across row ends + 1
}


def _data(case, dtype, seed, nchw_c=None):
    n, c, h, w, m, k, s, p, d = case
    c = nchw_c or c
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((m, c, k, k)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    r = rng.standard_normal((n, m, conv_out(h, k, s, d, p, p), conv_out(w, k, s, d, p, p))).astype(dtype)
    return x, wt, b, r


def _check(x, wt, b, r, s, p, d, act, alpha, beta, got):
    pre = conv2d_reference(x, wt, b, (s, s), (p,) * 4, (d, d), 1)
    mag = conv2d_reference(np.abs(x), np.abs(wt), np.abs(b), (s, s), (p,) * 4, (d, d), 1)
    if r is not None:
        pre, mag = pre + r, mag + np.abs(r)
    ref = activation_ref(pre, act, alpha, beta)
    k = x.shape[1] * wt.shape[2] * wt.shape[3] + 2
    bound = sum_bound(k, mag, ref, act, alpha) * (1 if x.dtype == np.float32 else 1e-8)
    assert_within(got, ref, bound, act)


@pytest.mark.parametrize("act", ["none", "Relu", "Clip", "Sigmoid", "SiLU", "HardSwish"])
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("name", list(CASES))
def test_blocked_conv(name, residual, act):
    case = CASES[name]
    n, c, h, w, m, k, s, p, d = case
    x, wt, b, r = _data(case, np.float32, seed=len(name))
    r = r if residual else None
    alpha, beta = {"Clip": (-0.5, 0.5)}.get(act, (0.0, 0.0))
    got = run_blocked(x, wt, b, r, s, p, d, act, alpha, beta)
    _check(x, wt, b, r, s, p, d, act, alpha, beta, got)


@pytest.mark.parametrize("name", ["3x3", "7x7_s2", "1x1_s2"])
def test_blocked_conv_from_nchw_input(name):
    """Stems: 3 input channels, not a whole block, read from NCHW."""
    n, c, h, w, m, k, s, p, d = CASES[name]
    x, wt, b, r = _data(CASES[name], np.float32, seed=3, nchw_c=3)
    got = run_blocked(x, wt, b, None, s, p, d, "Relu", blocked_input=False)
    _check(x, wt, b, None, s, p, d, "Relu", 0.0, 0.0, got)


@pytest.mark.parametrize("act", ["none", "SiLU"])
def test_reduction_in_chunks(monkeypatch, act):
    """A reduction longer than a chunk of weights (chunks made small here: 2 and 4 taps of
    the 27): later chunks accumulate into the stored tile, the bias, residual and activation
    once, after the last."""
    name = "3x3_long_k"
    n, c, h, w, m, k, s, p, d = CASES[name]
    x, wt, b, r = _data(CASES[name], np.float32, seed=21)
    for taps in (2, 4):
        monkeypatch.setattr(cb, "_B_CHUNK_BYTES", taps * 16 * 32 * 4)  # kstep 16, 2 blocks of 16
        got = run_blocked(x, wt, b, r, s, p, d, act)
        _check(x, wt, b, r, s, p, d, act, 0.0, 0.0, got)


# 3-channel 3x3 stems (conv_stem.py): (N, C, H, W, M, kh, stride, pad, dilation)
STEMS = {
    "s2_p1": (1, 3, 16, 18, 16, 3, 2, 1, 1),  # the mobile nets' stem, 8x9 outputs
    "s2_p1_odd_batch": (2, 3, 17, 13, 24, 3, 2, 1, 1),  # 7 output columns: a ragged group; M past 16
    "s1_p0": (1, 3, 9, 11, 32, 3, 1, 0, 1),  # read in place, two channel blocks
    "s1_p2_d2": (1, 3, 10, 9, 16, 3, 1, 2, 2),  # dilation
    "s3_p1": (1, 3, 20, 22, 16, 3, 3, 1, 1),
}


@pytest.mark.parametrize("act", ["none", "Relu", "Clip", "HardSwish", "SiLU", "Sigmoid"])
@pytest.mark.parametrize("name", list(STEMS))
def test_stem_conv(name, act):
    """The stem kernel against float64 numpy, also for two blocks of outputs (an override: the
    choice stops at one); channels past M (24 -> 32) are the zero-weight conv: 0 after every
    activation that keeps 0 (block_layout keeps the others off padding)."""
    case = STEMS[name]
    n, c, h, w, m, k, s, p, d = case
    x, wt, b, r = _data(case, np.float32, seed=len(name) + 40)
    r = r if act in ("none", "HardSwish") else None  # residual with an in-register and a stored activation
    alpha, beta = {"Clip": (-0.5, 0.5)}.get(act, (0.0, 0.0))
    got = run_blocked(x, wt, b, r, s, p, d, act, alpha, beta, blocked_input=False, stem=True)
    _check(x, wt, b, r, s, p, d, act, alpha, beta, got[:, :m])
    if act != "Sigmoid":
        assert (got[:, m:] == 0).all()


@pytest.mark.parametrize("act", ["none", "Clip", "HardSwish", "SiLU"])
@pytest.mark.parametrize("name", ["s2_p1", "s1_p0", "s3_p1"])
def test_stem_bf16_output_is_the_float32_one_rounded(name, act):
    """A bf16 output (passes/precision.py: a stem read by bf16 readers only) is the float32
    output, activation included, rounded to nearest even, bit for bit."""
    case = STEMS[name]
    n, c, h, w, m, k, s, p, d = case
    x, wt, b, _ = _data(case, np.float32, seed=len(name) + 41)
    alpha, beta = {"Clip": (0.0, 6.0)}.get(act, (0.0, 0.0))
    f32 = run_blocked(x, wt, b, None, s, p, d, act, alpha, beta, blocked_input=False, stem=True)
    got = run_blocked(x, wt, b, None, s, p, d, act, alpha, beta, blocked_input=False, stem=True, bf16_out=True)
    want = f32.astype(ml_dtypes.bfloat16).astype(np.float32)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("act", ["none", "Relu", "Clip", "SiLU"])
@pytest.mark.parametrize("blocked_input", [False, True])
def test_float32_tile_bf16_output_is_the_float32_one_rounded(blocked_input, act):
    """The float32 register tile storing a bf16 output (passes/precision.py: SqueezeNet's and
    MobileNetV2's 3x3 stems under bf16): the float32 output, activation included, rounded to
    nearest even at the store, bit for bit."""
    case = (2, 3 if not blocked_input else 16, 15, 14, 32, 3, 2, 1, 1)
    n, c, h, w, m, k, s, p, d = case
    x, wt, b, _ = _data(case, np.float32, seed=7)
    alpha, beta = {"Clip": (0.0, 6.0)}.get(act, (0.0, 0.0))
    args = (x, wt, b, None, s, p, d, act, alpha, beta, blocked_input)
    f32 = run_blocked(*args)
    got = run_blocked(*args, bf16_out=True)
    want = f32.astype(ml_dtypes.bfloat16).astype(np.float32)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_stem_bf16_output_refuses_padding_lanes_and_residuals():
    case = STEMS["s2_p1_odd_batch"]  # 24 channels: the last block has padding lanes
    n, c, h, w, m, k, s, p, d = case
    x, wt, b, r = _data(case, np.float32, seed=3)
    with pytest.raises(ValueError, match="whole blocks"):
        run_blocked(x, wt, b, None, s, p, d, blocked_input=False, stem=True, bf16_out=True)
    case = STEMS["s2_p1"]
    n, c, h, w, m, k, s, p, d = case
    x, wt, b, r = _data(case, np.float32, seed=3)
    with pytest.raises(ValueError, match="no residual"):
        run_blocked(x, wt, b, r, s, p, d, blocked_input=False, stem=True, bf16_out=True)


def test_stem_is_chosen_for_mobile_stems_only():
    def algo(c=3, k=3, m=16, blocked=False, dtype="float32"):
        spec = ConvSpec(1, c, 224, 224, m, 112, 112, k, k, 2, 2, 1, 1, 1, 1, 1, 1, 1, dtype)
        return choose(spec, "BlockedConv", blocked_input=blocked)[0]

    assert algo() == algo(m=8) == "stem"
    # AVX-512 keeps one block's weights in registers: at 32 outputs that was no faster; AVX2's
    # two-block groups win up to 64
    wide = "direct" if VECTOR_BYTES == 64 else "stem"
    assert algo(m=24) == algo(m=32) == algo(m=64) == wide
    assert algo(m=72) == algo(k=7) == algo(c=16, blocked=True) == algo(dtype="float64") == "direct"


def test_blocked_conv_float64_and_no_bias():
    case = CASES["3x3"]
    n, c, h, w, m, k, s, p, d = case
    x, wt, _, r = _data(case, np.float64, seed=5)
    got = run_blocked(x, wt, None, r, s, p, d, "Relu")
    assert got.dtype == np.float64
    _check(x, wt, np.zeros(m), r, s, p, d, "Relu", 0.0, 0.0, got)


def test_blocked_conv_keeps_nan_through_relu():
    case = CASES["3x3"]
    n, c, h, w, m, k, s, p, d = case
    x, wt, b, _ = _data(case, np.float32, seed=9)
    x[0, 5, 4, 6] = np.nan
    got = run_blocked(x, wt, b, None, s, p, d, "Relu")
    # the NaN reaches every output whose 3x3 window covers (4, 6), in every channel
    assert np.isnan(got[0, :, 3:6, 5:8]).all()
    assert np.isnan(got).sum() == m * 9


@pytest.mark.parametrize("act", ["Relu", "Sigmoid"])
@pytest.mark.parametrize("shape", [(2, 32, 9, 11, 48), (1, 16, 8, 8, 32), (1, 16, 8, 8, 36)])
def test_blocked_winograd(shape, act):
    """Winograd F(4x4, 3x3) on blocked tensors (winograd.py with lanes): tiles hanging past
    the output, residual, M not whole blocks (a cropped conv's: the last block's real lanes
    computed too, its padding lanes 0); its error bound is test_winograd.py's (transform
    magnitudes)."""
    from test_winograd import _gamma, winograd_reference

    n, c, h, w, m = shape
    x, wt, b, r = _data((n, c, h, w, m, 3, 1, 1, 1), np.float32, seed=11)
    got = run_blocked(x, wt, b, r, 1, 1, 1, act, winograd=True)
    assert (got[:, m:] == 0).all()
    got = got[:, :m]
    pre = conv2d_reference(x, wt, b, (1, 1), (1,) * 4, (1, 1), 1) + r
    ref = activation_ref(pre, act)
    mag = winograd_reference(x, wt, (1,) * 4, absolute=True) + np.abs(b)[None, :, None, None] + np.abs(r)
    # Relu and Sigmoid are 1-Lipschitz: the pre-activation bound holds after them (+ evaluation)
    assert_within(got, ref, _gamma(c + 17) * mag + 4 * U32 * np.abs(ref), act)


def test_blocked_conv_rejects_partial_input_blocks():
    lanes = block_size(np.float32)
    spec = ConvSpec(1, lanes + 1, 4, 4, lanes, 4, 4, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="whole blocks"):
        cb.build_blocked_conv(spec, np.zeros((lanes, lanes + 1, 1, 1), np.float32), None, True)


@pytest.mark.parametrize("m", [8, 24, 40, 56, 1000 % 64, 72, 104, 208])
def test_blocked_conv_output_channels_past_whole_blocks(m):
    """M not whole blocks (SqueezeNet's 1000 classes): the last block's extra channels come
    from zero weights and bias (0 after Relu); the first M are the conv. 72, 104 and 208 (5, 7
    and 13 blocks) leave a last panel of fewer blocks than the others, run on its own tile."""
    lanes = block_size(np.float32)
    rng = np.random.default_rng(m)
    x = rng.standard_normal((2, 32, 5, 6)).astype(np.float32)
    wt = rng.standard_normal((m, 32, 1, 1)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    spec = ConvSpec(2, 32, 5, 6, m, 5, 6, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, "float32", True, False, ACTIVATIONS["Relu"])
    out = np.full((2, -(-m // lanes), 5, 6, lanes), np.nan, np.float32)
    cb.build_blocked_conv(spec, wt, b, True)([to_blocked(x, lanes), wt, b, None], [out])
    got = from_blocked(out)
    _check(x, wt, b, None, 1, 0, 1, "Relu", 0.0, 0.0, got[:, :m])
    assert (got[:, m:] == 0).all()


@pytest.mark.parametrize(("c", "k", "s", "p"), [(24, 1, 1, 0), (40, 3, 1, 1), (8, 3, 2, 1), (72, 1, 2, 0)])
def test_blocked_conv_reduces_over_the_real_input_channels(c, k, s, p):
    """A blocked input of C channels not whole blocks (24: two blocks, 8 lanes of padding):
    the weights padded to whole blocks, the padding lanes hold NaN, and the conv told the real
    C (``in_channels``) never reads them: the result is the conv over the C channels."""
    lanes = block_size(np.float32)
    cp = -(-c // lanes) * lanes
    rng = np.random.default_rng(c)
    x = rng.standard_normal((2, c, 7, 9)).astype(np.float32)
    wt = rng.standard_normal((40, c, k, k)).astype(np.float32)
    b = rng.standard_normal(40).astype(np.float32)
    xp = np.full((2, cp, 7, 9), np.nan, np.float32)
    xp[:, :c] = x
    wp = np.zeros((40, cp, k, k), np.float32)
    wp[:, :c] = wt
    oh, ow = conv_out(7, k, s, 1, p, p), conv_out(9, k, s, 1, p, p)
    spec = ConvSpec(2, cp, 7, 9, 40, oh, ow, k, k, s, s, p, p, p, p, 1, 1, 1, "float32", True, False)
    out = np.full((2, -(-40 // lanes), oh, ow, lanes), np.nan, np.float32)
    cb.build_blocked_conv(spec, wp, b, True, in_channels=c)([to_blocked(xp, lanes), wp, b, None], [out])
    _check(x, wt, b, None, s, p, 1, "none", 0.0, 0.0, from_blocked(out)[:, :40])


@pytest.mark.parametrize(("size", "want"), [("1024K", 1 << 20), ("2M", 2 << 20), ("524288", 1 << 19), ("", 7)])
def test_l2_bytes_reads_the_level_2_cache_of_sysfs(tmp_path, size, want):
    """The reduction chunk's L2 size: level 2 among sysfs's cache indexes (K, M or bytes); an
    unreadable size, or no level 2 at all, gives the default."""
    for index, level, text in (("index0", "1", "48K"), ("index1", "1", "32K"), ("index2", "2", size)):
        (tmp_path / index).mkdir()
        (tmp_path / index / "level").write_text(level + "\n")
        (tmp_path / index / "size").write_text(text + "\n")
    assert cb.l2_bytes(tmp_path, default=7) == want
    assert cb.l2_bytes(tmp_path / "absent", default=7) == 7


def test_panel_blocks_fit_the_channel_count():
    # 48: 4 blocks either way; 160 and 208 (10 and 13 blocks): 2-block panels compute 10 and 14
    ms = (16, 32, 48, 64, 96, 128, 160, 208, 1000)
    assert [plan.panel_blocks(m, 16, (4, 2)) for m in ms] == [1, 2, 4, 4, 2, 4, 2, 2, 4]
    # with the 3-block tile (AVX-512 float32): 40-48, 96 and 144 channels (3, 6, 9 blocks) and
    # 1000 (63) fill 3-block panels; 64 stays one 4-block panel, 160 and 208 2-block ones
    ms3 = (16, 32, 40, 48, 64, 96, 144, 160, 208, 1000)
    assert [plan.panel_blocks(m, 16, (4, 3, 2)) for m in ms3] == [1, 2, 3, 3, 4, 3, 3, 2, 2, 3]
    # AVX2 (blocks of 8): the 6x2 tile for all but a single block
    assert [plan.panel_blocks(m, 8, (2,)) for m in (8, 16, 24, 40, 64, 1000)] == [1, 2, 2, 2, 2, 2]
    # bf16 (6 x 4 and 7 x 3 tiles): 13 blocks fill 3-block panels; on a 7x7 plane the 6-pixel
    # tile computes 54 rows for 49 (over plan.ROW_WASTE), so 7 x 3 takes it; 14x14 keeps 6 x 4
    tiles = {4: (6, 4), 3: (7, 3), 2: (12, 2), 1: (24, 1)}
    assert [plan.panel_blocks(m, 16, (4, 3), tiles, 196) for m in (64, 208, 256, 512)] == [4, 3, 4, 4]
    assert [plan.panel_blocks(m, 16, (4, 3), tiles, 49) for m in (64, 208, 256, 512)] == [3, 3, 3, 3]


def test_plan_tasks_reads_the_bigger_stream_once():
    big_weights = ConvSpec(1, 512, 7, 7, 512, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1)
    pg, pxb, outer = plan.plan_tasks(big_weights, 4, 64, 512 * 512 * 9 * 4, 512 * 49 * 4)
    assert (pg, pxb, outer) == (1, 49, True)  # one weight panel per task, all pixels, panel by panel
    big_input = ConvSpec(1, 64, 56, 56, 64, 56, 56, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1)
    pg, pxb, outer = plan.plan_tasks(big_input, 4, 64, 64 * 64 * 9 * 4, 64 * 56 * 56 * 4)
    assert pg == 1 and pxb < 3136 and pxb % 4 == 0 and not outer  # all (one) panels, blocks of pixels
    # a pointwise conv at batch 1: its 3136 pixels cut into at least _MIN_TASKS blocks
    pointwise = ConvSpec(1, 256, 56, 56, 64, 56, 56, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1)
    pg, pxb, _ = plan.plan_tasks(pointwise, 4, 64, 256 * 64 * 4, 256 * 3136 * 4, 4)
    assert -(-3136 // pxb) >= plan._MIN_TASKS and pxb % 4 == 0


# (N, C = M, H, W, group, kh, stride, pad): groups of 8 (two per block of 16: RegNet), of 4
# and 2 (four and eight per block), of 16 (one per block) and of 32 (two blocks per group:
# ResNeXt). Several groups per block run the interleaved tile (microkernel.tile_blocked1's form).
GROUPED = {
    "g8_3x3": (1, 48, 7, 9, 6, 3, 1, 1),
    "g8_3x3_s2": (2, 32, 9, 8, 4, 3, 2, 1),
    "g8_1x1": (2, 32, 5, 7, 4, 1, 1, 0),  # no padding: the interleaved copy has no border
    "g4_3x3": (1, 32, 6, 7, 8, 3, 1, 1),
    "g2_3x3_s2": (1, 16, 7, 6, 8, 3, 2, 1),
    "g16_1x1": (1, 32, 5, 6, 2, 1, 1, 0),
    "g32_3x3": (1, 64, 6, 5, 2, 3, 1, 1),
}


@pytest.mark.parametrize("act", ["Relu", "SiLU"])
@pytest.mark.parametrize("name", list(GROUPED))
def test_blocked_grouped_conv(name, act):
    """Grouped convs on the register tile: every output block reads only its groups' input
    block(s), against the naive grouped conv in float64."""
    n, c, h, w, g, k, s, p = GROUPED[name]
    lanes = block_size(np.float32)
    rng = np.random.default_rng(g * 7 + k)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((c, c // g, k, k)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    oh, ow = conv_out(h, k, s, 1, p, p), conv_out(w, k, s, 1, p, p)
    r = rng.standard_normal((n, c, oh, ow)).astype(np.float32)
    spec = ConvSpec(n, c, h, w, c, oh, ow, k, k, s, s, p, p, p, p, 1, 1, g, "float32", True, True, ACTIVATIONS[act])
    out = np.full((n, c // lanes, oh, ow, lanes), np.nan, np.float32)
    cb.build_blocked_conv(spec, wt, b, True)([to_blocked(x, lanes), wt, b, to_blocked(r, lanes)], [out])
    got = from_blocked(out)
    pre = conv2d_reference(x, wt, b, (s, s), (p,) * 4, (1, 1), g) + r
    mag = conv2d_reference(np.abs(x), np.abs(wt), np.abs(b), (s, s), (p,) * 4, (1, 1), g) + np.abs(r)
    ref = activation_ref(pre, act)
    assert_within(got, ref, sum_bound(c // g * k * k + 2, mag, ref, act, 0.0), act)


def test_blocked_conv_rejects_groups_across_blocks():
    """Groups of 6 straddle blocks of 16: no blocked kernel (the layout pass keeps them NCHW)."""
    spec = ConvSpec(1, 48, 4, 4, 48, 4, 4, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 8)
    with pytest.raises(ValueError, match="groups tiling"):
        cb.build_blocked_conv(spec, np.zeros((48, 6, 1, 1), np.float32), None, True)


def _padding_case(algorithm, form, lanes):
    """(x, weights as the kernel gets them, bias, group, real output channels, groups of the
    real conv) of a 3x3 conv whose output is not whole blocks: the kernel pads M itself
    ("kernel") or gets weights and bias zero padded to whole blocks as passes/block_layout.py
    makes them ("layout"; a grouped conv's padding lanes then form groups of their own)."""
    rng = np.random.default_rng(lanes)
    groups = 1
    if algorithm == "stem":
        c, m = 3, 6
    elif algorithm == "nchw_input":
        c, m = 3, lanes + 3
    elif algorithm == "grouped":
        c = m = lanes + lanes // 2  # groups of lanes // 2: a block holds two of them
        groups = 3
    else:
        c, m = 2 * lanes, lanes + 3
    x = rng.standard_normal((2, c, 9, 10)).astype(np.float32)
    wt = rng.standard_normal((m, c // groups, 3, 3)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    group = groups
    if form == "layout":
        mp = -(-m // lanes) * lanes
        wt = np.concatenate([wt, np.zeros((mp - m, *wt.shape[1:]), np.float32)])
        b = np.concatenate([b, np.zeros(mp - m, np.float32)])
        group = mp // wt.shape[1] if groups > 1 else 1
    return x, wt, b, group, m, groups


@pytest.mark.parametrize(("special", "act"), [(np.inf, "none"), (-np.inf, "Relu"), (np.nan, "SiLU")])
@pytest.mark.parametrize(
    ("algorithm", "form"),
    [(a, f) for a in ("direct", "nchw_input", "winograd", "stem", "bf16") for f in ("kernel", "layout")]
    + [("grouped", "layout")],
)
def test_padding_lanes_stay_zero_when_inputs_are_not_finite(algorithm, form, special, act):
    """A blocked output's padding lanes come from zero weights: 0 x Inf = NaN where an input
    is infinite or NaN, unless the kernel stores 0 there. It must (cnnrt.core.layout): the
    next conv's zero weights for those lanes would turn the NaN into NaN in every real
    channel. The real channels keep their Inf and NaN where the float64 conv has them."""
    if algorithm == "bf16" and conv_blocked_bf16.bf16_unsupported_reason():
        pytest.skip("the CPU lacks AVX-512 BF16")
    lanes = block_size(np.float32)
    x, wt, b, group, m, groups = _padding_case(algorithm, form, lanes)
    x[1, 1, 4, 5] = special
    n, c, h, w = x.shape
    cin = group * wt.shape[1]  # a grouped conv's input padded with its groups
    spec = ConvSpec(
        n, cin, h, w, wt.shape[0], h, w, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, group, "float32", True, False, ACTIVATIONS[act]
    )
    channels = {"channels": m} if form == "layout" else {}
    blocked_input = algorithm not in ("nchw_input", "stem")
    if algorithm == "winograd":
        run = build_winograd(spec, wt, b, lanes, **channels)
    elif algorithm == "stem":
        run = build_stem_conv(spec, wt, b, **channels)
    else:
        precision = "bf16" if algorithm == "bf16" else "f32"
        run = cb.build_blocked_conv(spec, wt, b, blocked_input, precision=precision, **channels)
    xin = to_blocked(x, lanes) if blocked_input else x
    out = np.full((n, -(-m // lanes), h, w, lanes), 7.0, np.float32)
    run([xin, wt, b, None], [out])
    got = from_blocked(out)
    assert (got[:, m:] == 0).all(), f"padding lanes hold {np.unique(got[:, m:])}"
    if algorithm in ("winograd", "bf16"):
        # Winograd's transforms mix a tile's inputs and bf16 rounds them: only the padding is
        # checked. The grouped conv (two groups per block, interleaved) multiplies no input by
        # another group's zero weight, so its Inf and NaN land where the float64 conv's do.
        return
    real = got[:, :m]
    ref = activation_ref(conv2d_reference(x, wt[:m], b[:m], (1, 1), (1,) * 4, (1, 1), groups), act)
    np.testing.assert_array_equal(np.isnan(real), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(real), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(real), np.isneginf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(real[fin], ref[fin], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["3x3", "1x1"])
def test_bound_conv_reads_its_arrays_at_each_call(name):
    """run.bind(ins, outs) (kernels.registry.bound) fixes the arrays, not their values: new
    input values written into the same array give that input's conv at the next call."""
    n, c, h, w, m, k, s, p, d = CASES[name]
    lanes = block_size(np.float32)
    spec = ConvSpec(
        n,
        c,
        h,
        w,
        m,
        conv_out(h, k, s, d, p, p),
        conv_out(w, k, s, d, p, p),
        k,
        k,
        s,
        s,
        p,
        p,
        p,
        p,
        d,
        d,
        1,
        "float32",
        True,
    )
    x1, wt, b, _ = _data(CASES[name], np.float32, 5)
    x2 = _data(CASES[name], np.float32, 6)[0]
    run = cb.build_blocked_conv(spec, wt, b, True)
    xin = to_blocked(x1, lanes)
    out = np.full((n, -(-m // lanes), spec.oh, spec.ow, lanes), np.nan, np.float32)
    call = bound(run, [xin, wt, b, None], [out])
    call()
    _check(x1, wt, b, None, s, p, d, "none", 0.0, 0.0, from_blocked(out)[:, :m])
    xin[...] = to_blocked(x2, lanes)
    call()
    _check(x2, wt, b, None, s, p, d, "none", 0.0, 0.0, from_blocked(out)[:, :m])
