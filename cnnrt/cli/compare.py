"""``cnnrt compare MODEL``: run cnnrt and a reference on identical inputs and compare every
intermediate tensor; name the first node (in execution order) whose output goes over tolerance.

The reference is onnxruntime (graph optimizations off, every tensor exposed) on MODEL or on
--reference-model, or with --against unoptimized cnnrt itself at opt_level 0. Tolerances
grow with each node's accumulation length and the depth of the graph (see cnnrt/compare.py:
rtol(v) = max rtol(inputs) + 8*eps32*(sqrt(K) + 16*[transcendental]); atol = 1e-3*rtol)
unless --rtol/--atol are given. Exit code 1 when a divergence is found."""

from __future__ import annotations

import json

from cnnrt.cli import options

EPILOG = """examples:
  cnnrt compare resnet18
  cnnrt compare edited.onnx --reference-model original.onnx --json diff.json
  cnnrt compare resnet50 --against unoptimized --bisect-passes
  cnnrt compare model.onnx --rtol 1e-4 --atol 1e-6 --batch 2"""


HELP = "compare every intermediate tensor with onnxruntime (or unoptimized cnnrt); find the first divergence"


def add_arguments(p) -> None:
    options.add_model(p, note="the model cnnrt runs")
    p.add_argument("--reference-model", default=None, metavar="PATH", help="model the reference runs (default MODEL)")
    p.add_argument(
        "--against",
        choices=["onnxruntime", "unoptimized"],
        default="onnxruntime",
        help="the reference: onnxruntime, or cnnrt itself at opt_level 0 (default onnxruntime)",
    )
    p.add_argument(
        "--rtol", type=options.nonnegative_float, default=None, help="relative tolerance (of max|ref|) for every tensor"
    )
    p.add_argument("--atol", type=options.nonnegative_float, default=None, help="absolute tolerance for every tensor")
    p.add_argument("--bisect-passes", action="store_true", help="on divergence, find the pass that introduces it")
    options.add_batch(p)
    options.add_shape(p)
    options.add_inputs(p)
    options.add_seed(p)
    options.add_threads(p)
    options.add_precision(p)
    p.add_argument("--all", action="store_true", help="also list nodes that have no reference tensor")
    options.add_json(p, "the comparison")


def _producers(path) -> dict[str, str]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return {o: (n.name or f"{n.op_type}_{i}") for i, n in enumerate(m.graph.node) for o in n.output if o}


def run(args) -> int:
    import cnnrt
    from cnnrt.tools.compare import (
        bisect_passes,
        cnnrt_tensors,
        compare_steps,
        first_divergence,
        ort_tensors,
        rows_json,
        snapshot_steps,
    )
    from cnnrt.tools.modelsource import load_feeds, random_feeds, resolve_model
    from cnnrt.tools.progress import Spinner

    if args.reference_model:
        options.check_model(args.reference_model)
    path = resolve_model(args.model)
    ref_path = resolve_model(args.reference_model) if args.reference_model else path
    shapes = options.check_shapes(args.shape, path, args.batch)
    with Spinner(f"building {args.model}"):
        sess = cnnrt.InferenceSession(path, threads=args.threads, precision=args.precision)
    given, notes = load_feeds(args.input, sess)
    feeds = random_feeds(sess, batch=args.batch, seed=args.seed, shapes=shapes)
    feeds.update(given)
    for n in notes:
        print(f"note: {n}")
    with Spinner("running cnnrt step by step"):
        graph, steps = snapshot_steps(sess, feeds)
    with Spinner(f"running the reference ({args.against})"):
        if args.against == "onnxruntime":
            ref, producer = ort_tensors(ref_path, feeds)
            ref_label = f"onnxruntime (no graph optimizations) on {ref_path}"
        else:
            ref = cnnrt_tensors(ref_path, feeds, opt_level=0, threads=args.threads)
            producer = _producers(ref_path)
            ref_label = f"cnnrt opt_level=0 on {ref_path}"
    rows = compare_steps(graph, steps, ref, args.rtol, args.atol)
    fd = first_divergence(rows, producer)
    compared = sum(1 for r in rows if r.tensors)

    print(
        f"model      {args.model} ({path}), cnnrt opt_level 2, precision {args.precision}, {len(rows)} steps, "
        f"{compared} with a reference tensor"
    )
    print(f"reference  {ref_label}")
    tol = "derived per tensor" if args.rtol is None and args.atol is None else f"rtol {args.rtol}, atol {args.atol}"
    print(f"tolerance  {tol}")
    w = min(max([len(r.node) for r in rows] + [4]), 32)
    print(f"{'#':>3s} {'node':{w}s} {'op':18s} {'max abs':>9s} {'max rel':>9s} {'rtol':>8s}  status  origin")
    first_idx = None
    for i, r in enumerate(rows):
        if not r.tensors and not args.all:
            continue
        if not r.tensors:
            print(
                f"{i:3d} {r.node[:w]:{w}s} {r.op[:18]:18s} {'-':>9s} {'-':>9s} {'-':>8s}  no-ref  {','.join(r.origin)}"
            )
            continue
        worst = max(r.tensors, key=lambda t: (not t.ok, t.max_rel))
        mark = ""
        if r.status == "DIVERGES" and first_idx is None:
            first_idx = i
            mark = "  <== first divergence"
        origin = ",".join(r.origin)
        origin = origin if len(origin) <= 50 else origin[:47] + "..."
        print(
            f"{i:3d} {r.node[:w]:{w}s} {r.op[:18]:18s} {worst.max_abs:9.2e} {worst.max_rel:9.2e} {worst.rtol:8.1e}  "
            f"{'ok' if r.status == 'ok' else 'DIVERGE':7s} {origin}{mark}"
        )
    report = {
        "model": args.model,
        "path": str(path),
        "reference": {"against": args.against, "model": str(ref_path)},
        "tolerance": "derived" if args.rtol is None and args.atol is None else {"rtol": args.rtol, "atol": args.atol},
        "first_divergence": fd,
        "nodes": rows_json(rows),
        "bisect": None,
    }
    if fd is None:
        print(f"result     no divergence: all {compared} compared tensors within tolerance")
    else:
        onnx_node = f" (ONNX node {fd['onnx_node']})" if fd.get("onnx_node") else ""
        print(
            f"result     first divergence at node {fd['node']!r} ({fd['op']}), tensor {fd['tensor']!r}{onnx_node}: "
            f"max abs {_g(fd['max_abs'])}, max rel {_g(fd['max_rel'])} > rtol {fd['rtol']:.2e}; "
            f"origin {fd['origin']}" + (f" [{fd['note']}]" if fd["note"] else "")
        )
        if args.bisect_passes:
            report["bisect"] = bisect_passes(
                path, feeds, ref, args.rtol, args.atol, producer, args.threads, print, args.precision
            )
            print(f"bisect     {report['bisect']['conclusion']}")
    if args.bisect_passes and fd is None:
        print("bisect     nothing to bisect (no divergence)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 1 if fd is not None else 0


def _g(x) -> str:
    return "inf" if x is None else f"{x:.3g}"
