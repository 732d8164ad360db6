"""Numba kernels for the CPU (cpu/) and numba.cuda kernels (cuda/), found through the registry
(registry.py) keyed by (op, backend).

A kernel *builder* takes a node and its graph at plan-build time (shapes known, constants
available for prepacking) and returns ``run(ins, outs)``, which reads the input arrays and
writes into the preallocated output arrays. Missing kernels are found when the plan is
built, never halfway through a run.

An op family registers in the same-named module on both backends (kernels/cpu/ and
kernels/cuda/), so the two implementations of an op sit side by side:

    elementwise.py     Relu, LeakyRelu, Clip, Sigmoid, HardSigmoid, HardSwish, Tanh, Elu, Gelu,
                       Add, Sub, Mul, Div, Pow, Sum, Max, Min, PRelu, Cast, Erf, Sqrt,
                       Reciprocal, Exp, Log, Abs, Neg, Floor, Ceil, Not, Equal, Less(OrEqual),
                       Greater(OrEqual), Where, Expand
    norm.py            BatchNormalization, ChannelAffine, LRN
    layernorm.py       LayerNormalization
    reduce.py          Softmax (and LogSoftmax), ReduceMean/Sum/Max/Min/L2, ArgMax, ArgMin,
                       GlobalAveragePool, GlobalMaxPool
    pool.py            MaxPool, AveragePool
    gemm.py            Gemm, MatMul
    conv.py            Conv (conv_algorithm.py on both: which algorithm a conv runs)
    conv_transpose.py  ConvTranspose
    resize.py          Resize
    squeeze_excite.py  SqueezeExcite (on the CPU also BlockedSqueezeExcite), made by passes/fuse_se.py
    tensor.py          Reshape, Identity, Dropout, Concat, Split, Slice, Transpose, Gather,
                       Shape, ConstantOfShape, Pad

The activation formulas themselves are kernels/activation.py's, and a convolution's shape facts
kernels/conv_spec.py's, one definition for both backends. CPU-only modules have no CUDA twin:
activation.py (the fused activation epilogue helpers), blocked.py and blocked_window.py (the
channel-blocked NCHWc layout, its Blocked* ops and their window kernel), depthwise_blocked.py
(its row-blocked depthwise conv), the conv algorithms conv.py runs (conv_gemm.py,
conv_gather.py, conv_direct.py, conv_blocked.py, conv_blocked_plan.py, winograd.py,
winograd_transforms.py, depthwise.py, depthwise_3x3.py, and conv_common.py they share),
microkernel.py (register tiles), vector_ir.py and llvm_ir.py (explicit-vector LLVM IR), blas.py
(the BLAS gemm binding and task helpers), conv_blocked_bf16.py, microkernel_bf16.py and
gemm_bf16.py (precision="bf16": the bf16 input copies, the vdpbf16ps tile, Gemm on it),
conv_stem.py (the 3-channel 3x3 stem conv), quant.py (QuantizeLinear, DequantizeLinear, QAdd,
QMatMul, the 8-bit table lookup) and qconv.py (QConv) with the int8 kernels it runs
(qconv_vnni.py, qconv_vnni_taps.py, qconv_depthwise.py, microkernel_int8.py: the vpdpbusd
tile). CUDA-only: common.py (launch, index and epilogue helpers), config.py (launch geometry),
device.py (device arrays, the simulator). Beside the backends: cache_dir.py (where compiled
kernels are cached, and pruning the stale caches), jit_watch.py (counting and timing Numba
compilations), prepacked.py (weights packed at build, recorded for and served from a cached
plan, runtime/plan_cache.py) and numpy_tier.py (the numpy/BLAS ops a tiered start answers with
while the native kernels compile, runtime/tiered.py).
"""

from __future__ import annotations

from cnnrt.kernels.registry import Builder, KernelFn, get_builder, register, supported

__all__ = ["Builder", "KernelFn", "get_builder", "register", "supported"]
