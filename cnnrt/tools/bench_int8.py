"""int8 in the bench: cnnrt, onnxruntime and OpenVINO on the same QDQ file (the zoo's
``--quantize int8`` export), with cnnrt float32 on the float file beside them.

Agreement is judged in quantization steps, not float32's rtol: the step is the scale of the
last QuantizeLinear before the graph output (the classifier's input), and an engine agrees
when max|diff| against the reference stays within ``INT8_STEPS`` of them, propagated through
the float head as ``step * max_row |W|_1`` (a one-step change of every input moves an output by
at most that much).

The reference is onnxruntime int8 (its QDQ fusions: QLinearConv and friends) where its int8
arithmetic is exact. On x86 CPUs without VNNI it is not: MLAS's uint8 x int8 GEMMs multiply
with vpmaddubsw, which adds two products in int16 with saturation (255 * -128 * 2 does not fit),
so onnxruntime's convolution accumulators there can be off by up to ~10^5 on random codes and
its outputs move by steps (tests/quant/test_quant_ops.py checks it against a model of that
arithmetic).
There the reference is onnxruntime running the QDQ file as written (optimisations off: every
Q/DQ and float op evaluated as the ONNX graph says). Both distances are in every row.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

INT8_STEPS = 1.0
# zoo models whose int8 QDQ file OpenVINO 2026.4 crashes the process on (a segfault)
OPENVINO_CRASHES = frozenset({"densenet121"})


def onnxruntime_u8s8_saturates() -> bool:
    """Whether onnxruntime's uint8 x int8 GEMMs saturate pairwise int16 sums on this CPU: x86
    with AVX2 but neither AVX-512 VNNI nor AVX-VNNI (MLAS then runs its vpmaddubsw kernels)."""
    import llvmlite.binding as ll

    try:
        f = ll.get_host_cpu_features()
    except RuntimeError:
        return False
    return bool(f.get("avx2", False)) and not (f.get("avx512vnni", False) or f.get("avxvnni", False))


def agrees(row: dict) -> bool:
    """Whether cnnrt int8 is within ``INT8_STEPS`` of the reference (the module doc)."""
    key = "cnnrt-int8_steps_as_written" if row["onnxruntime-int8_saturates"] else "cnnrt-int8_steps"
    return row[key] <= INT8_STEPS


def output_step(path) -> float:
    """The bound one quantization step of the head's input puts on an output (see the module doc)."""
    m = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    q = [n for n in m.graph.node if n.op_type == "QuantizeLinear"][-1]
    step = float(np.asarray(inits[q.input[1]]).reshape(-1)[0])
    weights = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    head = weights[-1] if weights else None
    if head is None or inits[head.input[0]].ndim != 2:
        return step
    zp = inits.get(head.input[2], 0) if len(head.input) > 2 else 0
    w = inits[head.input[0]].astype(np.float64) - np.asarray(zp, np.float64).reshape(-1, 1)
    w = w * np.asarray(inits[head.input[1]], np.float64).reshape(-1, 1)
    return step * float(np.abs(w).sum(axis=1).max())


def int8_runners(
    name: str, batch: int, threads: int, openvino: bool = True
) -> tuple[dict, dict[str, np.ndarray], float, np.ndarray]:
    """({engine: zero-argument run}, feeds, output step, onnxruntime's output for the QDQ file as
    written) for zoo model ``name`` (OpenVINO left out when ``openvino`` is false)."""
    import cnnrt
    from cnnrt.models import sample_input
    from cnnrt.models.onnx_export import export_cached
    from cnnrt.models.quantize import quantize_cached
    from cnnrt.tools.peers import openvino_runner
    from cnnrt.tools.timing import ort_session

    f32, q8 = export_cached(name, batch=batch), quantize_cached(name, batch=batch)
    feeds = {"input": sample_input(name, batch, seed=11)}
    c32 = cnnrt.InferenceSession(str(f32), threads=threads)
    c8 = cnnrt.InferenceSession(str(q8), threads=threads)
    o8 = ort_session(q8, threads)
    runners = {
        "cnnrt-f32": lambda: c32.run(None, feeds),
        "cnnrt-int8": lambda: c8.run(None, feeds),
        "onnxruntime-int8": lambda: o8.run(None, feeds),
    }
    if openvino:
        runners["openvino-int8"] = openvino_runner("openvino", q8, feeds, threads, {})
    as_written = np.asarray(ort_session(q8, threads, optimize=False).run(None, feeds)[0])
    return runners, feeds, output_step(q8), as_written


ZOO_SET = ("resnet18", "resnet50", "mobilenet_v2", "googlenet", "densenet121", "squeezenet1_1", "efficientnet_b0")


def bench_row(name: str, batch: int, threads: int = 2, runs: int = 10, openvino: bool = True) -> dict:
    """One model's medians (ms, rotating blocks), ratios, int8 speed-up over cnnrt float32 and
    each int8 engine's distance in output steps from onnxruntime int8 (``<engine>_steps``) and
    from the QDQ file as written (``<engine>_steps_as_written``), and whether cnnrt's top-1
    class agrees with the reference's (the module doc)."""
    from cnnrt.tools.timing import time_alternating

    runners, _, step, as_written = int8_runners(name, batch, threads, openvino)
    outs = {k: np.asarray(f()[0]) for k, f in runners.items()}
    ref = outs["onnxruntime-int8"]
    med = {k: float(np.median(v)) * 1e3 for k, v in time_alternating(runners, runs=runs, warmup=1).items()}
    row = dict(model=name, batch=batch, **{f"{k}_ms": round(v, 2) for k, v in med.items()})
    row["threads"] = threads
    row["int8_speedup_over_f32"] = round(med["cnnrt-f32"] / med["cnnrt-int8"], 2)
    if "openvino-int8" in med:
        row["cnnrt-int8_vs_openvino"] = round(med["cnnrt-int8"] / med["openvino-int8"], 2)
    for k in [k for k in runners if k.endswith("int8") and k != "onnxruntime-int8"]:
        row[f"{k}_vs_onnxruntime"] = round(med[k] / med["onnxruntime-int8"], 2)
        row[f"{k}_steps"] = round(float(np.abs(outs[k] - ref).max()) / step, 2)
    for k in [k for k in runners if k.endswith("int8")]:
        row[f"{k}_steps_as_written"] = round(float(np.abs(outs[k] - as_written).max()) / step, 2)
    row["onnxruntime-int8_saturates"] = onnxruntime_u8s8_saturates()
    reference = as_written if row["onnxruntime-int8_saturates"] else ref
    row["top1_agrees"] = bool((outs["cnnrt-int8"].argmax(-1) == reference.argmax(-1)).all())
    return row


ROW_HEADER = (
    f"{'model':16s} {'batch':>5s} {'thr':>3s} {'cnnrt-f32':>10s} {'cnnrt-int8':>10s} {'ort-int8':>9s} "
    f"{'ov-int8':>9s} {'vs ort':>7s} {'vs ov':>7s} {'vs f32':>7s} {'steps':>6s} {'as-wr':>6s}"
)


def format_row(r: dict) -> str:
    """One bench_row as a table line: medians (ms), cnnrt int8's ratio to each int8 peer (below 1
    is faster), its speed-up over cnnrt float32 and its distance in steps from onnxruntime int8
    and from the QDQ file as written (the module doc)."""

    def f(key, spec=".2f"):
        v = r.get(key)
        return "-" if v is None else format(v, spec)

    return (
        f"{r['model']:16s} {r['batch']:5d} {r['threads']:3d} {f('cnnrt-f32_ms'):>10s} {f('cnnrt-int8_ms'):>10s} "
        f"{f('onnxruntime-int8_ms'):>9s} {f('openvino-int8_ms'):>9s} {f('cnnrt-int8_vs_onnxruntime'):>6s}x "
        f"{f('cnnrt-int8_vs_openvino'):>6s}x {f('int8_speedup_over_f32'):>6s}x {f('cnnrt-int8_steps'):>6s} "
        f"{f('cnnrt-int8_steps_as_written'):>6s}"
    )


def geomeans(rows: list[dict]) -> dict[str, float]:
    """Geometric means over ``rows`` of cnnrt int8's ratio to each peer and its speed-up over float32."""
    from cnnrt.tools.timing import geomean

    out = {}
    for key in ("cnnrt-int8_vs_onnxruntime", "cnnrt-int8_vs_openvino", "int8_speedup_over_f32"):
        vals = [r[key] for r in rows if r.get(key)]
        if vals:
            out[key] = geomean(vals)
    return out


def main(argv=None) -> int:
    """``python -m cnnrt.tools.bench_int8 [NAME ...] [--batch N] [--runs N] [--skip-openvino]``: one JSON line per model."""
    import argparse
    import json

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("names", nargs="*", default=list(ZOO_SET))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--skip-openvino", action="store_true", help="OpenVINO 2026.4 segfaults on densenet121's QDQ file")
    a = p.parse_args(argv)
    for name in a.names:
        print(json.dumps(bench_row(name, a.batch, runs=a.runs, openvino=not a.skip_openvino)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
