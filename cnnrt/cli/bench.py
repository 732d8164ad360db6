"""``cnnrt bench MODEL ...``: time cnnrt against onnxruntime (and PyTorch) over batch and thread
settings, after checking that every backend's answer agrees with onnxruntime's.

A backend whose outputs differ from onnxruntime's by more than --rtol (max|x-ort|/max(1,|ort|))
shows WRONG instead of a time, and the exit code is 1. Backends are timed in rotating blocks (5 runs of one, then the next) in one
process; the table gives min / p50 / p90 / p99 in ms, the ratio of medians (p50) to onnxruntime
(below 1 is faster), inferences (batch items) per second and the ratio of medians to the
fastest other float32 engine of the row ("vs peer": onnxruntime, OpenVINO f32, torch), with its
geometric mean over the rows when several models are benched. With --concurrency N, N requests
run at once, each stream on its own session and thread: the percentiles are the requests'
latencies and inf/s the throughput of all N. onnxruntime always runs: it is the reference for
answers and times. Every model is found (zoo models exported) and every option checked before
the first timing."""

from __future__ import annotations

import importlib.util
import json
import sys

from cnnrt.cli import options
from cnnrt.errors import CnnrtError

EPILOG = """examples:
  cnnrt bench lenet5 resnet18 --batch 1,8 --threads 1,2 --runs 20
  cnnrt bench model.onnx --backends cnnrt,onnxruntime --json bench.json --csv bench.csv --plot bench.png
  cnnrt bench resnet18 --concurrency 2 --threads 1      # throughput: 2 concurrent requests, 1 thread each
  cnnrt bench model.onnx --shape input:1x3x160x160
  cnnrt bench resnet18 --backends cnnrt,cnnrt-cuda,onnxruntime,onnxruntime-cuda,torch
  cnnrt bench resnet50 --backends cnnrt,onnxruntime,onnxruntime-nchw   # ort without NCHWc
  cnnrt bench resnet50 --precision f32,bf16 --batch 1,8 --threads 2   # + cnnrt-bf16, openvino-bf16
  cnnrt bench resnet50 --precision int8 --batch 1,8 --threads 2   # int8 QDQ: cnnrt vs onnxruntime, OpenVINO"""


HELP = "time cnnrt vs onnxruntime (and torch) after checking their answers agree"


def add_arguments(p) -> None:
    from cnnrt.tools.bench import BACKENDS, DEFAULT_BACKENDS

    options.add_model(p, many=True)
    p.add_argument(
        "--backends",
        default=None,
        metavar="LIST",
        help=f"comma-separated, from {', '.join(BACKENDS)} (default {','.join(DEFAULT_BACKENDS)})",
    )
    p.add_argument(
        "--batch", type=options.int_list, default=None, metavar="LIST", help="comma-separated batch sizes (default 1)"
    )
    p.add_argument(
        "--threads",
        type=options.int_list,
        default=None,
        metavar="LIST",
        help="comma-separated thread counts of each session (default: all cores / concurrency)",
    )
    options.add_shape(p)
    options.add_runs(p, 20, "timed runs per backend (per concurrent request stream with --concurrency)")
    p.add_argument(
        "--concurrency",
        type=options.positive_int,
        default=1,
        metavar="N",
        help="N concurrent requests, each on its own session and thread (a cnnrt session runs one request "
        "at a time); the table then shows request latencies and the inferences per second of all N (default 1)",
    )
    p.add_argument(
        "--max-seconds", type=options.positive_float, metavar="S", help="stop timing a case after this long (>=3 runs)"
    )
    p.add_argument(
        "--precision",
        type=_bench_precisions,
        default=["f32"],
        metavar="LIST",
        help="comma-separated, from f32|bf16|int8: bf16 adds cnnrt-bf16 and openvino-bf16 (convolutions on "
        "bfloat16 dot products); int8 benches a zoo model's int8 QDQ export (zoo export --quantize int8) on "
        "cnnrt, onnxruntime and OpenVINO beside cnnrt float32 (default f32)",
    )
    options.add_rtol(p, per_precision=True)
    options.add_seed(p)
    options.add_json(p, "the records (a list)")
    p.add_argument(
        "--csv", type=options.output_path, default=None, metavar="PATH", help="write the records as CSV (one row each)"
    )
    options.add_plot(p, "bar chart of medians with p10-p90 error bars")
    p.add_argument(
        "--cold", action="store_true", help="time start-up instead: a cold and a warm start in fresh processes"
    )


def _bench_precisions(s: str) -> list[str]:
    """--precision of bench: the session precisions (options.precision_list) and ``int8``."""
    items = [x.strip() for x in s.split(",") if x.strip()]
    rest = [x for x in items if x != "int8"]
    return (options.precision_list(",".join(rest)) if rest else []) + (["int8"] if "int8" in items else [])


def run(args) -> int:
    from cnnrt.tools.bench import (
        BACKENDS,
        DEFAULT_BACKENDS,
        HEADER,
        REFERENCE,
        format_rows,
        geomean_summary,
        peer_geomean_summary,
        records_for,
        with_precisions,
        write_csv,
    )
    from cnnrt.tools.modelsource import is_zoo_name, resolve_model
    from cnnrt.tools.progress import Progress
    from cnnrt.tools.timing import cpu_count

    if args.cold:
        from cnnrt.tools.coldstart import bench_cold

        return bench_cold(args.models, args.batch or [1], args.threads or [cpu_count()], args.json)
    int8 = "int8" in args.precision
    args.precision = [p for p in args.precision if p != "int8"]
    if int8:
        from cnnrt.tools.modelsource import is_zoo_name

        not_zoo = [m for m in args.models if not is_zoo_name(m)]
        if not_zoo:
            raise CnnrtError(f"--precision int8 benches the zoo's int8 QDQ exports; {not_zoo} are not zoo models")
        if not args.precision:
            return _bench_int8(args)
    backends = [b.strip() for b in (args.backends or ",".join(DEFAULT_BACKENDS)).split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise CnnrtError(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    explicit = set(backends) if args.backends else set()
    if REFERENCE not in backends:
        print(f"note: {REFERENCE} added: it is the reference for answers and ratios", file=sys.stderr)
    backends = [REFERENCE] + [b for b in dict.fromkeys(backends) if b != REFERENCE]
    backends = with_precisions(backends, args.precision, bool(args.backends))
    for b in backends:
        if options.simulator_note(b):
            print(f"note: {b} runs on{options.simulator_note(b)}", file=sys.stderr)
    batches = args.batch or [1]
    # every model is found (zoo ones exported) and every --shape checked before the first is timed
    if args.shape and len(batches) > 1:
        raise CnnrtError("--shape fixes the input shapes: give one --batch value with it, or none")
    prepared = {}
    for model in args.models:
        path = resolve_model(model)
        shapes = options.check_shapes(args.shape, path, batches[0] if args.batch else None)
        first = next(iter(options.model_inputs(path)), None) if shapes else None
        prepared[model] = path, shapes, shapes[first][0] if first in shapes else None
    threads_list = args.threads or [max(1, cpu_count() // args.concurrency)]
    records: list[dict] = []
    failed = False
    total = len(args.models) * len(threads_list) * len(batches)
    print(HEADER, flush=True)
    with Progress(total, "bench") as bar:
        for model in args.models:
            zoo = model if is_zoo_name(model) else None
            path, shapes, shape_batch = prepared[model]
            for threads in threads_list:
                caches: list[dict] = [{} for _ in range(args.concurrency)]  # sessions reused across batch sizes
                for batch in [shape_batch] if shape_batch else batches:
                    bar.set_note(f"{model} batch {batch} threads {threads}")
                    results = _bench_setting(args, backends, path, zoo, batch, threads, caches, shapes)
                    recs = records_for(model, batch, threads, results, args.concurrency)
                    records.extend(recs)
                    for r in recs:
                        if r["status"] in ("WRONG", "error") or (r["status"] == "skipped" and r["backend"] in explicit):
                            failed = True
                    bar.close()  # clear the progress line before printing rows
                    for row in format_rows(recs):
                        print(row, flush=True)
                    bar.update()
    summary = geomean_summary(records)
    if summary:
        print()
        print("geometric mean of median ratios vs onnxruntime over models:")
        for s in summary:
            print(
                f"  batch {s['batch']:3d} threads {s['threads']:2d}  {s['backend']:16s} "
                f"{s['geomean_ratio_vs_onnxruntime']:.2f}x  ({s['models']} model{'s' if s['models'] != 1 else ''})"
            )
    _print_peer_summary(records, peer_geomean_summary(records))
    wrong = [r for r in records if r["status"] == "WRONG"]
    if wrong:
        bound = "their precision's bound" if args.rtol is None else f"{args.rtol:g}"
        print(
            f"cnnrt: error: {len(wrong)} result(s) WRONG (outputs disagree with onnxruntime beyond "
            f"{bound}); their times are not reported",
            file=sys.stderr,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    if args.csv:
        write_csv(records, args.csv)
    if args.plot:
        from cnnrt.tools.plots import bench_chart

        bench_chart(records, args.plot)
        print(f"wrote {args.plot}")
    if int8:
        print()
        failed = _bench_int8(args) != 0 or failed
    return 1 if failed else 0


def _bench_int8(args) -> int:
    """The int8 table: per zoo model, batch and threads, cnnrt int8 beside onnxruntime int8 and
    OpenVINO int8 on one QDQ file and cnnrt float32 (bench_int8.bench_row), then the geometric
    means; exit code 1 when cnnrt int8 is more than bench_int8.INT8_STEPS steps from the
    reference (bench_int8.agrees: onnxruntime int8, or the QDQ file as written on CPUs where
    onnxruntime's u8 x s8 sums saturate)."""
    from cnnrt.tools import bench_int8
    from cnnrt.tools.timing import cpu_count

    openvino = importlib.util.find_spec("openvino") is not None
    if not openvino:
        print("note: openvino is not installed: no OpenVINO int8 column", file=sys.stderr)
    rows, failed = [], False
    print(bench_int8.ROW_HEADER, flush=True)
    for model in args.models:
        for threads in args.threads or [cpu_count()]:
            for batch in args.batch or [1]:
                ov = openvino and model not in bench_int8.OPENVINO_CRASHES
                row = bench_int8.bench_row(model, batch, threads, runs=args.runs, openvino=ov)
                rows.append(row)
                failed = failed or not bench_int8.agrees(row)
                print(bench_int8.format_row(row), flush=True)
    means = bench_int8.geomeans(rows)
    if means:
        print("geometric means: " + ", ".join(f"{k} {v:.2f}x" for k, v in means.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if failed else 0


def _print_peer_summary(records: list[dict], summary: list[dict]) -> None:
    """The geometric means of the ratio to the fastest peer, when several models were benched:
    per setting, and over all rows when there were several settings."""
    if len({r["model"] for r in records}) < 2 or not summary:
        return
    settings = {(r["batch"], r["threads"]) for r in records}
    print()
    print("geometric mean of median ratios vs the fastest float32 peer (below 1 is faster):")
    for s in summary:
        if s["batch"] is None and len(settings) < 2:
            continue
        where = "all rows" if s["batch"] is None else f"batch {s['batch']:3d} threads {s['threads']:2d}"
        ratio = s["geomean_ratio_vs_fastest_peer"]
        print(f"  {where:22s} {s['backend']:16s} {ratio:.2f}x  ({s['rows']} row{'s' if s['rows'] != 1 else ''})")


def _bench_setting(args, backends, path, zoo, batch, threads, caches, shapes) -> dict:
    """Results per backend for one model at one (batch, threads); never raises for a backend.

    ``caches`` holds one session cache per concurrent request stream; the first one's runners
    are checked against onnxruntime."""
    from cnnrt.tools.bench import REFERENCE, BackendResult, Skip, bench_case, make_runner
    from cnnrt.tools.modelsource import fixed_batch, random_feeds

    def all_(status, note):
        return {b: BackendResult(b, status, note=note) for b in backends}

    cache = caches[0]
    try:
        make_runner(REFERENCE, path, zoo, {}, threads, cache)  # builds the onnxruntime session
    except Exception as e:  # noqa: BLE001
        if args.debug:
            raise
        return all_("error", f"onnxruntime cannot load the model: {type(e).__name__}: {e}".splitlines()[0])
    ref_sess = cache[REFERENCE]
    fb = fixed_batch(ref_sess)
    if fb is not None and fb != batch:
        return all_("skipped", f"the model fixes batch {fb}")
    feeds = random_feeds(ref_sess, batch=batch, seed=args.seed, shapes=shapes)
    runners, other, copies = {}, {}, {}
    for b in backends:
        try:
            copies[b] = [make_runner(b, path, zoo, feeds, threads, c) for c in caches]
            runners[b] = copies[b][0]
        except Skip as e:
            other[b] = BackendResult(b, "skipped", note=str(e))
        except Exception as e:  # noqa: BLE001
            if args.debug:
                raise
            other[b] = BackendResult(b, "error", note=f"{type(e).__name__}: {e}".splitlines()[0])
    results = bench_case(
        runners,
        REFERENCE,
        runs=args.runs,
        warmup=args.warmup,
        rtol=args.rtol,
        max_seconds=args.max_seconds,
        copies=copies if len(caches) > 1 else None,
    )
    results.update(other)
    return {b: results[b] for b in backends if b in results}
