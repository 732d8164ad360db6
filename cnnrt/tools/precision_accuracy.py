"""How far reduced precision lands from float32: cnnrt bf16 and OpenVINO bf16 against float32
onnxruntime on the same model and input, as max|diff| / max(1, max|ref|) (the error measure
the README's precision table states), and top-1 agreement with float32 over random inputs.

    python -m cnnrt.tools.precision_accuracy googlenet squeezenet1_1 mobilenet_v2 resnet50 [--top1 200]
"""

from __future__ import annotations

import argparse

import numpy as np

from cnnrt.runtime.session import InferenceSession
from cnnrt.tools.modelsource import resolve_model
from cnnrt.tools.peers import openvino_runner


def relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(out - ref).max() / max(1.0, float(np.abs(ref).max())))


def measure(name: str, top1: int = 0, threads: int = 2, seed: int = 0) -> dict:
    """Errors of cnnrt bf16, cnnrt float32 and OpenVINO bf16 on one standard-normal input, and
    (``top1`` > 0) how many of ``top1`` further inputs keep float32's top-1 class."""
    import onnxruntime as ort

    path = resolve_model(name, batch=1)
    ref_sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = ref_sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    bf16 = InferenceSession(str(path), precision="bf16", threads=threads)
    f32 = InferenceSession(str(path), threads=threads)
    ov_cache: dict = {}
    rng = np.random.default_rng(seed)

    def outputs(x):
        feeds = {inp.name: x}
        ov = openvino_runner("openvino-bf16", path, feeds, threads, ov_cache)()[0]
        return ref_sess.run(None, feeds)[0], bf16.run(None, feeds)[0], f32.run(None, feeds)[0], ov

    ref, c_bf16, c_f32, ov = outputs(rng.standard_normal(shape).astype(np.float32))
    row = {
        "model": name,
        "cnnrt_bf16": relative_error(c_bf16, ref),
        "openvino_bf16": relative_error(ov, ref),
        "cnnrt_f32": relative_error(c_f32, ref),
    }
    if top1:
        agree = np.zeros(2, int)
        for _ in range(top1):
            ref, c_bf16, _, ov = outputs(rng.standard_normal(shape).astype(np.float32))
            agree += [int(c_bf16.argmax() == ref.argmax()), int(ov.argmax() == ref.argmax())]
        row.update(top1_inputs=top1, top1_cnnrt_bf16=int(agree[0]), top1_openvino_bf16=int(agree[1]))
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m cnnrt.tools.precision_accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--top1", type=int, default=0, metavar="N", help="top-1 agreement over N more random inputs")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    for name in args.models:
        r = measure(name, args.top1, args.threads)
        line = f"{name}: cnnrt bf16 {r['cnnrt_bf16']:.2e}  OpenVINO bf16 {r['openvino_bf16']:.2e}  cnnrt f32 {r['cnnrt_f32']:.2e}"
        if args.top1:
            line += f"  top-1 kept over {args.top1}: cnnrt bf16 {r['top1_cnnrt_bf16']}, OpenVINO bf16 {r['top1_openvino_bf16']}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
