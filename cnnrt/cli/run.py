"""``cnnrt run MODEL``: run a model on given (or random) inputs, save the outputs, optionally
check them against onnxruntime."""

from __future__ import annotations

import json
import sys
import time

from cnnrt.cli import options
from cnnrt.cli.batch import nonnegative

EPILOG = """examples:
  cnnrt run lenet5 --check
  cnnrt run model.onnx --input input=x.npy --output y.npz --json run.json
  cnnrt run resnet18 --batch 4 --input inputs.npz --check --rtol 1e-4
  cnnrt run model.onnx --shape input:2x3x160x160"""


HELP = "run a model on .npy/.npz (or random) inputs, save outputs, optionally check against onnxruntime"


def add_arguments(p) -> None:
    options.add_model(p)
    options.add_inputs(p)
    p.add_argument(
        "--output",
        "-o",
        type=lambda s: options.output_path(s, (".npz",)),
        default=None,
        metavar="OUT.npz",
        help="save outputs (keyed by output name)",
    )
    p.add_argument(
        "--backend",
        choices=["cpu", "cuda"],
        default="cpu",
        help="cpu (Numba kernels) or cuda (numba.cuda kernels; the CUDA simulator without a GPU) (default cpu)",
    )
    options.add_batch(p)
    options.add_shape(p)
    options.add_threads(p, "threads for cnnrt and the onnxruntime check (default: all cores)")
    options.add_seed(p)
    p.add_argument("--check", action="store_true", help="compare with onnxruntime; exit 1 on mismatch")
    p.add_argument(
        "--no-tier",
        action="store_true",
        help="wait for the native kernels to compile (a cold start otherwise answers from numpy/BLAS first; "
        "--check always checks the native kernels)",
    )
    options.add_precision(p)
    options.add_rtol(p, when="with --check: ", per_precision=True)
    options.add_json(p, "a report")
    p.add_argument(
        "--image",
        default=None,
        metavar="FILE",
        help="an image (JPEG/PNG) as the input, preprocessed as by `cnnrt batch`",
    )
    p.add_argument(
        "--topk", type=nonnegative, default=0, metavar="K", help="print the K best classes (ImageNet names for 1000)"
    )


def _describe(a) -> dict:
    import numpy as np

    d = {"shape": list(a.shape), "dtype": str(a.dtype)}
    if a.size and a.dtype.kind in "fiub":
        f = a.astype(np.float64)
        d.update(min=float(np.nanmin(f)), max=float(np.nanmax(f)), mean=float(np.nanmean(f)))
        d["nan"] = int(np.isnan(f).sum())
    return d


def run(args) -> int:
    import numpy as np

    import cnnrt
    from cnnrt.errors import CnnrtError
    from cnnrt.runtime import tiered
    from cnnrt.tools.modelsource import load_feeds, random_feeds, resolve_model
    from cnnrt.tools.progress import CompileProgress, Spinner
    from cnnrt.tools.timing import max_rel_error, ort_session

    path = resolve_model(args.model)
    shapes = options.check_shapes(args.shape, path, args.batch)
    t0 = time.perf_counter()
    with Spinner(f"building {args.model}"):
        sess = cnnrt.InferenceSession(
            path,
            backend=args.backend,
            threads=args.threads,
            tiered=not (args.check or args.no_tier),
            precision=args.precision,
        )
    build_s = time.perf_counter() - t0
    given, notes = load_feeds(args.input, sess)
    if args.image:
        from cnnrt.batch.images import image_feed

        given.update(image_feed(sess, args.image))
    batch = args.batch
    if batch is None:  # random inputs beside given (or --shape) ones take their batch size
        batch = next((d[0] for d in [*(a.shape for a in given.values()), *shapes.values()] if d), None)
    feeds = random_feeds(sess, batch=batch, seed=args.seed, shapes=shapes)
    sources = {n: "random" for n in feeds}
    for n, a in given.items():
        feeds[n] = a
        sources[n] = "file"
    for note in notes:
        print(f"note: {note}")
    t0 = time.perf_counter()
    with CompileProgress("first run"):
        outs = sess.run(None, feeds)
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    outs = sess.run(None, feeds)
    run_ms = (time.perf_counter() - t0) * 1e3
    out_names = [o.name for o in sess.get_outputs()]
    report: dict = {
        "model": args.model,
        "path": str(path),
        "backend": args.backend,
        "precision": args.precision,
        "inputs": {n: {**_describe(a), "source": sources[n]} for n, a in feeds.items()},
        "outputs": {n: _describe(a) for n, a in zip(out_names, outs)},
        "build_s": build_s,
        "build": sess.build_timings,
        "first_run_s": first_s,
        "run_ms": run_ms,
        "output_file": args.output,
        "check": None,
    }
    precision = f"  precision {args.precision}" if args.precision != "f32" else ""
    print(f"model   {args.model} ({path})  backend {args.backend}{options.simulator_note(args.backend)}{precision}")
    for n, a in feeds.items():
        print(f"input   {n} {a.dtype}{list(a.shape)} ({sources[n]})")
    for n, a in zip(out_names, outs):
        d = report["outputs"][n]
        extra = f"  min {d['min']:.4g} max {d['max']:.4g} mean {d['mean']:.4g}" if "min" in d else ""
        print(f"output  {n} {a.dtype}{list(a.shape)}{extra}")
    tm = sess.build_timings
    jit = f" ({tm['compiled']} kernels compiled in {tm['compile']:.2f} s)" if tm.get("compiled") else ""
    tier = " on the numpy tier (native kernels compiling)" if tm.get("numpy_tier_runs") else ""
    print(f"time    build {build_s:.2f} s, first run {first_s:.2f} s{jit}, run {run_ms:.3f} ms{tier}")
    if args.topk:
        from cnnrt.batch.images import topk_lines

        for line in topk_lines(outs[0], args.topk):
            print(line)
    if args.output:
        np.savez(args.output, **dict(zip(out_names, outs)))
        print(f"wrote   {args.output}")
    ok = True
    rtol = options.check_rtol(args.rtol, args.precision)
    if args.check:
        try:
            ref = ort_session(path, threads=args.threads).run(None, feeds)
        except Exception as e:  # noqa: BLE001  (onnxruntime's own errors: one line, as every error)
            raise CnnrtError(f"--check: onnxruntime cannot run {path}: {type(e).__name__}: {e}") from e
        errs = {n: max_rel_error(a, b) for n, a, b in zip(out_names, outs, ref)}
        ok = all(e <= rtol for e in errs.values())
        report["check"] = {"against": "onnxruntime", "rtol": rtol, "errors": errs, "ok": ok}
        for n, e in errs.items():
            print(f"check   {n}: max|cnnrt-ort|/max(1,|ort|) = {e:.2e}  {'OK' if e <= rtol else 'MISMATCH'}")
    if tier:  # finish the native kernels now, so that the next start is a warm one
        with Spinner("compiling the native kernels for the next start"):
            tiered.wait_for_compiles()
        t0 = time.perf_counter()
        sess.run(None, feeds)
        report["native_run_ms"] = (time.perf_counter() - t0) * 1e3
        report["build"] = tm = sess.build_timings
        print(
            f"kernels {tm['compiled']} compiled in {tm['compile']:.2f} s beside the numpy tier, now cached; "
            f"native run {report['native_run_ms']:.3f} ms"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if not ok:
        print(f"cnnrt: error: outputs differ from onnxruntime by more than {rtol:g}", file=sys.stderr)
        return 1
    return 0
