"""The shape facts of one 2-D convolution, shared by the backends' algorithm choices and kernels."""

from __future__ import annotations

from dataclasses import dataclass

from cnnrt.core.ir import compute_dtype
from cnnrt.core.layout import logical_shape
from cnnrt.core.ops import ACTIVATIONS


@dataclass(frozen=True)
class ConvSpec:
    """Everything about one convolution that is fixed when the session is built."""

    n: int
    c: int
    h: int
    w: int
    m: int
    oh: int
    ow: int
    kh: int
    kw: int
    sh: int
    sw: int
    pt: int
    pl: int
    pb: int
    pr: int
    dh: int
    dw: int
    group: int
    dtype: str = "float32"
    has_bias: bool = False
    has_res: bool = False
    act: int = 0
    alpha: float = 0.0
    beta: float = 0.0

    @property
    def cg(self) -> int:
        return self.c // self.group

    @property
    def mg(self) -> int:
        return self.m // self.group

    @property
    def k(self) -> int:
        """GEMM reduction length per group: Cg * kh * kw."""
        return self.cg * self.kh * self.kw

    @property
    def has_epilogue(self) -> bool:
        return self.has_bias or self.has_res or self.act != 0

    @property
    def padded(self) -> bool:
        return any((self.pt, self.pl, self.pb, self.pr))

    @property
    def pointwise(self) -> bool:
        """1x1, stride 1, no padding: the input already is the GEMM operand."""
        return (self.kh, self.kw, self.sh, self.sw) == (1, 1, 1, 1) and not self.padded

    @property
    def winograd_shape(self) -> bool:
        """3x3, stride 1, dilation 1, ungrouped: the layers F(4x4, 3x3) computes."""
        return (self.kh, self.kw, self.sh, self.sw, self.dh, self.dw, self.group) == (3, 3, 1, 1, 1, 1, 1)

    @property
    def covers_input(self) -> bool:
        """The kernel spans the whole unpadded input (LeNet's last conv, FC-as-conv heads): one
        output pixel per image, whose im2col column is the image itself, flattened."""
        return (
            (self.kh, self.kw, self.oh, self.ow) == (self.h, self.w, 1, 1)
            and not self.padded
            and self.group == 1
            and (self.dh, self.dw) == (1, 1)
        )


def conv_out_size(size: int, k: int, s: int, d: int, pb: int, pe: int) -> int:
    return (size + pb + pe - (k - 1) * d - 1) // s + 1


def spec_from_node(node, graph) -> ConvSpec:
    """ConvSpec from an IR Conv (or BlockedConv) node and its graph's Values (checks shapes;
    the dtypes a backend supports are its kernels' business).
    Blocked values count by the NCHW shape they store (the output's with the weights' channel
    count: a cropped conv's last block is partly used)."""
    a = node.attrs
    xv, wv, yv = graph.values[node.inputs[0]], graph.values[node.inputs[1]], graph.values[node.outputs[0]]
    n, c, h, w = logical_shape(xv.shape)
    m, cg, kh, kw = wv.shape
    y_shape = logical_shape(yv.shape, m)
    ins = list(node.inputs) + [""] * (4 - len(node.inputs))
    if ins[3] and graph.values[ins[3]].shape != yv.shape:
        raise ValueError(
            f"residual {ins[3]!r} has shape {list(graph.values[ins[3]].shape)}, output is {list(yv.shape)}"
        )
    alpha, beta = float(a.get("act_alpha", 0.0)), float(a.get("act_beta", 0.0))
    spec = ConvSpec(
        n,
        c,
        h,
        w,
        m,
        y_shape[2],
        y_shape[3],
        kh,
        kw,
        *a.get("strides", (1, 1)),
        *a.get("pads", (0, 0, 0, 0)),
        *a.get("dilations", (1, 1)),
        int(a.get("group", 1)),
        compute_dtype(xv.dtype),
        bool(ins[2]),
        bool(ins[3]),
        ACTIVATIONS[a.get("activation", "none")],
        alpha,
        beta,
    )
    check_shapes(spec, y_shape, wv.shape)
    return spec


def check_shapes(spec: ConvSpec, out_shape, w_shape) -> None:
    if spec.c % spec.group or spec.m % spec.group or w_shape[1] * spec.group != spec.c:
        raise ValueError(f"weight {list(w_shape)} with group {spec.group} does not fit C={spec.c}, M={spec.m}")
    oh = conv_out_size(spec.h, spec.kh, spec.sh, spec.dh, spec.pt, spec.pb)
    ow = conv_out_size(spec.w, spec.kw, spec.sw, spec.dw, spec.pl, spec.pr)
    if tuple(out_shape) != (spec.n, spec.m, oh, ow):
        raise ValueError(f"output shape {list(out_shape)} != computed {[spec.n, spec.m, oh, ow]}")
